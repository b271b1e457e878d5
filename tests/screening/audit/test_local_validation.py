"""Local validation: a version's figures on the site's own screens against recorded outcomes,
worked out by hand on eight screens and against scikit-learn and SciPy on a larger cohort."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.urls import reverse
from scipy.stats import binomtest
from sklearn.metrics import recall_score, roc_auc_score

from screening.audit import local_validation, stats
from screening.audit.actions import record_outcome
from screening.audit.drift import DriftFilter
from screening.audit.local_validation import FINAL, FIRST
from screening.choices import AgeBand, AIStatus, CaseStatus, Density, Outcome
from screening.models import AIResult, Case, Image, Patient, Study, density_bit
from tests.conftest import login, requires_postgres
from tests.factories import ModelVersionFactory, N, R, UserFactory, screen, validated_evidence

M, NO, B = Outcome.MALIGNANT, Outcome.NORMAL, Outcome.BENIGN
# (score, outcome, first and second reader's decisions): eight screens worked out by hand.
EIGHT = [
    (0.90, M, R),  # found by both
    (0.70, M, N),  # readers missed, the version scored it high
    (0.20, M, R),  # the version scored it low, readers found it
    (0.40, M, R),
    (0.60, NO, N),
    (0.30, NO, R),
    (0.10, B, N),
    (0.05, NO, N),
]


@pytest.fixture
def readers(db):
    return [UserFactory(username=f"reader{i}", role="radiologist") for i in range(2)]


def same_woman(*cases: Case) -> None:
    """Make the cases one woman's screens (a woman screened again)."""
    Case.objects.filter(pk__in=[c.pk for c in cases]).update(patient=cases[0].patient)


@pytest.fixture
def eight(readers):
    """The eight screens (the sixth and seventh one woman's), a trained-on woman's two
    screens, a screen without outcome and one this version did not score."""
    evidence = validated_evidence(0.5)  # bands from 0.25 (intermediate) and 0.5 (high)
    evidence["training_data"] = {"subjects": ["TRAINED-1", "NEVER-SCREENED-HERE"]}
    version = ModelVersionFactory(threshold=0.5, evidence=evidence)
    cases = [screen(version, s, [d, d], readers, outcome=o) for s, o, d in EIGHT]
    same_woman(cases[5], cases[6])
    trained = Patient.objects.create(pseudonym="TRAINED-1")
    for score, outcome in [(0.95, M), (0.1, NO)]:
        case = screen(version, score, [R, R], readers, outcome=outcome)
        Case.objects.filter(pk=case.pk).update(patient=trained)
    screen(version, 0.99, [R, R], readers)  # no outcome yet
    screen(None, None, [R, R], readers, outcome=M)  # outcome, not scored by this version
    return version, cases


