"""The auditor's report: cases and reads turned into agreement, performance and workflow figures.

One pass of two queries builds a row per case (the chosen model version's score, each
read, the final decision, the outcome); every figure is then computed from those rows
by ``screening.audit.stats``, so the dashboard, the CSV exports and the tests all see the same
numbers. Read-only: nothing here writes to the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from ml import evidence

from ..choices import AIStatus, CaseStatus, Decision, Outcome, ReadKind, RiskBand
from ..models import AIResult, Case, ModelVersion, Read, version_band
from ..reading import pathway
from . import stats

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
    # ACR density as a reader of the case recorded it (structured reads only).
    density: str = ""

    def as_detail(self) -> dict[str, Any]:
        """The filter for an audit event: ids and dates only."""
        return {
            "model_version_id": self.model_version.pk if self.model_version else None,
            "reader_id": self.reader_id,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "band": self.band,
            "density": self.density,
        }


@dataclass
class ReadRow:
    kind: str
    reader_id: int
    reader: str
    recall: bool
    seconds: int | None
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
    ai_exam_score: int | None = None
    ai_calibrated: float | None = None
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
        """The closing decision, as the reading pathway defines it (None while open)."""
        given = [
            pathway.GivenRead(
                r.kind, r.reader_id, Decision.RECALL if r.recall else Decision.NO_RECALL
            )
            for r in self.reads.values()
        ]
        decision = pathway.final_decision(self.status, given)
        return None if not decision else decision == Decision.RECALL

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
    return in_band(all_rows(flt), flt.band)


def in_band(rows: list[CaseRow], band: str) -> list[CaseRow]:
    return [r for r in rows if r.band == band] if band else rows


def all_rows(flt: ReportFilter, scores: VersionScores | None = None) -> list[CaseRow]:
    """As ``case_rows``, before the band filter (a band belongs to one version).

    ``scores``, when the caller already fetched every version's (``version_scores``),
    saves querying the chosen version's again."""
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
        chosen: Iterable[tuple[int, float | None]]
        if scores is None:
            chosen = (
                _scores(cases).filter(model_version=version).values_list("case_id", "probability")
            )
        else:
            chosen = scores.get(version.pk, {}).items()
        scored = []
        for case_id, probability in chosen:
            if probability is None:  # a finished result always has one
                continue
            row = rows[case_id]
            row.ai_score = probability
            row.ai_recall = probability >= version.threshold
            row.band = version_band(probability, version)
            scored.append(row)
        _add_exam_scores(scored, version)
    reads = list(
        Read.objects.filter(case__in=cases).values_list(
            "case_id",
            "kind",
            "reader_id",
            "decision",
            "seconds_taken",
            "ai_result__model_version_id",
            "agrees_with_ai",
        )
    )
    # Reader names in one small query, not a join repeated on every read.
    names = dict(
        get_user_model()
        .objects.filter(pk__in={read[2] for read in reads})
        .values_list("pk", get_user_model().USERNAME_FIELD)
    )
    for case_id, kind, reader_id, decision, seconds, seen, agrees in reads:
        rows[case_id].reads[kind] = ReadRow(
            kind, reader_id, names[reader_id], decision == Decision.RECALL, seconds, seen, agrees
        )
    return list(rows.values())


def _add_exam_scores(rows: list[CaseRow], version: ModelVersion) -> None:
    """Exam score and calibrated probability of every scored row, vectorised."""
    probabilities = np.array([row.ai_score for row in rows], float)
    exams = evidence.exam_scores(probabilities, version.evidence)
    calibrated = evidence.calibrated_probabilities(probabilities, version.evidence)
    for i, row in enumerate(rows):
        row.ai_exam_score = None if exams is None else int(exams[i])
        row.ai_calibrated = None if calibrated is None else float(calibrated[i])


def _cases(flt: ReportFilter) -> QuerySet[Case]:
    cases = Case.objects.all()
    if flt.date_from:
        cases = cases.filter(received_at__date__gte=flt.date_from)
    if flt.date_to:
        cases = cases.filter(received_at__date__lte=flt.date_to)
    if flt.density:
        cases = cases.filter(Exists(Read.objects.filter(case=OuterRef("pk"), density=flt.density)))
    if flt.reader_id:
        cases = cases.filter(
            Exists(Read.objects.filter(case=OuterRef("pk"), reader_id=flt.reader_id))
        )
    return cases


def _scores(cases: QuerySet[Case]) -> QuerySet[AIResult]:
    return AIResult.for_cases.filter(status=AIStatus.DONE, case__in=cases)


VersionScores = dict[int, dict[int, float]]


def version_scores(flt: ReportFilter) -> VersionScores:
    """Every version's finished case scores on the filter's cases, in one query."""
    found: VersionScores = {}
    rows = _scores(_cases(flt)).values_list("model_version_id", "case_id", "probability")
    for version_id, case_id, probability in rows:
        if probability is None:  # a finished result always has one
            continue
        found.setdefault(version_id, {})[case_id] = probability
    return found


# --- The rows as arrays -------------------------------------------------------------

