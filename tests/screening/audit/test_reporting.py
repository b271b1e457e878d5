"""The auditor's report on seeded screens with known reads and outcomes, against scikit-learn."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.utils import timezone
from sklearn.metrics import cohen_kappa_score, confusion_matrix, recall_score, roc_auc_score

from screening.audit import reporting
from screening.choices import CaseStatus, Outcome, ReadKind
from screening.models import Case
from screening.reading import actions as reading_actions
from screening.reading.actions import ReadInput
from tests.factories import ModelVersionFactory, N, R, UserFactory, screen


@pytest.fixture
def readers(db):
    return [UserFactory(username=f"reader{i}", role="radiologist") for i in range(3)]


@pytest.fixture
def seeded(readers):
    """40 screens with random scores, reads and outcomes; returns the arrays behind them."""
    version = ModelVersionFactory(threshold=0.6, is_active=True)
    rng = np.random.default_rng(5)
    truth: dict[str, list] = {"score": [], "cancer": [], "first": [], "second": [], "final": []}
    for i in range(40):
        cancer = bool(rng.random() < 0.3)
        score = float(np.clip(rng.normal(0.45 + 0.3 * cancer, 0.18), 0.01, 0.99))
        first = bool(rng.random() < (0.8 if cancer else 0.15))
        second = first if rng.random() < 0.8 else not first
        arbitration = bool(cancer) if first != second else None
        decisions = [first, second] + ([arbitration] if arbitration is not None else [])
        order = [readers[i % 3], readers[(i + 1) % 3], readers[(i + 2) % 3]]
        outcome = Outcome.MALIGNANT if cancer else rng.choice([Outcome.NORMAL, Outcome.BENIGN])
        screen(version, score, decisions, order, outcome=outcome)
        for key, value in zip(
            truth,
            [score, cancer, first, second, first if first == second else arbitration],
            strict=True,
        ):
            truth[key].append(value)
    return version, {k: np.asarray(v) for k, v in truth.items()}


def test_agreement_and_performance_match_scikit_learn(seeded):
    version, t = seeded
    report = reporting.build_report(reporting.ReportFilter(version))
    ai = t["score"] >= version.threshold
    agreements = {(a, b): k for a, b, k in report.agreements}
    pairs = {
        ("AI", "First reader"): (ai, t["first"]),
        ("AI", "Second reader"): (ai, t["second"]),
        ("First reader", "Second reader"): (t["first"], t["second"]),
        ("AI", "Final decision"): (ai, t["final"]),
        ("Second reader", "Final decision"): (t["second"], t["final"]),
    }
    for key, (a, b) in pairs.items():
        assert agreements[key].n == 40
        assert agreements[key].percent == pytest.approx(np.mean(a == b)), key
        assert agreements[key].kappa == pytest.approx(cohen_kappa_score(a, b)), key

    performances = dict(report.performances)
    for label, decisions in [
        ("AI", ai),
        ("First reader", t["first"]),
        ("Final decision", t["final"]),
    ]:
        found = performances[label]
        tn, fp, fn, tp = confusion_matrix(t["cancer"], decisions, labels=[False, True]).ravel()
        assert found.confusion == [[tn, fp], [fn, tp]], label
        assert found.sensitivity.value == pytest.approx(recall_score(t["cancer"], decisions))
        assert found.recall_rate.value == pytest.approx(decisions.mean())
        assert found.cancer_detection_per_1000 == pytest.approx(1000 * tp / 40)
    assert report.roc.auc == pytest.approx(roc_auc_score(t["cancer"], t["score"]))
    assert report.roc.auc is not None and report.roc.auc_ci is not None
    assert report.roc.auc_ci.low < report.roc.auc < report.roc.auc_ci.high


def test_what_if_threshold_changes_only_the_figures(seeded):
    version, t = seeded
    report = reporting.build_report(reporting.ReportFilter(version), what_if=0.3)
    decisions = t["score"] >= 0.3
    assert report.what_if is not None
    assert report.what_if.performance.recalls == int(decisions.sum())
    assert report.what_if.performance.sensitivity.value == pytest.approx(
        recall_score(t["cancer"], decisions)
    )
    version.refresh_from_db()
    assert version.threshold == 0.6  # nothing changed


def test_reader_figures_count_each_readers_reads(seeded, readers):
    version, t = seeded
    report = reporting.build_report(reporting.ReportFilter(version))
    by_name = {s.reader: s for s in report.readers}
    total_reads = sum(s.reads for s in report.readers)
    assert total_reads == 80 + int((t["first"] != t["second"]).sum())
    reader = by_name["reader0"]
    assert reader.by_kind[ReadKind.FIRST] == 14  # cases 0, 3, ..., 39
    # Every read was shown this version's result, so overrides are the disagreements.
    assert reader.shown_ai == reader.reads
    assert reader.overrode_recall + reader.overrode_no_recall == reader.reads - reader.vs_ai.agreed


def test_workflow_counts_arbitration_and_waiting(seeded):
    version, t = seeded
    flow = reporting.build_report(reporting.ReportFilter(version)).workflow
    disagreed = int((t["first"] != t["second"]).sum())
    assert (flow.cases, flow.closed, flow.double_read, flow.arbitrated) == (40, 40, 40, disagreed)
    assert flow.arbitration_rate.value == pytest.approx(disagreed / 40)
    assert flow.median_hours_to_decision is not None and flow.median_hours_to_decision >= 0


def test_override_direction_and_rate_for_one_reader(readers):
    version = ModelVersionFactory(threshold=0.5)
    screen(version, 0.9, [N], readers[:1])  # AI recall, reader no: overrode a recall
    screen(version, 0.1, [R], readers[:1])  # AI no, reader recall
    screen(version, 0.9, [R], readers[:1])  # agrees
    (stats,) = reporting.build_report(reporting.ReportFilter(version)).readers
    assert (stats.shown_ai, stats.overrode_recall, stats.overrode_no_recall) == (3, 1, 1)
    assert stats.override_rate.value == pytest.approx(2 / 3)


def test_a_reader_with_one_read(readers):
    version = ModelVersionFactory(threshold=0.5)
    screen(version, 0.7, [R], readers[:1], outcome=Outcome.MALIGNANT)
    report = reporting.build_report(reporting.ReportFilter(version))
    (stats,) = report.readers
    assert (stats.reads, stats.vs_ai.percent, stats.vs_ai.kappa_ci) == (1, 1.0, None)
    assert stats.performance.sensitivity.value == 1.0
    assert stats.performance.specificity.value is None
    assert report.roc.auc is None  # one class only


def test_no_positives_gives_no_sensitivity_and_no_auc(readers):
    version = ModelVersionFactory(threshold=0.5)
    for score in (0.2, 0.8, 0.4):
        screen(version, score, [N, N], readers[:2], outcome=Outcome.NORMAL)
    report = reporting.build_report(reporting.ReportFilter(version))
    ai = dict(report.performances)["AI"]
    assert ai.sensitivity.value is None and ai.specificity.value == pytest.approx(2 / 3)
    assert report.roc.auc is None and report.roc.positives == 0


def test_all_agree_gives_kappa_one_or_undefined(readers):
    version = ModelVersionFactory(threshold=0.5)
    for i in range(10):
        recall = i % 2 == 0
        screen(version, 0.9 if recall else 0.1, [recall, recall], readers[:2])
    agreements = {
        (a, b): k for a, b, k in reporting.build_report(reporting.ReportFilter(version)).agreements
    }
    assert agreements[("AI", "Final decision")].kappa == 1.0
    assert agreements[("First reader", "Second reader")].percent == 1.0


def test_a_version_with_no_results_reports_nothing_to_judge(readers):
    scored = ModelVersionFactory(threshold=0.5)
    screen(scored, 0.8, [R, R], readers[:2], outcome=Outcome.MALIGNANT)
    unused = ModelVersionFactory(threshold=0.5)
    report = reporting.build_report(reporting.ReportFilter(unused))
    assert report.scored == 0 and report.roc.auc is None
    assert dict(report.performances)["AI"].screens == 0
    assert dict(report.performances)["Final decision"].screens == 1  # readers still counted
    assert [s.version for s in report.versions] == [scored]


def test_filters_by_reader_date_and_band(readers):
    version = ModelVersionFactory(threshold=0.5)
    long_ago = timezone.now() - dt.timedelta(days=60)
    old = screen(version, 0.9, [R], readers[:1], received=long_ago)
    high = screen(version, 0.8, [R], readers[1:2])
    low = screen(version, 0.1, [N], readers[:1])

    def ids(**kwargs):
        return [r.case_id for r in reporting.case_rows(reporting.ReportFilter(version, **kwargs))]

    assert ids(reader_id=readers[0].pk) == [old.pk, low.pk]
    assert ids(date_from=timezone.localdate() - dt.timedelta(days=7)) == [high.pk, low.pk]
    assert ids(date_to=timezone.localdate() - dt.timedelta(days=30)) == [old.pk]
    assert ids(band="high") == [old.pk, high.pk]


def test_discordant_cases_in_each_direction(readers):
    version = ModelVersionFactory(threshold=0.5)
    dismissed = screen(version, 0.9, [N, N], readers[:2])
    upcalled = screen(version, 0.2, [R], readers[:1])
    screen(version, 0.9, [R, R], readers[:2])
    screen(version, None, [R], readers[:1])  # not scored: never discordant
    rows = reporting.case_rows(reporting.ReportFilter(version))
    assert [r.case_id for r in reporting.discordant(rows)] == [dismissed.pk, upcalled.pk]
    assert [r.case_id for r in reporting.discordant(rows, "ai_recall")] == [dismissed.pk]
    assert [r.case_id for r in reporting.discordant(rows, "reader_recall")] == [upcalled.pk]


def test_trend_groups_by_week_received(readers):
    version = ModelVersionFactory(threshold=0.5)
    two_weeks_ago = timezone.now() - dt.timedelta(days=14)
    screen(version, 0.9, [R, R], readers[:2], received=two_weeks_ago)
    screen(version, 0.1, [N, R, N], readers[:3])
    screen(version, 0.1, [N, N], readers[:2])
    points = reporting.build_report(reporting.ReportFilter(version)).trend
    assert [p.received for p in points] == [1, 2]
    assert points[0].recall_rate == 1.0 and points[1].recall_rate == 0.0
    assert points[1].arbitration_rate == 0.5 and points[1].ai_agreement == 1.0
    assert Case.objects.filter(status=CaseStatus.CLOSED).count() == 3


def test_filters_by_the_density_a_reader_recorded(readers):
    version = ModelVersionFactory(threshold=0.5)
    fatty = screen(version, 0.3, [N], readers[:1])  # the seeded reads record density b
    dense = screen(version, 0.7, [], [])
    dense_read = ReadInput(
        kind="first", birads_right=1, birads_left=2, density="d", reason="Benign calcifications"
    )
    reading_actions.submit_read(readers[1], dense.pk, dense_read)

    def ids(**kwargs):
        return [r.case_id for r in reporting.case_rows(reporting.ReportFilter(version, **kwargs))]

    assert ids(density="d") == [dense.pk]
    assert ids(density="b") == [fatty.pk]
    assert ids() == [fatty.pk, dense.pk]


def test_the_dashboard_offers_the_density_filter(client, auditor, readers):
    ModelVersionFactory(threshold=0.5, is_active=True)
    client.force_login(auditor)
    response = client.get("/reports/?density=c")
    assert response.status_code == 200
    assert 'name="density"' in response.content.decode()