def test_eight_screens_match_a_hand_computation(eight):
    version, cases = eight
    report = local_validation.build(version)
    assert (report.with_outcome, report.scored, report.scored_with_outcome) == (11, 11, 10)
    assert (report.subjects_named, report.excluded_women, report.excluded_screens) == (2, 1, 2)
    assert (report.screens, report.cancers, report.women) == (8, 4, 7)
    # Cancers 0.9, 0.7, 0.4, 0.2 against 0.6, 0.3, 0.1, 0.05: 4 + 4 + 3 + 2 of 16 pairs won.
    assert report.auc.auc == pytest.approx(13 / 16)
    assert (report.auc.n, report.auc.positives, report.auc.clusters) == (8, 4, 7)
    assert report.auc.ci is not None
    assert report.auc.ci.low < 13 / 16 < report.auc.ci.high

    points = {p.cut: p for p in report.points}
    assert [(p.label, p.cut) for p in report.points] == [
        ("intermediate band", 0.25),
        ("threshold = high band", 0.5),
    ]
    at_half, at_quarter = points[0.5], points[0.25]
    # At 0.5 it recalls 0.9, 0.7 (cancers) and 0.6 (not): 2/4 cancers, 3/4 others cleared.
    assert at_half.ai.confusion == [[3, 1], [2, 2]]
    # At 0.25 it recalls 0.9, 0.7, 0.4 (cancers), 0.6 and 0.3 (not).
    assert at_quarter.ai.confusion == [[2, 2], [1, 3]]
    final = {p.reader: p for p in at_half.paired}[FINAL]
    # The readers recalled 0.9, 0.2, 0.4 (cancers) and 0.3 (not).
    assert final.readers.confusion == [[3, 1], [1, 3]]
    assert (final.screens, final.cancers) == (8, 4)
    assert (final.cancers_ai_only, final.cancers_readers_only) == (1, 2)  # 0.7; 0.2 and 0.4
    assert (final.normals_ai_only, final.normals_readers_only) == (1, 1)  # 0.3; 0.6
    assert final.sensitivity_p == pytest.approx(1.0)  # 1 against 2 of 3: no difference shown
    first = {p.reader: p for p in at_half.paired}[FIRST]
    assert first.readers.confusion == final.readers.confusion  # both readers agreed throughout

    low, high = report.scored_low_found, report.scored_high_missed
    assert (low.cut, low.count, [c.case_id for c in low.cases]) == (0.25, 1, [cases[2].pk])
    assert (high.cut, high.count, [c.case_id for c in high.cases]) == (0.5, 1, [cases[1].pk])
    assert high.cases[0].pseudonym == cases[1].patient.pseudonym

    bins = report.reliability
    assert sum(b.screens for b in bins) == 8 and sum(b.cancers for b in bins) == 4
    assert [(b.mean_score, b.cancers) for b in bins] == [
        (0.05, 0), (0.1, 0), (0.2, 1), (0.3, 0), (0.4, 1), (0.6, 0), (0.7, 1), (0.9, 1)
    ]  # fmt: skip


def test_training_women_come_from_the_metrics_too(eight):
    version, _ = eight
    version.evidence.pop("training_data")
    version.metrics = {"training_data": {"subjects": {"train": ["TRAINED-1"], "val": []}}}
    version.save()
    report = local_validation.build(version)
    assert (report.subjects_named, report.excluded_screens, report.screens) == (1, 2, 8)


def test_women_the_manifest_names_are_left_out(eight):
    """A brought model names its training and calibration women in its manifest, not its
    evidence (``ml.manifest_schema.subjects``): the shipped model names 104 that way."""
    version, _ = eight
    version.evidence.pop("training_data")
    version.manifest = {
        "training_data": {"subjects": ["NEVER-SCREENED-HERE"]},
        "calibration": {"subjects": ["TRAINED-1"]},
    }
    version.save()
    report = local_validation.build(version)
    assert (report.subjects_named, report.excluded_women, report.excluded_screens) == (2, 1, 2)
    assert report.screens == 8


def _expected_auc(indices: list[int]) -> float:
    rows = [EIGHT[i] for i in indices]
    return float(roc_auc_score([o == M for _, o, _ in rows], [s for s, _, _ in rows]))


def test_every_figure_is_filtered_by_manufacturer_density_and_age_band(eight):
    """The drift page's filter, on screens: a film of that manufacturer, a density a reader
    recorded, the woman's age at the screen."""
    version, cases = eight
    ids = [c.pk for c in cases]
    Image.objects.filter(study__case_id__in=[ids[i] for i in (0, 2, 4, 5)]).update(
        manufacturer="Hologic"
    )
    Case.objects.filter(pk__in=[ids[i] for i in (1, 2, 3, 6, 7)]).update(
        read_densities=density_bit(Density.C)
    )
    Study.objects.update(study_date=dt.date(2025, 6, 1))
    Patient.objects.filter(cases__pk__in=ids[:5]).update(birth_year=1970)  # 55, the rest 60
    for about, indices in [
        (DriftFilter(manufacturer="Hologic"), [0, 2, 4, 5]),
        (DriftFilter(density=Density.C), [1, 2, 3, 6, 7]),
        (DriftFilter(age_band=AgeBand.AGE_50_59), [0, 1, 2, 3, 4]),
        (DriftFilter(age_band=AgeBand.AGE_50_59, manufacturer="Hologic"), [0, 2, 4]),
    ]:
        report = local_validation.build(version, about=about)
        assert report.screens == len(indices), about
        assert report.cancers == sum(EIGHT[i][1] == M for i in indices), about
        assert report.auc.auc == pytest.approx(_expected_auc(indices)), about
        assert report.about == about
    assert local_validation.build(version).screens == 8


