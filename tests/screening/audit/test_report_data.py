"""The case columns behind the auditor's figures: the read gist kept on each case, the
PostgreSQL packed transfer against plain rows, and the AUC interval at scale."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from screening.audit import report_data, reporting, stats
from screening.choices import Outcome
from screening.models import Case, density_bit
from screening.reading import actions
from screening.reading.actions import ReadInput
from tests.conftest import requires_postgres
from tests.factories import (
    ModelVersionFactory,
    N,
    R,
    UserFactory,
    read_case,
    score_case,
    screen,
)


@pytest.fixture
def readers(db):
    return [UserFactory(username=f"gist{i}", role="radiologist") for i in range(3)]


def test_a_read_leaves_its_gist_on_the_case(readers):
    version = ModelVersionFactory(threshold=0.5, is_active=True)
    case = screen(version, 0.8, [], [])
    first = ReadInput(
        kind="first", birads_right=1, birads_left=2, density="c", seconds_taken=42, reason="benign"
    )
    actions.submit_read(readers[0], case.pk, first)
    case.refresh_from_db()
    assert (case.first_reader_id, case.first_recall, case.first_seconds) == (
        readers[0].pk,
        False,
        42,
    )
    assert case.ai_result is not None
    assert case.first_seen_version_id == case.ai_result.model_version_id
    assert case.read_densities == density_bit("c")
    assert case.second_reader_id is None and case.second_recall is None


def test_saving_a_stale_copy_of_the_case_leaves_the_read_gist_as_the_read_gave_it(readers):
    version = ModelVersionFactory(threshold=0.5, is_active=True)
    case = screen(version, 0.8, [], [])
    stale = Case.objects.get(pk=case.pk)  # loaded before the read, as another request might
    first = ReadInput(
        kind="first", birads_right=0, birads_left=1, density="b", seconds_taken=30, reason="mass"
    )
    actions.submit_read(readers[0], case.pk, first)
    stale.outcome = Outcome.BENIGN
    stale.save()  # the whole row, from before the read
    case.refresh_from_db()
    assert case.outcome == Outcome.BENIGN  # the save itself landed
    assert (case.first_reader_id, case.first_recall, case.first_seconds) == (
        readers[0].pk,
        True,
        30,
    )
    assert case.read_densities == density_bit("b")


def _mixed_screens(readers):
    version = ModelVersionFactory(threshold=0.5, is_active=True)
    other = ModelVersionFactory(threshold=0.3)
    long_ago = timezone.now() - dt.timedelta(days=40)
    screen(version, 0.9, [R, R], readers[:2], outcome=Outcome.MALIGNANT, received=long_ago)
    screen(version, 0.2, [N, R, N], readers, outcome=Outcome.NORMAL)
    screen(version, None, [R], readers[1:2])
    screen(version, 0.6, [], [], outcome=Outcome.BENIGN)
    case = screen(version, 0.4, [], [])
    score_case(case, 0.7, other)  # the case now shows the other version's score
    for reader in readers[1:]:
        read_case(reader, case.pk, N)
    return version


def _assert_same(a: report_data.CaseData, b: report_data.CaseData) -> None:
    a, b = a.in_received_order(), b.in_received_order()
    for name in a.__dataclass_fields__:
        left, right = getattr(a, name), getattr(b, name)
        if left.dtype.kind == "f":
            np.testing.assert_allclose(left, right, err_msg=name, equal_nan=True)
        else:
            np.testing.assert_array_equal(left, right, err_msg=name)


def test_the_packed_transfer_matches_plain_rows(readers):
    requires_postgres()
    version = _mixed_screens(readers)
    filters = [
        {},
        {"reader_id": readers[0].pk},
        {"date_to": timezone.localdate() - dt.timedelta(days=30)},
        {"date_from": timezone.localdate() - dt.timedelta(days=7), "density": "b"},
    ]
    for kwargs in filters:
        clauses, params = report_data.where(**kwargs)
        packed = report_data.case_data(clauses, params, version, fast=True)
        rows = report_data.case_data(clauses, params, version, fast=False)
        assert len(packed) == len(rows) > 0, kwargs
        _assert_same(packed, rows)


def test_the_packed_pseudonyms_statuses_and_outcomes_match_plain_rows(readers):
    """Cut from one text by lengths counted in characters (pseudonyms beyond ASCII, with
    line breaks and commas), aligned with the ids asked for in their order; a status
    outside the choices sends the whole column the plain way."""
    requires_postgres()
    from screening.models import Patient

    _mixed_screens(readers)
    odd = ["Zoë ✓", "line\nbreak", 'a,"b"', "\u202eevil", "", "日本語テキスト"]
    for patient, pseudonym in zip(Patient.objects.order_by("pk"), odd, strict=False):
        patient.pseudonym = pseudonym
        patient.save()
    clauses, params = report_data.where()
    ids = np.array(sorted(Case.objects.values_list("pk", flat=True), reverse=True))
    for asked in (ids, ids[::2]):
        packed = report_data.case_texts(clauses, params, asked, fast=True)
        rows = report_data.case_texts(clauses, params, asked, fast=False)
        assert packed.patient == rows.patient and set(odd) & set(packed.patient)
        assert packed.status.cells() == rows.status.cells()
        assert packed.outcome.cells() == rows.outcome.cells()
    assert report_data._packed_text(clauses, params, ids) is not None
    with pytest.raises(ValueError, match="not among"):
        report_data._packed_text(clauses, params, np.append(ids, ids.max() + 1))
    Case.objects.filter(pk=ids[0]).update(status="legacy")
    assert report_data._packed_text(clauses, params, ids) is None
    found = report_data.case_texts(clauses, params, ids, fast=True)
    assert found.status.cells()[0] == "legacy"


@pytest.mark.django_db(transaction=True)
def test_the_case_list_fetches_its_text_beside_the_columns_on_a_second_connection():
    """Outside a transaction the pseudonyms, statuses and outcomes come on a connection of
    their own while the columns are read; they are the plain rows' all the same."""
    requires_postgres()
    readers = [UserFactory(username=f"beside{i}", role="radiologist") for i in range(3)]
    version = _mixed_screens(readers)
    listed = reporting.case_list(reporting.ReportFilter(version))
    plain = report_data.case_texts(*report_data.where(), listed.data.case_id, fast=False)
    assert len(listed.patient) == Case.objects.count() > 0
    assert listed.patient == plain.patient
    assert listed.status.cells() == plain.status.cells()
    assert listed.outcome.cells() == plain.outcome.cells()