KIND_CODES: dict[str, int] = {ReadKind.FIRST: 0, ReadKind.SECOND: 1, ReadKind.ARBITRATION: 2}


@dataclass
class Columns:
    """The case rows as NumPy arrays (decisions as ``stats.codes``), and their reads flattened.

    Built once per report; every figure is then a few vectorised operations, so a report
    over 100 000 screens costs seconds, not minutes.
    """

    score: np.ndarray
    ai: np.ndarray
    first: np.ndarray
    second: np.ndarray
    final: np.ndarray
    cancer: np.ndarray
    closed: np.ndarray
    hours_to_decision: np.ndarray
    week: np.ndarray
    read_case: np.ndarray
    read_reader: np.ndarray
    read_kind: np.ndarray
    read_recall: np.ndarray
    read_seconds: np.ndarray
    read_shown: np.ndarray
    read_agrees: np.ndarray
    reader_names: dict[int, str]

    @classmethod
    def of(cls, rows: list[CaseRow], version: ModelVersion | None) -> Columns:
        version_id = version.pk if version is not None else None
        reads = [(i, read) for i, row in enumerate(rows) for read in row.reads.values()]
        return cls(
            score=np.array([np.nan if r.ai_score is None else r.ai_score for r in rows], float),
            ai=stats.codes(r.ai_recall for r in rows),
            first=stats.codes(r.first_decision for r in rows),
            second=stats.codes(r.second_decision for r in rows),
            final=stats.codes(r.final for r in rows),
            cancer=stats.codes(r.cancer for r in rows),
            closed=np.array([r.status == CaseStatus.CLOSED for r in rows], bool),
            hours_to_decision=np.array(
                [
                    (r.closed_at - r.received_at).total_seconds() / 3600
                    if r.status == CaseStatus.CLOSED and r.closed_at
                    else np.nan
                    for r in rows
                ],
                float,
            ),
            week=np.array([_monday(r.received_at) for r in rows], "datetime64[D]"),
            read_case=np.array([i for i, _ in reads], int),
            read_reader=np.array([r.reader_id for _, r in reads], int),
            read_kind=np.array([KIND_CODES[r.kind] for _, r in reads], np.int8),
            read_recall=stats.codes(r.recall for _, r in reads),
            read_seconds=np.array(
                [np.nan if r.seconds is None else r.seconds for _, r in reads], float
            ),
            # Overrides count only reads shown this version's result: what the reader overruled.
            read_shown=np.array(
                [
                    r.agrees_with_ai is not None and r.seen_version_id == version_id
                    for _, r in reads
                ],
                bool,
            ),
            read_agrees=stats.codes(r.agrees_with_ai for _, r in reads),
            reader_names={r.reader_id: r.reader for _, r in reads},
        )

    @property
    def judged(self) -> np.ndarray:
        """Cases with both an AI score and a known outcome: what ROC and AUC can use."""
        return ~np.isnan(self.score) & (self.cancer >= 0)


def _monday(moment: dt.datetime) -> dt.date:
    day = moment.date()
    return day - dt.timedelta(days=day.weekday())


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
    cases: int
    computed_at: dt.datetime
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
    versions: list[VersionSummary]


def build_report(flt: ReportFilter, what_if: float | None = None) -> Report:
    scores = version_scores(flt)
    unbanded = all_rows(flt, scores)
    every = Columns.of(unbanded, flt.model_version)
    rows = in_band(unbanded, flt.band)
    c = Columns.of(rows, flt.model_version) if flt.band else every
    judged = c.judged
    return Report(
        filter=flt,
        rows=rows,
        cases=len(rows),
        computed_at=timezone.now(),
        scored=int((c.ai >= 0).sum()),
        with_outcome=int((c.cancer >= 0).sum()),
        agreements=[
            (AI, FIRST, stats.agreement(c.ai, c.first)),
            (AI, SECOND, stats.agreement(c.ai, c.second)),
            (FIRST, SECOND, stats.agreement(c.first, c.second)),
            (AI, FINAL, stats.agreement(c.ai, c.final)),
            (FIRST, FINAL, stats.agreement(c.first, c.final)),
            (SECOND, FINAL, stats.agreement(c.second, c.final)),
        ],
        performances=[
            (AI, stats.performance(c.ai, c.cancer)),
            (FIRST, stats.performance(c.first, c.cancer)),
            (SECOND, stats.performance(c.second, c.cancer)),
            (FINAL, stats.performance(c.final, c.cancer)),
        ],
        roc=stats.roc(c.score[judged], c.cancer[judged] == 1),
        reader_points=_reader_points(c, judged),
        readers=reader_stats(c),
        workflow=workflow(c),
        trend=trend(c),
        thresholds=[_what_if(c, t) for t in THRESHOLD_STEPS],
        what_if=_what_if(c, what_if) if what_if is not None else None,
        versions=version_summaries(scores, unbanded, every),
    )