def test_the_page_filters_and_says_so(client, auditor, eight):
    version, cases = eight
    Image.objects.filter(study__case_id__in=[c.pk for c in cases[:3]]).update(manufacturer="GE")
    page = login(client, auditor).get(
        reverse("audit-local"), {"version": version.pk, "manufacturer": "GE"}
    )
    text = page.content.decode()
    assert "only the screens with a film from a GE unit" in text
    assert "3 screens of 3 women, 3 cancers" in text
    assert "manufacturer=GE&amp;refresh=1" in text


def test_without_named_women_nothing_is_left_out(eight):
    version, _ = eight
    version.evidence.pop("training_data")
    version.save()
    report = local_validation.build(version)
    assert (report.subjects_named, report.excluded_screens, report.screens) == (0, 0, 10)
    assert report.cancers == 5


def cohort(n: int = 600, women: int = 350, seed: int = 3, separation: float = 0.25):
    """``n`` screens of ``women`` women with scores and outcomes, written in bulk (no reads):
    what the AUC and the version's own figures are checked on."""
    rng = np.random.default_rng(seed)
    version = ModelVersionFactory(threshold=0.55, switched_on=False)  # measured, not yet on
    patients = Patient.objects.bulk_create(
        [Patient(pseudonym=f"COHORT-{i:04d}") for i in range(women)]
    )
    woman = rng.integers(0, women, n)
    cancer = rng.random(n) < 0.15
    score = np.clip(rng.normal(0.4 + separation * cancer, 0.2), 0.0, 1.0).round(3)  # ties too
    known = rng.random(n) < 0.9
    cases = Case.objects.bulk_create(
        [
            Case(
                patient=patients[woman[i]],
                status=CaseStatus.READY,
                outcome=(M if cancer[i] else NO) if known[i] else "",
            )
            for i in range(n)
        ]
    )
    AIResult.objects.bulk_create(
        [
            AIResult(model_version=version, case=c, status=AIStatus.DONE, probability=score[i])
            for i, c in enumerate(cases)
        ]
    )
    return version, {"score": score[known], "cancer": cancer[known], "woman": woman[known]}


@pytest.mark.django_db
def test_a_larger_cohort_matches_scikit_learn():
    version, t = cohort()
    report = local_validation.build(version)
    assert report.screens == len(t["score"])
    assert report.women == len(np.unique(t["woman"]))
    assert report.auc.auc == pytest.approx(roc_auc_score(t["cancer"], t["score"]))
    assert report.auc.ci_method == stats.BOOTSTRAP
    assert report.auc.auc is not None and report.auc.ci is not None
    assert report.auc.ci.low < report.auc.auc < report.auc.ci.high
    assert [p.cut for p in report.points] == [0.275, 0.55]  # its bands' cuts and threshold
    for point in report.points:
        decided = t["score"] >= point.cut
        assert point.ai.sensitivity.value == pytest.approx(recall_score(t["cancer"], decided))
        assert point.ai.specificity.value == pytest.approx(recall_score(~t["cancer"], ~decided))
        # No reads: nothing to pair the version with.
        assert all(p.screens == 0 for p in point.paired)


