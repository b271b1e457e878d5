"""CSV versions of every table on the auditor pages and of the case-level rows behind them.

Cases appear by database id and patient pseudonym only; a cell that cannot be computed
is empty, never 0. Free text (a user name typed at a failed login, say) that a
spreadsheet would run as a formula is quoted with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import QuerySet

from ..choices import ReadKind
from ..models import AuditEvent
from . import reporting, stats

Table = tuple[list[str], list[list[Any]]]


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


def case_table(rows: Iterable[reporting.CaseRow]) -> Table:
    body = []
    for r in rows:
        reads = []
        for kind in (ReadKind.FIRST, ReadKind.SECOND, ReadKind.ARBITRATION):
            read = r.reads.get(kind)
            reads += [read.reader if read else "", _flag(read.recall if read else None)]
        body.append(
            [
                r.case_id,
                r.patient,
                r.received_at.isoformat(),
                r.closed_at.isoformat() if r.closed_at else "",
                r.status,
                _num(r.ai_score),
                "" if r.ai_exam_score is None else r.ai_exam_score,
                _num(r.ai_calibrated),
                _flag(r.ai_recall),
                r.band,
                *reads,
                _flag(r.final),
                r.outcome,
            ]
        )
    return CASE_HEADER, body


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
        ]
        for s in summaries
    ]
    return header + ["auc_ci_low", "auc_ci_high", "kappa_vs_final", *PERFORMANCE_HEADER], body


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
    if not isinstance(cell, str) or not cell or cell[0] not in "=+-@\t\r":
        return cell
    try:
        float(cell)
    except ValueError:
        return "'" + cell
    return cell


def to_csv(table: Table) -> str:
    header, body = table
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([_safe(cell) for cell in row] for row in body)
    return buffer.getvalue()
