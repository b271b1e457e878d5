"""CSV versions of every table on the auditor pages and of the case-level rows behind them.

Cases appear by database id and patient pseudonym only; a cell that cannot be computed
is empty, never 0. Free text (a user name typed at a failed login, say) that a
spreadsheet would run as a formula is quoted with a leading apostrophe.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from django.db.models import QuerySet

from ..choices import RANKING_BANDS, ReadingPolicy, ReadKind
from ..models import RAW_SCORE_LABEL, AuditEvent
from ..text import BIDI_CONTROLS, neutralise_bidi
from . import report_data, reporting, simulation, stats

Table = tuple[list[str], Sequence[Sequence[Any]]]

FORMULA_START = "=+-@\t\r"  # what a spreadsheet may run as a formula


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _flag(value: bool | None) -> str:
    return "" if value is None else ("recall" if value else "no_recall")


def _ci(interval: stats.Interval | None) -> list[str]:
    return ["", ""] if interval is None else [_num(interval.low), _num(interval.high)]


CASE_HEADER = [
    "case_id",
    "patient_pseudonym",
    "received_at",
    "closed_at",
    "status",
    "ai_score",
    "ai_score_note",
    "ai_exam_score",
    "ai_calibrated_probability",
    "ai_decision",
    "ai_band",
    "first_reader",
    "first_decision",
    "second_reader",
    "second_decision",
    "arbitration_reader",
    "arbitration_decision",
    "final_decision",
    "outcome",
]


def case_table(cases: reporting.CaseList) -> Table:
    """One row per case, built column by column. Free text (pseudonyms, reader names) is
    defused here, so ``to_csv`` need not visit every cell."""
    columns = _case_columns(cases)
    return CASE_HEADER, list(zip(*columns, strict=True))


def case_csv(cases: reporting.CaseList, chunk: int = 20_000) -> Iterator[str]:
    """``case_table`` as CSV, ``chunk`` rows at a time, for a streamed download: the text
    ``to_csv(case_table(cases), defused=True)`` gives once its bidi controls are shown
    (``neutralise_bidi``), as a test holds. Only free text can hold a comma, quote, line
    break or bidi control, so only it is escaped. A column of few distinct cells is kept
    as codes into its words, and neighbouring such columns are written together: each
    distinct run of cells once, and a row takes its run's text. Every row is then one
    format string of nine cells, not a ``csv.writer`` call per cell."""
    with collection_paused():
        cells = _csv_cells(cases)
    line = ",".join(["%s"] * len(cells)) + "\r\n"
    yield ",".join(CASE_HEADER) + "\r\n"
    for start in range(0, len(cases.data), chunk):
        part = [column[start : start + chunk] for column in cells]
        yield "".join(map(line.__mod__, zip(*part, strict=True)))


@contextmanager
def collection_paused() -> Iterator[None]:
    """Python's cycle collector paused while a million rows of strings and tuples are
    built: they hold no cycles, yet their allocation sets off collection after collection
    over them (a third of an export's time, measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Coded(report_data.Coded):
    """``report_data.Coded`` with what the CSV needs: ids to words, words written."""

    @classmethod
    def ids(cls, ids: np.ndarray, word: Callable[[int], str]) -> Coded:
        distinct, codes = np.unique(ids, return_inverse=True)
        return cls(codes.astype(np.int64), [word(i) for i in distinct.tolist()])

    @classmethod
    def written(cls, column: report_data.Coded, write: Callable[[str], str]) -> Coded:
        return cls(column.codes, [write(w) for w in column.words])


FLAGS = ["", "no_recall", "recall"]  # by stats.codes + 1


def _csv_cells(cases: reporting.CaseList) -> list[list[Any]]:
    """The nine cells of each CSV line: id, pseudonym, received, closed, status, score, the
    score's note with the exam score, the probability, and the rest together."""
    data, c = cases.data, cases.columns
    names = dict(zip(c.reader_names, _csv_free_text(list(c.reader_names.values())), strict=True))
    reads = []
    for i in range(3):
        reads += [
            Coded.ids(data.reader[i], lambda r: names.get(r, "") if r else ""),
            Coded(data.recall[i].astype(np.int64) + 1, FLAGS),
        ]
    scored = ~np.isnan(data.score)
    n = len(data)
    nothing = Coded(np.zeros(n, np.int64), [""])
    note = nothing if cases.validated else Coded(scored.astype(np.int64), ["", RAW_SCORE_LABEL])
    note = Coded.written(note, _csv_word)
    exam = nothing if cases.exam is None else Coded.ids(cases.exam, lambda e: str(e or ""))
    band = Coded.written(
        Coded.of(cases.band.tolist()),
        lambda b: _csv_word(b) if b in RANKING_BANDS or cases.validated else "",
    )
    ai = Coded(c.ai.astype(np.int64) + 1, FLAGS) if cases.validated else nothing
    outcome = Coded.written(cases.outcome, _csv_word)
    return [
        data.case_id.tolist(),
        _csv_free_text(cases.patient),
        _iso(data.received_us),
        _iso(data.closed_us),
        _together([Coded.written(cases.status, _csv_word)]),
        _nums(data.score),
        _together([note, exam]),
        [""] * n if cases.calibrated is None else _nums(cases.calibrated),
        _together([ai, band, *reads, Coded(c.final.astype(np.int64) + 1, FLAGS), outcome]),
    ]


def _together(columns: list[report_data.Coded]) -> list[str]:
    """Each row's cells of ``columns`` (words written as CSV) joined by commas; each
    distinct combination is joined once."""
    rows = len(columns[0].codes)
    if np.prod([float(len(column.words)) for column in columns]) >= 2**62:  # too many to number
        words = [np.array(column.words, dtype=object)[column.codes] for column in columns]
        return [",".join(cells) for cells in zip(*words, strict=True)]
    key = np.zeros(rows, np.int64)
    for column in columns:
        key = key * len(column.words) + column.codes
    found, at = np.unique(key, return_inverse=True)
    text = np.empty(len(found), dtype=object)
    for i, combination in enumerate(found.tolist()):
        cells = []
        for column in reversed(columns):
            combination, code = divmod(combination, len(column.words))
            cells.append(column.words[code])
        text[i] = ",".join(reversed(cells))
    return text[at].tolist()


def _csv_cell(cell: str) -> str:
    """Free text as ``csv.writer`` writes it once defused and its bidi controls shown."""
    return _csv_word(_safe(cell))


def _csv_word(word: str) -> str:
    """As ``csv.writer`` writes ``word`` (quoted where it must be), bidi controls shown."""
    text = neutralise_bidi(word)
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


# What makes a cell more than itself in the CSV: a delimiter, quote, line break, bidi control.
_ESCAPED = re.compile("[" + re.escape(',"\r\n' + "".join(sorted(BIDI_CONTROLS))) + "]")


# A cell of a NUL-joined column that starts like a formula (a NUL within a cell may match
# too: that only sends the column the careful way).
_FORMULA_AT_START = re.compile("(?:^|\0)[" + re.escape(FORMULA_START) + "]")


def _csv_free_text(cells: list[str]) -> list[str]:
    """``_csv_cell`` of each cell; a million pseudonyms are searched once for what needs
    escaping, and only a cell that starts like a formula or holds such a character is
    visited."""
    joined = "\0".join(cells)
    if _ESCAPED.search(joined):
        return [_csv_cell(cell) for cell in cells]
    if not _FORMULA_AT_START.search(joined):
        return cells
    return [cell if not cell or cell[0] not in FORMULA_START else _safe(cell) for cell in cells]


def _case_columns(cases: reporting.CaseList) -> list[list[Any]]:
    """The columns of ``CASE_HEADER``, cell by cell: the plain statement of what
    ``case_csv`` writes quickly."""
    data, c = cases.data, cases.columns
    flags = dict(enumerate(FLAGS, start=-1))
    reads = []
    for i in range(3):
        reads += [
            [_safe(c.reader_names.get(r, "")) if r else "" for r in data.reader[i].tolist()],
            [flags[code] for code in data.recall[i].tolist()],
        ]
    scores = _nums(data.score)
    empty = [""] * len(data)
    # A version not validated for triage: its raw score stays for research, labelled so;
    # its exam score, probability, decision and band are empty (ModelVersion's rule).
    note = empty if cases.validated else [RAW_SCORE_LABEL if v else "" for v in scores]
    bands = [b if b in RANKING_BANDS or cases.validated else "" for b in cases.band.tolist()]
    return [
        data.case_id.tolist(),
        [_safe(p) for p in cases.patient],
        _iso(data.received_us),
        _iso(data.closed_us),
        cases.status.cells(),
        scores,
        note,
        empty if cases.exam is None else [e or "" for e in cases.exam.tolist()],
        empty if cases.calibrated is None else _nums(cases.calibrated),
        [flags[code] for code in c.ai.tolist()] if cases.validated else empty,
        bands,
        *reads,
        [flags[code] for code in c.final.tolist()],
        cases.outcome.cells(),
    ]


# "0.0000" to "1.0000": a score or probability's cell, by its value in ten-thousandths.
_TEN_THOUSANDTHS = np.array([f"{i / 10_000:.4f}" for i in range(10_001)], dtype=object)


def _nums(values: np.ndarray) -> list[str]:
    """``f"{v:.4f}"`` of each value, empty for NaN. A value from 0 to 1 takes its text from
    a table by its value in ten-thousandths rounded, which is the same unless it lies
    within a millionth of a tie; those, and values out of range, are written one by one."""
    values = np.asarray(values, float)
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN go one by one below
        scaled = values * 10_000
        nearest = np.rint(scaled)
        off_tie = np.abs(np.abs(scaled - nearest) - 0.5) > 1e-6
    table = ~np.signbit(values) & (values <= 1) & off_tie
    text = np.full(len(values), "", dtype=object)
    text[table] = _TEN_THOUSANDTHS[nearest[table].astype(np.int64)]
    for i in np.flatnonzero(~table & ~np.isnan(values)).tolist():
        text[i] = f"{values[i]:.4f}"
    return text.tolist()


def _iso(epoch_us: np.ndarray) -> list[str]:
    """As ``datetime.isoformat`` of UTC datetimes: microseconds only where there are some;
    empty for -1 (none)."""
    moments = epoch_us.astype("datetime64[us]")
    whole = epoch_us % 1_000_000 == 0
    text = np.datetime_as_string(moments, unit="us").astype(object)
    text[whole] = np.datetime_as_string(moments[whole], unit="s").astype(object)
    text = text + "+00:00"
    text[epoch_us < 0] = ""  # none
    return text.tolist()


def agreement_table(report: reporting.Report) -> Table:
    header = ["rater_a", "rater_b", "n", "agreed", "percent_agreement", "kappa", "kappa_ci_low"]
    body = [
        [a, b, k.n, k.agreed, _num(k.percent), _num(k.kappa), *_ci(k.kappa_ci)]
        for a, b, k in report.agreements
    ]
    return [*header, "kappa_ci_high"], body


PERFORMANCE_HEADER = [
    "screens",
    "recalls",
    "tp",
    "fp",
    "fn",
    "tn",
    "sensitivity",
    "sensitivity_ci_low",
    "sensitivity_ci_high",
    "specificity",
    "specificity_ci_low",
    "specificity_ci_high",
    "ppv",
    "recall_rate",
    "cancer_detection_per_1000",
]


def _performance_cells(p: stats.Performance) -> list[Any]:
    return [
        p.screens,
        p.recalls,
        p.tp,
        p.fp,
        p.fn,
        p.tn,
        _num(p.sensitivity.value),
        *_ci(p.sensitivity.ci),
        _num(p.specificity.value),
        *_ci(p.specificity.ci),
        _num(p.ppv.value),
        _num(p.recall_rate.value),
        _num(p.cancer_detection_per_1000, 2),
    ]


def performance_table(report: reporting.Report) -> Table:
    rows = [[name, *_performance_cells(p)] for name, p in report.performances]
    return ["decision_by", *PERFORMANCE_HEADER], rows


def readers_table(report: reporting.Report) -> Table:
    header = [
        "reader",
        "reads",
        "first_reads",
        "second_reads",
        "arbitrations",
        "median_seconds_to_read",
        "reads_shown_this_ai",
        "overrode_ai_recall",
        "overrode_ai_no_recall",
        "override_rate",
        "kappa_vs_ai",
        "kappa_vs_final",
    ]
    body = [
        [
            s.reader,
            s.reads,
            s.by_kind[ReadKind.FIRST],
            s.by_kind[ReadKind.SECOND],
            s.by_kind[ReadKind.ARBITRATION],
            _num(s.median_seconds, 1),
            s.shown_ai,
            s.overrode_recall,
            s.overrode_no_recall,
            _num(s.override_rate.value),
            _num(s.vs_ai.kappa),
            _num(s.vs_final.kappa),
            *_performance_cells(s.performance),
        ]
        for s in report.readers
    ]
    return header + PERFORMANCE_HEADER, body


def workflow_table(report: reporting.Report) -> Table:
    w = report.workflow
    body: list[list[Any]] = [
        ["cases", w.cases],
        ["open_cases", w.open_cases],
        ["closed_cases", w.closed],
        ["double_read_cases", w.double_read],
        ["arbitrated_cases", w.arbitrated],
        ["arbitration_rate", _num(w.arbitration_rate.value)],
        ["median_seconds_to_read", _num(w.median_seconds_to_read, 1)],
        ["median_hours_upload_to_decision", _num(w.median_hours_to_decision, 2)],
        ["p90_hours_upload_to_decision", _num(w.p90_hours_to_decision, 2)],
    ]
    return ["measure", "value"], body


def trend_table(report: reporting.Report) -> Table:
    header = ["week_starting", "received", "closed", "recall_rate", "arbitration_rate"]
    body = [
        [
            p.week.isoformat(),
            p.received,
            p.closed,
            _num(p.recall_rate),
            _num(p.arbitration_rate),
            _num(p.ai_agreement),
        ]
        for p in report.trend
    ]
    return [*header, "ai_agreement_with_final"], body


def thresholds_table(report: reporting.Report) -> Table:
    steps = report.thresholds + ([report.what_if] if report.what_if else [])
    body = [[_num(w.threshold, 3), *_performance_cells(w.performance)] for w in steps]
    return ["ai_threshold", *PERFORMANCE_HEADER], body


def roc_table(report: reporting.Report) -> Table:
    body = [[_num(f), _num(t)] for f, t in zip(report.roc.fpr, report.roc.tpr, strict=True)]
    return ["false_positive_rate", "sensitivity"], body


def versions_table(summaries: list[reporting.VersionSummary]) -> Table:
    header = ["model_version_id", "model_version", "threshold", "scored_cases", "auc"]
    body = [
        [
            s.version.pk,
            str(s.version),
            _num(s.version.threshold),
            s.scored,
            _num(s.roc.auc),
            *_ci(s.roc.auc_ci),
            _num(s.vs_final.kappa),
            *_performance_cells(s.performance),
            "yes" if s.version.validated_for_triage else "no",
        ]
        for s in summaries
    ]
    tail = ["auc_ci_low", "auc_ci_high", "kappa_vs_final", *PERFORMANCE_HEADER]
    return [*header, *tail, "validated_for_triage"], body


REPORT_TABLES: dict[str, Callable[[reporting.Report], Table]] = {
    "agreement": agreement_table,
    "performance": performance_table,
    "readers": readers_table,
    "workflow": workflow_table,
    "trend": trend_table,
    "thresholds": thresholds_table,
    "roc": roc_table,
    "versions": lambda report: versions_table(report.versions),
}


SIMULATION_HEADER = [
    "policy",
    "cut",
    "chosen_cut",
    "screens",
    "reads",
    "reads_per_1000",
    "reads_per_1000_ci_low",
    "reads_per_1000_ci_high",
    "recalls",
    "recall_rate",
    "recall_rate_ci_low",
    "recall_rate_ci_high",
    "cancers_detected",
    "cancers_per_1000",
    "cancers_per_1000_ci_low",
    "cancers_per_1000_ci_high",
    "sensitivity",
    "sensitivity_ci_low",
    "sensitivity_ci_high",
    "specificity",
    "specificity_ci_low",
    "specificity_ci_high",
    "cancers_known",
    "cancers_single_read",
    "cancers_single_read_share",
    "cancers_single_read_ci_low",
    "cancers_single_read_ci_high",
    "safety_net_prompts",
]


def simulation_table(result: simulation.Simulation | None) -> Table:
    """Each policy at its chosen cut (``chosen_cut`` yes), then swept over every cut;
    standard double reading, which uses no cut, once. An empty cell: no figure."""
    if result is None:
        return SIMULATION_HEADER, []
    swept = [
        replay
        for policy, curve in result.curves.items()
        if policy != ReadingPolicy.STANDARD
        for replay in curve
    ]
    body = [_replay_row(r, "yes") for r in result.chosen] + [_replay_row(r, "") for r in swept]
    return SIMULATION_HEADER, body


def _replay_row(r: simulation.Replay, chosen: str) -> list[Any]:
    p = r.performance
    return [
        r.policy,
        "" if r.cut is None else f"{r.cut:g}",
        chosen,
        r.screens,
        r.reads,
        _num(r.reads_per_1000, 2),
        *_ci1(r.reads_per_1000_ci),
        p.recalls,
        _num(r.recall_rate.value),
        *_ci(r.recall_rate.ci),
        p.tp,
        _num(r.cancers_per_1000, 2),
        *_ci1(r.cancers_per_1000_ci),
        _num(r.sensitivity.value),
        *_ci(r.sensitivity.ci),
        _num(r.specificity.value),
        *_ci(r.specificity.ci),
        p.tp + p.fn,
        r.single_read_cancers,
        _num(r.sent_to_single_reading.value),
        *_ci(r.sent_to_single_reading.ci),
        r.prompts,
    ]


def _ci1(interval: stats.Interval | None) -> list[str]:
    """A per-1,000 interval, to two decimals."""
    return ["", ""] if interval is None else [_num(interval.low, 2), _num(interval.high, 2)]


def audit_table(auditevents: QuerySet[AuditEvent]) -> Table:
    header = ["event_id", "created_at", "user", "action", "outcome", "object_type", "object_id"]
    body = [
        [
            e.pk,
            e.created_at.isoformat(),
            e.actor_name,
            e.action,
            e.outcome,
            e.object_type,
            e.object_id,
            json.dumps(e.detail, sort_keys=True),
        ]
        for e in auditevents.iterator(chunk_size=2000)
    ]
    return [*header, "detail"], body


def _safe(cell: Any) -> Any:
    """Defuse spreadsheet formulas (OWASP CSV injection); numbers pass unchanged."""
    if not isinstance(cell, str) or not cell or cell[0] not in FORMULA_START:
        return cell
    try:
        float(cell)
    except ValueError:
        return "'" + cell
    return cell


def to_csv(table: Table, defused: bool = False) -> str:
    """The table as CSV; ``defused``: its free text is already (``case_table``)."""
    header, body = table
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(body if defused else ([_safe(cell) for cell in row] for row in body))
    return buffer.getvalue()