@pytest.mark.django_db
def test_the_interval_by_woman_agrees_with_obuchowski_worked_pair_by_pair():
    _, t = cohort(n=300, women=120, seed=8)
    y, p, g = t["cancer"], t["score"], t["woman"]
    found = stats.clustered_auc(p, y, g, bootstrap=False)
    pos, neg = p[y], p[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    theta, v10, v01 = psi.mean(), psi.mean(axis=1), psi.mean(axis=0)
    clusters = np.unique(g)
    a = np.array([v10[g[y] == w].sum() - (g[y] == w).sum() * theta for w in clusters])
    b = np.array([v01[g[~y] == w].sum() - (g[~y] == w).sum() * theta for w in clusters])
    k, m, n = len(clusters), len(pos), len(neg)
    variance = k / (k - 1) * ((a @ a) / m**2 + (b @ b) / n**2 + 2 * (a @ b) / (m * n))
    assert found.ci_method == stats.DELONG
    assert found.auc == pytest.approx(theta)
    assert found.ci is not None
    assert found.ci.low == pytest.approx(theta - stats.Z95 * variance**0.5)
    assert found.ci.high == pytest.approx(theta + stats.Z95 * variance**0.5)
    by_bootstrap = stats.clustered_auc(p, y, g, bootstrap=True)
    assert by_bootstrap.ci is not None
    assert by_bootstrap.ci.low == pytest.approx(found.ci.low, abs=0.03)
    assert by_bootstrap.ci.high == pytest.approx(found.ci.high, abs=0.03)


def test_one_screen_per_woman_gives_delongs_interval():
    rng = np.random.default_rng(2)
    y = rng.random(500) < 0.2
    p = rng.normal(y * 0.7, 1)
    found = stats.clustered_auc(p, y, np.arange(500), bootstrap=False)
    delong = stats.delong_auc_ci(p[y], p[~y])
    assert found.ci is not None
    assert found.ci.low == pytest.approx(delong.low, abs=2e-3)
    assert found.ci.high == pytest.approx(delong.high, abs=2e-3)


def test_a_woman_screened_many_times_widens_the_interval():
    rng = np.random.default_rng(4)
    y = np.repeat(rng.random(60) < 0.3, 5)  # 60 women, five alike screens each
    p = np.repeat(rng.normal(0, 1, 60), 5) + y * 0.8 + rng.normal(0, 0.05, 300)
    apart = stats.clustered_auc(p, y, np.arange(300), bootstrap=False)
    by_woman = stats.clustered_auc(p, y, np.repeat(np.arange(60), 5), bootstrap=False)
    assert by_woman.auc == apart.auc
    assert by_woman.ci is not None and apart.ci is not None
    width = by_woman.ci.high - by_woman.ci.low
    assert width > 1.8 * (apart.ci.high - apart.ci.low)


@pytest.mark.parametrize(
    "first_only,second_only", [(0, 0), (3, 0), (5, 7), (1, 1), (0, 9), (100, 140), (20000, 20500)]
)
def test_mcnemar_is_the_exact_binomial_test(first_only, second_only):
    n = first_only + second_only
    expected = binomtest(first_only, n, 0.5).pvalue if n else 1.0
    assert stats.mcnemar_exact(first_only, second_only) == pytest.approx(expected, rel=1e-9)


def test_packed_and_row_reads_agree(eight):
    requires_postgres()
    version, _ = eight
    packed, scored = local_validation.screens_with_outcome(version, fast=True)
    rows, scored_rows = local_validation.screens_with_outcome(version, fast=False)
    assert scored == scored_rows
    order, row_order = np.argsort(packed.case_id), np.argsort(rows.case_id)
    for name in ("case_id", "patient_id", "cancer", "closed", "score"):
        np.testing.assert_array_equal(
            getattr(packed, name)[order], getattr(rows, name)[row_order], err_msg=name
        )
    np.testing.assert_array_equal(packed.recall[:, order], rows.recall[:, row_order])


# --- The page -------------------------------------------------------------------------


def test_auditor_sees_the_page_with_its_counts_and_case_links(client, auditor, eight):
    version, cases = eight
    response = login(client, auditor).get(reverse("audit-local"), {"version": version.pk})
    assert response.status_code == 200
    page = response.content.decode()
    assert "8 screens of 7 women, 4 cancers" in page
    assert "name 2 women it was trained or calibrated on" in page
    assert "2 screens of 1 of them are left out" in page
    assert "0.812" in page  # AUC 13/16
    assert reverse("case-detail", args=[cases[2].pk]) in page
    assert reverse("case-detail", args=[cases[1].pk]) in page
    assert 'src="data:image/svg+xml;base64,' in page  # the reliability plot


def test_an_unknown_version_is_not_found(client, auditor, eight):
    response = login(client, auditor).get(reverse("audit-local"), {"version": 999_999})
    assert response.status_code == 404


def test_the_page_without_any_version_says_so(client, auditor):
    response = login(client, auditor).get(reverse("audit-local"))
    assert response.status_code == 200
    assert "No model version has scored a screen yet" in response.content.decode()


def test_figures_update_as_an_outcome_arrives(client, auditor, readers):
    version = ModelVersionFactory(threshold=0.5)
    for score, outcome in [(0.9, M), (0.2, NO)]:
        screen(version, score, [R, R], readers, outcome=outcome)
    waiting = screen(version, 0.8, [N, N], readers)
    url = reverse("audit-local") + f"?version={version.pk}"
    login(client, auditor)
    assert "2 screens of 2 women, 1 cancer" in client.get(url).content.decode()
    assert "2 screens of 2 women, 1 cancer" in client.get(url).content.decode()  # kept
    accession = Study.objects.get(case=waiting).accession_number
    record_outcome(UserFactory(role="admin"), accession, M, "biopsy")
    page = client.get(url).content.decode()
    assert "3 screens of 3 women, 2 cancers" in page
    assert "Cancers readers missed that it scored high (1)" in page


@pytest.mark.parametrize("role", ["radiologist", "arbitrator", "admin", None])
def test_no_one_but_an_auditor_sees_it(client, role, eight):
    version, _ = eight
    user = UserFactory(role=role)
    response = login(client, user).get(reverse("audit-local"), {"version": version.pk})
    assert response.status_code == 403


def test_the_dashboard_and_models_page_link_to_it(client, auditor, eight):
    version, _ = eight
    login(client, auditor)
    link = reverse("audit-local") + f"?version={version.pk}"
    assert (
        link
        in client.get(reverse("audit-dashboard"), {"model_version": version.pk}).content.decode()
    )
    assert link in client.get(reverse("model-versions")).content.decode()


def test_no_reader_page_links_to_it(client, radiologist, eight):
    _, cases = eight
    login(client, radiologist)
    for url in (reverse("worklist"), reverse("case-detail", args=[cases[0].pk])):
        assert reverse("audit-local") not in client.get(url).content.decode()


def test_a_version_without_outcomes_yet_has_empty_figures(client, auditor, readers):
    version = ModelVersionFactory(threshold=0.5)
    screen(version, 0.7, [R, R], readers)  # scored, no outcome yet
    report = local_validation.build(version)
    assert (report.scored, report.with_outcome, report.screens, report.cancers) == (1, 0, 0, 0)
    assert report.auc.auc is None and report.reliability == []
    assert report.scored_low_found.count == report.scored_high_missed.count == 0
    page = login(client, auditor).get(reverse("audit-local"), {"version": version.pk})
    assert page.status_code == 200
    assert "No AUC: it needs scored screens" in page.content.decode()


def test_two_women_leave_the_bootstrap_no_interval_rather_than_an_error():
    found = stats.clustered_auc([0.9, 0.8, 0.2], [True, True, False], [1, 1, 2], bootstrap=True)
    assert found.auc == 1.0 and found.clusters == 2
    assert found.ci is None or found.ci.low <= found.ci.high