def dashboard_report(flt: ReportFilter, what_if: float | None, refresh: bool = False) -> Report:
    """``build_report`` kept for ``REPORT_CACHE_SECONDS``: a year of screens takes seconds to
    sum up, and auditors move between filters and back. The page says when the figures were
    computed and offers to recompute; exports always compute afresh. The case rows are not
    kept (the page shows figures only)."""
    key = (
        "report:"
        + hashlib.sha256(
            json.dumps([flt.as_detail(), what_if], sort_keys=True).encode()
        ).hexdigest()
    )
    report = None if refresh else cache.get(key)
    if report is None:
        report = replace(build_report(flt, what_if), rows=[])
        cache.set(key, report, settings.REPORT_CACHE_SECONDS)
    return report


def _what_if(c: Columns, threshold: float) -> WhatIf:
    return WhatIf(threshold, stats.performance(stats.decisions_at(c.score, threshold), c.cancer))


def _reader_points(c: Columns, judged: np.ndarray) -> list[tuple[str, stats.Performance]]:
    """Each reader's and the final decision's operating point on the AI-scored cases."""
    points = [(FINAL, stats.performance(c.final[judged], c.cancer[judged]))]
    on_judged = judged[c.read_case]
    for reader_id, name in sorted(c.reader_names.items(), key=lambda item: item[1]):
        mine = on_judged & (c.read_reader == reader_id)
        points.append((name, stats.performance(c.read_recall[mine], c.cancer[c.read_case[mine]])))
    return points


def reader_stats(c: Columns) -> list[ReaderStats]:
    """Per reader: reads, time, overrides of the AI they were shown, agreement, performance."""
    result = []
    for reader_id, name in c.reader_names.items():
        mine = c.read_reader == reader_id
        cases, recalls = c.read_case[mine], c.read_recall[mine]
        overrides = mine & c.read_shown & (c.read_agrees == 0)
        seconds = c.read_seconds[mine]
        result.append(
            ReaderStats(
                reader_id=reader_id,
                reader=name,
                reads=int(mine.sum()),
                by_kind={
                    k: int((c.read_kind[mine] == code).sum()) for k, code in KIND_CODES.items()
                },
                median_seconds=stats.median(seconds[~np.isnan(seconds)]),
                shown_ai=int((mine & c.read_shown).sum()),
                overrode_recall=int((overrides & (c.read_recall == 0)).sum()),
                overrode_no_recall=int((overrides & (c.read_recall == 1)).sum()),
                vs_ai=stats.agreement(c.ai[cases], recalls),
                vs_final=stats.agreement(c.final[cases], recalls),
                performance=stats.performance(recalls, c.cancer[cases]),
            )
        )
    return sorted(result, key=lambda s: s.reader)


def workflow(c: Columns, cases: np.ndarray | None = None) -> Workflow:
    """Volumes, arbitration and timings, over all cases or the ``cases`` mask."""
    cases = np.ones(len(c.ai), bool) if cases is None else cases
    double = cases & (c.second >= 0)
    reads = cases[c.read_case] & ~np.isnan(c.read_seconds)
    hours = c.hours_to_decision[cases & c.closed]
    hours = hours[~np.isnan(hours)]
    closed = int((cases & c.closed).sum())
    return Workflow(
        cases=int(cases.sum()),
        open_cases=int(cases.sum()) - closed,
        closed=closed,
        double_read=int(double.sum()),
        arbitrated=int((double & (c.first != c.second)).sum()),
        median_seconds_to_read=stats.median(c.read_seconds[reads]),
        median_hours_to_decision=stats.median(hours),
        p90_hours_to_decision=stats.percentile(hours, 90),
    )


def trend(c: Columns) -> list[TrendPoint]:
    """Week by week (Monday of the week received): volume, recall, arbitration, AI agreement."""
    points = []
    for week in np.unique(c.week):
        cases = c.week == week
        flow = workflow(c, cases)
        points.append(
            TrendPoint(
                week=week.astype(dt.date),
                received=flow.cases,
                closed=flow.closed,
                recall_rate=stats.performance(c.final[cases], c.cancer[cases]).recall_rate.value,
                arbitration_rate=flow.arbitration_rate.value,
                ai_agreement=stats.agreement(c.ai[cases], c.final[cases]).percent,
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


def version_summaries(
    scores: VersionScores, rows: list[CaseRow], base: Columns
) -> list[VersionSummary]:
    """Every version with results on ``rows`` (``base`` their columns), side by side; the
    band filter, being one version's, does not apply here."""
    summaries = []
    for version in ModelVersion.objects.filter(pk__in=scores).order_by("-created_at"):
        by_case = scores[version.pk]
        score = np.array([by_case.get(r.case_id, np.nan) for r in rows], float)
        judged = ~np.isnan(score) & (base.cancer >= 0)
        ai = stats.decisions_at(score, version.threshold)
        summaries.append(
            VersionSummary(
                version=version,
                scored=int((ai >= 0).sum()),
                roc=stats.roc(score[judged], base.cancer[judged] == 1, n_boot=300),
                performance=stats.performance(ai, base.cancer),
                vs_final=stats.agreement(ai, base.final),
            )
        )
    return summaries


def discordant(rows: list[CaseRow], direction: str = "") -> list[CaseRow]:
    """Cases where the AI and the readers' word differ; ``direction`` narrows to
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