def test_every_case_is_in_the_columns_once(readers):
    version = _mixed_screens(readers)
    data = report_data.case_data(*report_data.where(), version)
    assert sorted(data.case_id.tolist()) == sorted(Case.objects.values_list("pk", flat=True))
    rows = reporting.case_rows(reporting.ReportFilter(version))
    by_id = {r.case_id: r for r in rows}
    c = reporting.Columns.of(data, version)
    for i, case_id in enumerate(data.case_id.tolist()):
        row = by_id[case_id]
        assert c.final[i] == stats.codes([row.final])[0]
        assert c.human[i] == stats.codes([row.human])[0]


def test_large_samples_get_delongs_interval_and_small_ones_the_bootstrap():
    rng = np.random.default_rng(1)
    small = stats.roc(rng.normal(1, 1, 200), np.arange(200) < 50)
    assert small.ci_method == stats.BOOTSTRAP
    scores = np.concatenate([rng.normal(1, 1, 2000), rng.normal(0, 1, 30000)])
    truth = np.arange(len(scores)) < 2000
    large = stats.roc(scores, truth)
    assert large.ci_method == stats.DELONG
    boot = stats.roc(scores, truth, n_boot=200, bootstrap=True)
    assert boot.ci_method == stats.BOOTSTRAP and boot.auc == pytest.approx(large.auc)
    # Both estimate the same sampling spread: their intervals nearly coincide.
    assert large.auc_ci is not None and boot.auc_ci is not None
    assert large.auc_ci.low == pytest.approx(boot.auc_ci.low, abs=0.01)
    assert large.auc_ci.high == pytest.approx(boot.auc_ci.high, abs=0.01)


