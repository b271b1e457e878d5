"""The auditor's report: cases and reads turned into agreement, performance and workflow figures.

One pass of two queries builds a row per case (the chosen model version's score, each
read, the final decision, the outcome); every figure is then computed from those rows
by ``screening.stats``, so the dashboard, the CSV exports and the tests all see the same
numbers. Read-only: nothing here writes to the database.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from . import stats
from .choices import AIStatus, CaseStatus, Decision, Outcome, ReadKind, RiskBand
from .models import AIResult, Case, ModelVersion, Read, score_band

AI = "AI"
FIRST, SECOND, ARBITRATION, FINAL = "First reader", "Second reader", "Arbitration", "Final decision"
# What-if thresholds drawn on the threshold plot and exported as a table.
THRESHOLD_STEPS = [round(0.05 * i, 2) for i in range(1, 20)]


@dataclass(frozen=True)
class ReportFilter:
    """Which cases the report covers: received in a date range, read by a reader, in a band.

    ``model_version`` chooses the AI whose scores are judged; ``band`` is that version's
    risk band for each case (cases it has not scored have none and drop out of a band).
    """

    model_version: ModelVersion | None = None
    reader_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    band: str = ""

    def as_detail(self) -> dict[str, Any]:
        """The filter for an audit event: ids and dates only."""
        return {
            "model_version_id": self.model_version.pk if self.model_version else None,
            "reader_id": self.reader_id,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "band": self.band,
        }


@dataclass
class ReadRow:
    kind: str
    reader_id: int
    reader: str
    recall: bool
    seconds: int | None
    created_at: dt.datetime
    seen_version_id: int | None
    agrees_with_ai: bool | None


@dataclass
class CaseRow:
    case_id: int
    patient: str
    received_at: dt.datetime
    closed_at: dt.datetime | None
    status: str
    outcome: str
    ai_score: float | None = None
    ai_recall: bool | None = None
    band: str = RiskBand.PENDING
    reads: dict[str, ReadRow] = field(default_factory=dict)

    @property
    def cancer(self) -> bool | None:
        return None if not self.outcome else self.outcome == Outcome.MALIGNANT

    def decision(self, kind: str) -> bool | None:
        read = self.reads.get(kind)
        return None if read is None else read.recall

    @property
    def final(self) -> bool | None:
        """The closing decision: agreed first and second reads, or the arbitration."""
        if self.status != CaseStatus.CLOSED:
            return None
        return (
            self.decision(ReadKind.ARBITRATION)
            if ReadKind.ARBITRATION in self.reads
            else (self.decision(ReadKind.SECOND))
        )

    @property
    def first_decision(self) -> bool | None:
        return self.decision(ReadKind.FIRST)

    @property
    def second_decision(self) -> bool | None:
        return self.decision(ReadKind.SECOND)

    @property
    def arbitration_decision(self) -> bool | None:
        return self.decision(ReadKind.ARBITRATION)

    @property
    def human(self) -> bool | None:
        """The readers' word: the final decision once closed, else a lone first read.

        None while first and second readers disagree and arbitration is pending.
        """
        if self.status == CaseStatus.CLOSED:
            return self.final
        if set(self.reads) == {ReadKind.FIRST}:
            return self.reads[ReadKind.FIRST].recall
        return None


def case_rows(flt: ReportFilter) -> list[CaseRow]:
    """One row per case in the filter, oldest first, with its reads and its AI score."""
    cases = _cases(flt)
    rows = {
        c["pk"]: CaseRow(
            case_id=c["pk"],
            patient=c["patient__pseudonym"],
            received_at=c["received_at"],
            closed_at=c["closed_at"],
            status=c["status"],
            outcome=c["outcome"],
        )
        for c in cases.order_by("received_at", "pk").values(
            "pk", "patient__pseudonym", "received_at", "closed_at", "status", "outcome"
        )
    }
    version = flt.model_version
    if version is not None:
        scores = AIResult.objects.filter(
            model_version=version, image__isnull=True, status=AIStatus.DONE, case__in=cases
        ).values_list("case_id", "probability")
        for case_id, probability in scores:
            row = rows[case_id]
            row.ai_score = probability
            row.ai_recall = probability >= version.threshold
            row.band = score_band(probability, version.threshold)
    reads = Read.objects.filter(case__in=cases).values_list(
        "case_id",
        "kind",
        "reader_id",
        "reader__username",
        "decision",
        "seconds_taken",
        "created_at",
        "ai_result__model_version_id",
        "agrees_with_ai",
    )
    for case_id, kind, reader_id, name, decision, seconds, created, seen, agrees in reads:
        rows[case_id].reads[kind] = ReadRow(
            kind, reader_id, name, decision == Decision.RECALL, seconds, created, seen, agrees
        )
    result = list(rows.values())
    if flt.band:
        result = [r for r in result if r.band == flt.band]
    return result


def _cases(flt: ReportFilter) -> QuerySet[Case]:
    cases = Case.objects.all()
    if flt.date_from:
        cases = cases.filter(received_at__date__gte=flt.date_from)
    if flt.date_to:
        cases = cases.filter(received_at__date__lte=flt.date_to)
    if flt.reader_id:
        cases = cases.filter(
            Exists(Read.objects.filter(case=OuterRef("pk"), reader_id=flt.reader_id))
        )
    return cases


# --- Figures ------------------------------------------------------------------------


@dataclass
class ReaderStats:
    reader_id: int
    reader: str
    reads: int
    by_kind: dict[str, int]
    median_seconds: float | None
    shown_ai: int
    overrode_recall: int  # the AI said recall, the reader said no
    overrode_no_recall: int  # the AI said no recall, the reader recalled
    vs_ai: stats.Agreement
    vs_final: stats.Agreement
    performance: stats.Performance

    @property
    def override_rate(self) -> stats.Proportion:
        return stats.Proportion(self.overrode_recall + self.overrode_no_recall, self.shown_ai)


@dataclass
class Workflow:
    cases: int
    open_cases: int
    closed: int
    double_read: int
    arbitrated: int
    median_seconds_to_read: float | None
    median_hours_to_decision: float | None
    p90_hours_to_decision: float | None

    @property
    def arbitration_rate(self) -> stats.Proportion:
        return stats.Proportion(self.arbitrated, self.double_read)


@dataclass
class TrendPoint:
    week: dt.date
    received: int
    closed: int
    recall_rate: float | None
    arbitration_rate: float | None
    ai_agreement: float | None


@dataclass
class WhatIf:
    threshold: float
    performance: stats.Performance


@dataclass
class Report:
    filter: ReportFilter
    rows: list[CaseRow]
    scored: int
    with_outcome: int
    agreements: list[tuple[str, str, stats.Agreement]]
    performances: list[tuple[str, stats.Performance]]
    roc: stats.Roc
    reader_points: list[tuple[str, stats.Performance]]
    readers: list[ReaderStats]
    workflow: Workflow
    trend: list[TrendPoint]
    thresholds: list[WhatIf]
    what_if: WhatIf | None


def build_report(flt: ReportFilter, what_if: float | None = None) -> Report:
    rows = case_rows(flt)
    ai = [r.ai_recall for r in rows]
    first = [r.decision(ReadKind.FIRST) for r in rows]
    second = [r.decision(ReadKind.SECOND) for r in rows]
    final = [r.final for r in rows]
    outcomes = [r.cancer for r in rows]
    judged = [r for r in rows if r.ai_score is not None and r.cancer is not None]
    return Report(
        filter=flt,
        rows=rows,
        scored=sum(r.ai_score is not None for r in rows),
        with_outcome=sum(r.cancer is not None for r in rows),
        agreements=[
            (AI, FIRST, stats.agreement(ai, first)),
            (AI, SECOND, stats.agreement(ai, second)),
            (FIRST, SECOND, stats.agreement(first, second)),
            (AI, FINAL, stats.agreement(ai, final)),
            (FIRST, FINAL, stats.agreement(first, final)),
            (SECOND, FINAL, stats.agreement(second, final)),
        ],
        performances=[
            (AI, stats.performance(ai, outcomes)),
            (FIRST, stats.performance(first, outcomes)),
            (SECOND, stats.performance(second, outcomes)),
            (FINAL, stats.performance(final, outcomes)),
        ],
        roc=stats.roc([r.ai_score for r in judged], [bool(r.cancer) for r in judged]),
        reader_points=_reader_points(judged),
        readers=reader_stats(rows, flt.model_version),
        workflow=workflow(rows),
        trend=trend(rows),
        thresholds=[_what_if(rows, t) for t in THRESHOLD_STEPS],
        what_if=_what_if(rows, what_if) if what_if is not None else None,
    )


def _what_if(rows: list[CaseRow], threshold: float) -> WhatIf:
    decisions = stats.decisions_at([r.ai_score for r in rows], threshold)
    return WhatIf(threshold, stats.performance(decisions, [r.cancer for r in rows]))


def _reader_points(judged: list[CaseRow]) -> list[tuple[str, stats.Performance]]:
    """Each reader's and the final decision's operating point on the AI-scored cases."""
    outcomes = [r.cancer for r in judged]
    points = [(FINAL, stats.performance([r.final for r in judged], outcomes))]
    by_reader: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for row in judged:
        for read in row.reads.values():
            by_reader[read.reader].append((read.recall, bool(row.cancer)))
    for name in sorted(by_reader):
        decisions, truth = zip(*by_reader[name], strict=True)
        points.append((name, stats.performance(list(decisions), list(truth))))
    return points


def reader_stats(rows: list[CaseRow], version: ModelVersion | None) -> list[ReaderStats]:
    """Per reader: reads, time, overrides of the AI they were shown, agreement, performance."""
    reads: dict[int, list[tuple[CaseRow, ReadRow]]] = defaultdict(list)
    for row in rows:
        for read in row.reads.values():
            reads[read.reader_id].append((row, read))
    result = []
    for reader_id, pairs in reads.items():
        # Overrides count only reads shown this version's result: what the reader overruled.
        shown = [
            (row, read)
            for row, read in pairs
            if read.agrees_with_ai is not None
            and version is not None
            and read.seen_version_id == version.pk
        ]
        overrides = [read for _, read in shown if read.agrees_with_ai is False]
        recalls = [read.recall for _, read in pairs]
        result.append(
            ReaderStats(
                reader_id=reader_id,
                reader=pairs[0][1].reader,
                reads=len(pairs),
                by_kind={k: sum(r.kind == k for _, r in pairs) for k in ReadKind.values},
                median_seconds=stats.median([r.seconds for _, r in pairs if r.seconds is not None]),
                shown_ai=len(shown),
                overrode_recall=sum(not r.recall for r in overrides),
                overrode_no_recall=sum(r.recall for r in overrides),
                vs_ai=stats.agreement([row.ai_recall for row, _ in pairs], recalls),
                vs_final=stats.agreement([row.final for row, _ in pairs], recalls),
                performance=stats.performance(recalls, [row.cancer for row, _ in pairs]),
            )
        )
    return sorted(result, key=lambda s: s.reader)


def workflow(rows: list[CaseRow]) -> Workflow:
    closed = [r for r in rows if r.status == CaseStatus.CLOSED and r.closed_at]
    double = [r for r in rows if ReadKind.SECOND in r.reads]
    hours = [(r.closed_at - r.received_at).total_seconds() / 3600 for r in closed]
    seconds = [read.seconds for r in rows for read in r.reads.values() if read.seconds is not None]
    return Workflow(
        cases=len(rows),
        open_cases=len(rows) - len(closed),
        closed=len(closed),
        double_read=len(double),
        arbitrated=sum(r.decision(ReadKind.FIRST) != r.decision(ReadKind.SECOND) for r in double),
        median_seconds_to_read=stats.median(seconds),
        median_hours_to_decision=stats.median(hours),
        p90_hours_to_decision=stats.percentile(hours, 90),
    )


def trend(rows: list[CaseRow]) -> list[TrendPoint]:
    """Week by week (Monday of the week received): volume, recall, arbitration, AI agreement."""
    weeks: dict[dt.date, list[CaseRow]] = defaultdict(list)
    for row in rows:
        day = row.received_at.date()
        weeks[day - dt.timedelta(days=day.weekday())].append(row)
    points = []
    for week in sorted(weeks):
        group = weeks[week]
        final = [r.final for r in group]
        flow = workflow(group)
        points.append(
            TrendPoint(
                week=week,
                received=len(group),
                closed=flow.closed,
                recall_rate=stats.performance(final, [None] * len(group)).recall_rate.value,
                arbitration_rate=flow.arbitration_rate.value,
                ai_agreement=stats.agreement([r.ai_recall for r in group], final).percent,
            )
        )
    return points


# --- Comparing versions -------------------------------------------------------------


@dataclass
class VersionSummary:
    version: ModelVersion
    scored: int
    roc: stats.Roc
    performance: stats.Performance
    vs_final: stats.Agreement


def version_summaries(flt: ReportFilter) -> list[VersionSummary]:
    """Every version with results, judged on the same filter, for a side-by-side table."""
    with_results = ModelVersion.objects.filter(
        Exists(AIResult.objects.filter(model_version=OuterRef("pk"), status=AIStatus.DONE))
    ).order_by("-created_at")
    summaries = []
    for version in with_results:
        rows = case_rows(_with_version(flt, version))
        judged = [r for r in rows if r.ai_score is not None and r.cancer is not None]
        summaries.append(
            VersionSummary(
                version=version,
                scored=sum(r.ai_score is not None for r in rows),
                roc=stats.roc(
                    [r.ai_score for r in judged], [bool(r.cancer) for r in judged], n_boot=300
                ),
                performance=stats.performance(
                    [r.ai_recall for r in rows], [r.cancer for r in rows]
                ),
                vs_final=stats.agreement([r.ai_recall for r in rows], [r.final for r in rows]),
            )
        )
    return summaries


def _with_version(flt: ReportFilter, version: ModelVersion) -> ReportFilter:
    return ReportFilter(version, flt.reader_id, flt.date_from, flt.date_to, flt.band)


def discordant(rows: list[CaseRow], direction: str = "") -> list[CaseRow]:
    """Cases where the AI and the readers' latest word differ; ``direction`` narrows to
    ``ai_recall`` (AI recall, readers no) or ``reader_recall`` (the reverse)."""
    found = [
        r
        for r in rows
        if r.ai_recall is not None and r.human is not None and r.ai_recall != r.human
    ]
    if direction == "ai_recall":
        return [r for r in found if r.ai_recall]
    if direction == "reader_recall":
        return [r for r in found if not r.ai_recall]
    return found


def default_version() -> ModelVersion | None:
    """The active version, else the newest one with results: what an auditor looks at first."""
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is not None:
        return active
    return (
        ModelVersion.objects.filter(
            Exists(AIResult.objects.filter(model_version=OuterRef("pk"), status=AIStatus.DONE))
        )
        .order_by("-created_at")
        .first()
    )