def test_the_roc_curve_is_scikit_learns_point_for_point():
    from sklearn.metrics import roc_curve

    for seed in range(30):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(3, 2000))
        truth = rng.random(n) < rng.random()
        scores = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties too
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, scores)
        ours = stats.roc_curve(scores[truth], scores[~truth])
        np.testing.assert_array_equal(ours[0], fpr)
        np.testing.assert_array_equal(ours[1], tpr)


def test_the_case_export_says_what_each_case_row_says(client, auditor, readers):
    import csv
    import io

    version = _mixed_screens(readers)
    client.force_login(auditor)
    content = client.get("/reports/export/cases/").getvalue().decode()
    exported = list(csv.reader(io.StringIO(content)))[1:]

    def flag(value):
        return "" if value is None else ("recall" if value else "no_recall")

    expected = []
    for r in reporting.case_rows(reporting.ReportFilter(version)):
        reads = []
        for kind in ("first", "second", "arbitration"):
            read = r.reads.get(kind)
            reads += [read.reader if read else "", flag(read.recall if read else None)]
        expected.append(
            [
                str(r.case_id),
                r.patient,
                r.received_at.isoformat(),
                r.closed_at.isoformat() if r.closed_at else "",
                r.status,
                "" if r.ai_score is None else f"{r.ai_score:.4f}",
                "",  # the score's note: a validated version's score needs none
                "" if r.ai_exam_score is None else str(r.ai_exam_score),
                "" if r.ai_calibrated is None else f"{r.ai_calibrated:.4f}",
                flag(r.ai_recall),
                r.band,
                *reads,
                flag(r.final),
                r.outcome,
            ]
        )
    assert exported == expected


def test_the_streamed_case_csv_is_the_csv_writers_text(readers):
    """The streamed case CSV (the quick path) against ``csv.writer`` over ``case_table``, on
    pseudonyms and reader names that need every escape (formula, delimiter, quote, line
    break, bidi control), under a validated version and one whose AI is not shown."""
    from screening.audit import exports
    from screening.models import RAW_SCORE_LABEL, Patient
    from screening.templatetags.safe_text import neutralise_bidi
    from tests.screening.ai.test_ai_not_validated import shipped_like_evidence

    names = ['=HYPERLINK("x"),1', "r\u202eader", "-12.5"]
    for reader, name in zip(readers, names, strict=True):
        reader.username = name
        reader.save()
    version = _mixed_screens(readers)
    screen(version, 0.8, [N, N], readers[:2], outcome=Outcome.NORMAL)  # discordant
    pseudonyms = ["+SUM(A1)", 'a,"b"', "line\nbreak", "\u202eevil", "@x", "\tT", "-3"]
    for patient, pseudonym in zip(Patient.objects.order_by("pk"), pseudonyms, strict=False):
        patient.pseudonym = pseudonym
        patient.save()
    for evidence, switch in (
        (version.evidence, version.triage_switch),
        (shipped_like_evidence(), {}),
    ):
        version.evidence, version.triage_switch = evidence, switch
        version.save()
        for direction in (None, ""):
            cases = reporting.case_list(reporting.ReportFilter(version), direction)
            written = exports.to_csv(exports.case_table(cases), defused=True)
            streamed = "".join(exports.case_csv(cases, chunk=2))
            assert streamed == neutralise_bidi(written)
            assert len(streamed.splitlines()) > len(cases.data) > 0
            if direction is None:
                every = streamed
        assert (RAW_SCORE_LABEL in every) is not version.validated_for_triage
    assert "'+SUM(A1)" in every and '"a,""b"""' in every and "[U+202E]evil" in every


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=50))
def test_four_places_from_the_table_are_pythons_formatting(values):
    """The table of ten-thousandths writes each value as ``f"{v:.4f}"`` does, ties, values
    out of 0-1 and NaN (empty) included."""
    from screening.audit.exports import _nums

    edges = [0.00005, 0.12345, 0.99995, 1.0, 0.0, -0.0, 0.5, 1e-12, 0.33335, 1.00004, -0.2]
    array = np.array(values + edges, float)
    expected = ["" if v != v else f"{v:.4f}" for v in array.tolist()]
    assert _nums(array) == expected
