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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from .. import pathway
from ..choices import (
    AIStatus,
    CaseRoute,
    CaseStatus,
    Decision,
    Outcome,
    ReadKind,
    RiskBand,
    ai_recalls,
)
from ..models import AIResult, Case, ModelVersion, Read, version_bands
from . import report_data, stats

AI = "AI"
AI_UNVALIDATED = "AI (unvalidated model)"
"""How the auditor's AI-versus-reader figures name a version not validated for triage: what
it would have done, never a decision anyone was shown."""
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

    def where(self) -> tuple[list[str], list[Any]]:
        """The filter on the cases as SQL (the band applies later: it needs the scores)."""
        return report_data.where(self.date_from, self.date_to, self.reader_id, self.density)

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
        # A case closed on its first read alone was single-read, or agreed with the AI as
        # second reader (never possible under double reading): its first read decided.
        alone = {r.kind for r in self.reads.values()} == {ReadKind.FIRST}
        plan = pathway.Plan(CaseRoute.SINGLE) if alone else pathway.Plan()
        decision = pathway.final_decision(self.status, given, plan)
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


def all_rows(flt: ReportFilter, case_ids: list[int] | None = None) -> list[CaseRow]:
    """As ``case_rows``, before the band filter (a band belongs to one version);
    ``case_ids`` narrows to those cases."""
    cases = _cases(flt)
    if case_ids is not None:
        cases = cases.filter(pk__in=case_ids)
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
        chosen = _scores(cases).filter(model_version=version).values_list("case_id", "probability")
        scored = []
        for case_id, probability in chosen:
            if probability is None:  # a finished result always has one
                continue
            row = rows[case_id]
            row.ai_score = probability
            row.ai_recall = ai_recalls(probability, version.threshold)
            scored.append(row)
        bands = version_bands(np.array([row.ai_score for row in scored], float), version)
        for row, band in zip(scored, bands, strict=True):
            row.band = band
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
    exams = version.exam_scores(probabilities)
    calibrated = version.calibrated_probabilities(probabilities)
    for i, row in enumerate(rows):
        row.ai_exam_score = None if exams is None else int(exams[i])
        row.ai_calibrated = None if calibrated is None else float(calibrated[i])


def _cases(flt: ReportFilter) -> QuerySet[Case]:
    return report_data.filtered_cases(*flt.where())


def _scores(cases: QuerySet[Case]) -> QuerySet[AIResult]:
    return AIResult.for_cases.filter(status=AIStatus.DONE, case__in=cases)


# --- The rows as arrays -------------------------------------------------------------

KIND_CODES: dict[str, int] = {ReadKind.FIRST: 0, ReadKind.SECOND: 1, ReadKind.ARBITRATION: 2}


@dataclass
class Columns:
    """The cases as NumPy arrays (decisions as ``stats.codes``), and their reads flattened.

    Built once per report from ``report_data.CaseData``; every figure is then a few
    vectorised operations, so a report over a million screens costs well under a second.
    """

    score: np.ndarray
    ai: np.ndarray
    first: np.ndarray
    second: np.ndarray
    final: np.ndarray
    human: np.ndarray
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
    def of(cls, data: report_data.CaseData, version: ModelVersion | None) -> Columns:
        present = data.recall >= 0
        kinds, cases = np.nonzero(present)
        reader_ids = data.reader[present]
        final, human = _pathway_codes(data.closed, data.recall)
        day = data.day
        return cls(
            score=data.score,
            ai=stats.decisions_at(data.score, version.threshold)
            if version is not None
            else np.full(len(data), -1, np.int8),
            first=data.recall[0],
            second=data.recall[1],
            final=final,
            human=human,
            cancer=data.cancer,
            closed=data.closed,
            hours_to_decision=data.hours,
            # The Monday of the (UTC) day received; the epoch's day 0 was a Thursday.
            week=(day - (day + 3) % 7).astype("datetime64[D]"),
            read_case=cases,
            read_reader=reader_ids,
            read_kind=kinds.astype(np.int8),
            read_recall=data.recall[present],
            read_seconds=data.seconds[present],
            # Overrides count only reads shown this version's result: what the reader overruled.
            read_shown=data.shown[present],
            read_agrees=data.agrees[present],
            reader_names=_reader_names(np.unique(reader_ids)),
        )

    @property
    def judged(self) -> np.ndarray:
        """Cases with both an AI score and a known outcome: what ROC and AUC can use."""
        return ~np.isnan(self.score) & (self.cancer >= 0)


def _reader_names(reader_ids: np.ndarray) -> dict[int, str]:
    user = get_user_model()
    return dict(
        user.objects.filter(pk__in=reader_ids.tolist()).values_list("pk", user.USERNAME_FIELD)
    )


def _pathway_codes(closed: np.ndarray, recall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The final decision and the readers' word of every case, as codes.

    Both depend only on whether the case closed and on its three reads' decisions: 54
    combinations, each decided once by ``CaseRow`` (and so by the reading pathway)."""
    combination = closed.astype(np.int64) * 27 + (recall[0] + 1) * 9 + (recall[1] + 1) * 3
    combination += recall[2] + 1
    final, human = _PATHWAY_TABLE
    return final[combination], human[combination]


def _pathway_table() -> tuple[np.ndarray, np.ndarray]:
    final, human = [], []
    for closed in (False, True):
        for decisions in np.ndindex(3, 3, 3):
            row = CaseRow(0, "", timezone.now(), None, "", "")
            row.status = CaseStatus.CLOSED if closed else CaseStatus.READY
            for kind, code in zip(KIND_CODES, decisions, strict=True):
                if code:  # 0: no such read, 1: no recall, 2: recall
                    row.reads[kind] = ReadRow(kind, 0, "", code == 2, None, None, None)
            try:
                final.append(row.final)
            except KeyError:  # a second read without a first: the pathway never gets here
                final.append(None)
            human.append(row.human if final[-1] is not None or not closed else None)
    return stats.codes(final), stats.codes(human)


_PATHWAY_TABLE = _pathway_table()


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


def ai_name(version: ModelVersion | None) -> str:
    """The AI's row in the figures: marked where its version is not validated for triage."""
    return AI if version is None or version.validated_for_triage else AI_UNVALIDATED


@dataclass
class Report:
    filter: ReportFilter
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

    @property
    def ai_performance(self) -> stats.Performance:
        """The AI's row of ``performances``."""
        return self.performances[0][1]

    @property
    def ai_name(self) -> str:
        """What the figures call the AI (``ai_name``: marked when unvalidated)."""
        return self.performances[0][0]


@dataclass
class Selection:
    """The filter's cases as columns: all of them (``every``, what versions are compared
    on) and those in the band (``columns``, what the figures are about)."""

    data: report_data.CaseData
    every: Columns
    in_band: np.ndarray
    columns: Columns


def select(flt: ReportFilter) -> Selection:
    data = report_data.case_data(*flt.where(), flt.model_version)
    every = Columns.of(data, flt.model_version)
    if not flt.band:
        return Selection(data, every, np.ones(len(data), bool), every)
    in_band = _in_band(data, flt)
    return Selection(data, every, in_band, Columns.of(data.take(in_band), flt.model_version))


def _in_band(data: report_data.CaseData, flt: ReportFilter) -> np.ndarray:
    if not flt.band:
        return np.ones(len(data), bool)
    if flt.model_version is None:
        return np.full(len(data), flt.band == RiskBand.PENDING)
    return version_bands(data.score, flt.model_version) == flt.band


def build_report(
    flt: ReportFilter, what_if: float | None = None, bootstrap: bool | None = None
) -> Report:
    """Every figure of the dashboard. ``bootstrap``: the AUC interval by the bootstrap
    whatever the number of screens (None: where it is quick, see ``stats.roc``)."""
    chosen = select(flt)
    c = chosen.columns
    judged = c.judged
    roc = stats.roc(c.score[judged], c.cancer[judged] == 1, bootstrap=bootstrap)
    by_reader = ByReader(c)
    ai = ai_name(flt.model_version)
    return Report(
        filter=flt,
        cases=len(c.ai),
        computed_at=timezone.now(),
        scored=int((c.ai >= 0).sum()),
        with_outcome=int((c.cancer >= 0).sum()),
        agreements=[
            (ai, FIRST, stats.agreement(c.ai, c.first)),
            (ai, SECOND, stats.agreement(c.ai, c.second)),
            (FIRST, SECOND, stats.agreement(c.first, c.second)),
            (ai, FINAL, stats.agreement(c.ai, c.final)),
            (FIRST, FINAL, stats.agreement(c.first, c.final)),
            (SECOND, FINAL, stats.agreement(c.second, c.final)),
        ],
        performances=[
            (ai, stats.performance(c.ai, c.cancer)),
            (FIRST, stats.performance(c.first, c.cancer)),
            (SECOND, stats.performance(c.second, c.cancer)),
            (FINAL, stats.performance(c.final, c.cancer)),
        ],
        roc=roc,
        reader_points=_reader_points(c, judged, by_reader),
        readers=reader_stats(c, by_reader),
        workflow=workflow(c),
        trend=trend(c),
        thresholds=ThresholdCounts(c).at_each(THRESHOLD_STEPS),
        what_if=ThresholdCounts(c).at(what_if) if what_if is not None else None,
        # DeLong's interval does not depend on the resamples: the chosen version's own
        # ROC serves its row of the comparison when the band filter leaves every case in.
        versions=version_summaries(
            flt, chosen, bootstrap, roc if roc.ci_method == stats.DELONG and not flt.band else None
        ),
    )


def dashboard_report(
    flt: ReportFilter, what_if: float | None, refresh: bool = False, bootstrap: bool | None = None
) -> Report:
    """``build_report`` kept for ``REPORT_CACHE_SECONDS``: auditors move between filters and
    back. The page says when the figures were computed and offers to recompute; exports
    always compute afresh."""
    key = (
        "report:"
        + hashlib.sha256(
            json.dumps([flt.as_detail(), what_if, bootstrap], sort_keys=True).encode()
        ).hexdigest()
    )
    report = None if refresh else cache.get(key)
    if report is None:
        report = build_report(flt, what_if, bootstrap)
        cache.set(key, report, settings.REPORT_CACHE_SECONDS)
    return report


class ThresholdCounts:
    """The AI's performance at any threshold, from its scores sorted once per outcome."""

    def __init__(self, c: Columns):
        scored = ~np.isnan(c.score)
        self.sorted = {code: np.sort(c.score[scored & (c.cancer == code)]) for code in (-1, 0, 1)}

    def at(self, threshold: float) -> WhatIf:
        # Scores left of the threshold's leftmost slot are those ``ai_recalls`` refuses: the
        # same count as applying it to every score, found by bisection.
        below = {
            code: int(np.searchsorted(scores, threshold, side="left"))
            for code, scores in self.sorted.items()
        }
        above = {code: len(self.sorted[code]) - below[code] for code in below}
        return WhatIf(
            threshold,
            stats.Performance(
                screens=sum(len(scores) for scores in self.sorted.values()),
                recalls=sum(above.values()),
                tp=above[1],
                fp=above[0],
                fn=below[1],
                tn=below[0],
            ),
        )

    def at_each(self, thresholds: list[float]) -> list[WhatIf]:
        return [self.at(t) for t in thresholds]


def _reader_points(
    c: Columns, judged: np.ndarray, by_reader: ByReader
) -> list[tuple[str, stats.Performance]]:
    """Each reader's and the final decision's operating point on the AI-scored cases."""
    points = [(FINAL, stats.performance(c.final[judged], c.cancer[judged]))]
    tables = by_reader.performance_tables(judged_only=True)
    for reader_id, name in sorted(c.reader_names.items(), key=lambda item: item[1]):
        points.append((name, stats.performance_of(tables[by_reader.index[reader_id]])))
    return points


class ByReader:
    """Every read counted by reader and by what the figures ask of it, in one ``bincount``:
    the read's kind, decision, whether it was shown this AI, whether it agreed, and its case's
    AI decision, final decision and outcome. Each per-reader table is a sum over that cube."""

    # Axes after the reader's: kind, recall, shown, agrees, AI, final, cancer (codes + 1).
    SHAPE = (3, 3, 2, 3, 3, 3, 3)

    def __init__(self, c: Columns):
        ids = np.array(sorted(c.reader_names), np.int64)
        self.index = {int(reader_id): i for i, reader_id in enumerate(ids)}
        readers = len(ids)
        self.reader = self._indices(c.read_reader, ids)
        key = self.reader
        case = c.read_case
        for values, size in zip(
            [
                c.read_kind,
                c.read_recall + 1,
                c.read_shown,
                c.read_agrees + 1,
                c.ai[case] + 1,
                c.final[case] + 1,
                c.cancer[case] + 1,
            ],
            self.SHAPE,
            strict=True,
        ):
            key = key * size + values
        cells = (readers + 1) * int(np.prod(self.SHAPE))
        self.cube = np.bincount(key, minlength=cells).reshape(readers + 1, *self.SHAPE)[:readers]

    @staticmethod
    def _indices(reader_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Each read's reader as 0..len(ids)-1, or len(ids) for one without a name."""
        top = int(reader_ids.max(initial=0))
        if top < 1 << 24:  # user ids: a lookup table is one gather
            lookup = np.full(top + 1, len(ids))
            lookup[ids[ids <= top]] = np.flatnonzero(ids <= top)
            return lookup[reader_ids]
        at = np.searchsorted(ids, reader_ids).clip(max=max(len(ids) - 1, 0))
        known = ids[at] == reader_ids if len(ids) else np.zeros(len(at), bool)
        return np.where(known, at, len(ids))

    def performance_tables(self, judged_only: bool = False) -> np.ndarray:
        """(reader, recall, cancer); ``judged_only``: cases the AI scored with an outcome."""
        cube = self.cube
        if judged_only:
            cube = cube.copy()
            cube[:, :, :, :, :, 0] = 0  # no AI score
            cube[..., 0] = 0  # no outcome
        return cube.sum(axis=(1, 3, 4, 5, 6))

    def agreement_tables(self, axis: int) -> np.ndarray:
        """Each reader's decision against the case's AI (axis 5) or final decision (axis 6),
        as ``stats.agreement_of`` tables: (theirs no/yes) x (reader no/yes)."""
        other = [a for a in range(1, 8) if a not in (2, axis)]
        table = self.cube.sum(axis=tuple(other))[:, 1:, 1:]  # (reader, recall, theirs)
        return table.transpose(0, 2, 1).reshape(len(table), 4)


def reader_stats(c: Columns, by_reader: ByReader | None = None) -> list[ReaderStats]:
    """Per reader: reads, time, overrides of the AI they were shown, agreement, performance."""
    by_reader = by_reader or ByReader(c)
    cube = by_reader.cube
    by_kind = cube.sum(axis=(2, 3, 4, 5, 6, 7))
    shown = cube[:, :, :, 1]  # (reader, kind, recall, agrees, ...)
    overrides = shown[:, :, :, 1].sum(axis=(1, 3, 4, 5))  # agrees == no, by recall
    vs_ai, vs_final = by_reader.agreement_tables(5), by_reader.agreement_tables(6)
    performance = by_reader.performance_tables()
    timed = ~np.isnan(c.read_seconds)
    result = []
    for reader_id, name in c.reader_names.items():
        i = by_reader.index[reader_id]
        seconds = c.read_seconds[timed & (by_reader.reader == i)]
        result.append(
            ReaderStats(
                reader_id=reader_id,
                reader=name,
                reads=int(by_kind[i].sum()),
                by_kind={k: int(by_kind[i, code]) for k, code in KIND_CODES.items()},
                median_seconds=stats.median(seconds),
                shown_ai=int(shown[i].sum()),
                overrode_recall=int(overrides[i, 1]),
                overrode_no_recall=int(overrides[i, 2]),
                vs_ai=stats.agreement_of(vs_ai[i]),
                vs_final=stats.agreement_of(vs_final[i]),
                performance=stats.performance_of(performance[i]),
            )
        )
    return sorted(result, key=lambda s: s.reader)


def workflow(c: Columns) -> Workflow:
    """Volumes, arbitration and timings over all the cases."""
    double = c.second >= 0
    seconds = c.read_seconds[~np.isnan(c.read_seconds)]
    hours = c.hours_to_decision[c.closed]
    hours = hours[~np.isnan(hours)]
    closed = int(c.closed.sum())
    return Workflow(
        cases=len(c.ai),
        open_cases=len(c.ai) - closed,
        closed=closed,
        double_read=int(double.sum()),
        arbitrated=int((double & (c.first != c.second)).sum()),
        median_seconds_to_read=stats.median(seconds),
        median_hours_to_decision=stats.median(hours),
        p90_hours_to_decision=stats.percentile(hours, 90),
    )


def trend(c: Columns) -> list[TrendPoint]:
    """Week by week (Monday of the week received): volume, recall, arbitration, AI agreement."""
    if not len(c.week):
        return []
    # Weeks as 0, 1, ... from the first: counted by bincount, without sorting the cases.
    first = c.week.min()
    week = (c.week - first).astype(np.int64) // 7
    every_week = np.bincount(week)
    present = np.flatnonzero(every_week)
    weeks = first + 7 * present

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(week[mask], minlength=len(every_week))[present]

    def rate(successes: np.ndarray, n: np.ndarray, i: int) -> float | None:
        return stats.Proportion(int(successes[i]), int(n[i])).value

    received, closed = every_week[present], count(c.closed)
    screens, recalls = count(c.final >= 0), count(c.final == 1)
    double = c.second >= 0
    double_read, arbitrated = count(double), count(double & (c.first != c.second))
    both = (c.ai >= 0) & (c.final >= 0)
    paired, agreed = count(both), count(both & (c.ai == c.final))
    return [
        TrendPoint(
            week=monday.astype(dt.date),
            received=int(received[i]),
            closed=int(closed[i]),
            recall_rate=rate(recalls, screens, i),
            arbitration_rate=rate(arbitrated, double_read, i),
            ai_agreement=rate(agreed, paired, i),
        )
        for i, monday in enumerate(weeks)
    ]


# --- Comparing versions -------------------------------------------------------------


@dataclass
class VersionSummary:
    version: ModelVersion
    scored: int
    roc: stats.Roc
    performance: stats.Performance
    vs_final: stats.Agreement


def version_summaries(
    flt: ReportFilter,
    chosen: Selection,
    bootstrap: bool | None = None,
    chosen_roc: stats.Roc | None = None,
) -> list[VersionSummary]:
    """Every version with results on the filter's cases, side by side; the band filter,
    being one version's, does not apply here."""
    base, data = chosen.every, chosen.data
    with_results = AIResult.for_cases.filter(
        model_version=OuterRef("pk"),
        status=AIStatus.DONE,
        probability__isnull=False,
    )
    if flt.where()[0]:
        with_results = with_results.filter(case__in=_cases(flt))
    summaries = []
    for version in ModelVersion.objects.filter(Exists(with_results)).order_by("-created_at"):
        if flt.model_version is not None and version.pk == flt.model_version.pk:
            score = data.score
        else:
            score = report_data.version_scores(*flt.where(), version.pk, data.case_id)
        judged = ~np.isnan(score) & (base.cancer >= 0)
        ai = stats.decisions_at(score, version.threshold)
        if chosen_roc is not None and score is data.score:
            roc = chosen_roc
        else:
            roc = stats.roc(
                score[judged], base.cancer[judged] == 1, n_boot=300, bootstrap=bootstrap
            )
        summaries.append(
            VersionSummary(
                version=version,
                scored=int((ai >= 0).sum()),
                roc=roc,
                performance=stats.performance(ai, base.cancer),
                vs_final=stats.agreement(ai, base.final),
            )
        )
    return summaries


def discordant_mask(ai: np.ndarray, human: np.ndarray, direction: str = "") -> np.ndarray:
    """Where the AI and the readers' word differ; ``direction`` narrows to ``ai_recall``
    (AI recall, readers no) or ``reader_recall`` (the reverse)."""
    found = (ai >= 0) & (human >= 0) & (ai != human)
    if direction == "ai_recall":
        return found & (ai == 1)
    if direction == "reader_recall":
        return found & (ai == 0)
    return found


def discordant(rows: list[CaseRow], direction: str = "") -> list[CaseRow]:
    """The rows of cases where the AI and the readers' word differ (``discordant_mask``)."""
    mask = discordant_mask(
        stats.codes(r.ai_recall for r in rows), stats.codes(r.human for r in rows), direction
    )
    return [rows[i] for i in np.flatnonzero(mask)]


def discordant_ids(flt: ReportFilter, direction: str = "") -> list[int]:
    """The discordant cases of the filter, oldest first, without building their rows."""
    chosen = select(flt)
    c = chosen.columns
    found = discordant_mask(c.ai, c.human, direction)
    ids = chosen.data.case_id[chosen.in_band][found]
    received = chosen.data.received_us[chosen.in_band][found]
    return ids[np.lexsort((ids, received))].tolist()


@dataclass
class CaseList:
    """The case-level rows behind the figures, as columns, oldest first: what the case CSV
    exports, a million rows without a Python object per case."""

    validated: bool  # the chosen version is validated for triage (or there is none)
    data: report_data.CaseData
    columns: Columns
    patient: list[str]
    status: report_data.Coded
    outcome: report_data.Coded
    exam: np.ndarray | None
    calibrated: np.ndarray | None
    band: np.ndarray


def case_list(flt: ReportFilter, discordant_in: str | None = None) -> CaseList:
    """Every case of the filter; ``discordant_in``: only the discordant ones, in that
    direction ("" for both)."""
    if discordant_in is None:  # every case: their text fetched beside the columns
        with report_data.texts_ahead(*flt.where()) as texts:
            data, columns = _listed(flt, None)
            return _case_list(flt, data, columns, texts(data.case_id))
    data, columns = _listed(flt, discordant_in)
    return _case_list(flt, data, columns, report_data.case_texts(*flt.where(), data.case_id))


def _listed(flt: ReportFilter, discordant_in: str | None) -> tuple[report_data.CaseData, Columns]:
    """The cases to list, oldest first, and their columns."""
    chosen = select(flt)
    data, c = chosen.data, chosen.columns
    keep = np.flatnonzero(chosen.in_band)  # the band's cases: where c's rows are
    if discordant_in is not None:
        keep = keep[discordant_mask(c.ai, c.human, discordant_in)]
    keep = keep[np.lexsort((data.case_id[keep], data.received_us[keep]))]
    data = data.take(keep)  # one copy of every column, in the order listed
    return data, Columns.of(data, flt.model_version)


def _case_list(
    flt: ReportFilter, data: report_data.CaseData, columns: Columns, text: report_data.CaseText
) -> CaseList:
    version = flt.model_version
    scored = ~np.isnan(data.score)
    exam = calibrated = None
    if version is not None:
        exam = version.exam_scores(data.score)
        calibrated = version.calibrated_probabilities(data.score)
        band = version_bands(data.score, version)
    else:
        band = np.full(len(data), RiskBand.PENDING.value, dtype=object)
    return CaseList(
        validated=version is None or version.validated_for_triage,
        data=data,
        columns=columns,
        patient=text.patient,
        status=text.status,
        outcome=text.outcome,
        exam=None if exam is None else np.where(scored, exam, 0),
        calibrated=calibrated,
        band=band,
    )


def rows_of(flt: ReportFilter, case_ids: list[int], chunk: int = 5000) -> Iterator[CaseRow]:
    """The rows of these cases (a page of a list, or every case for an export), in the
    order given, built ``chunk`` cases at a time."""
    for start in range(0, len(case_ids), chunk):
        some = case_ids[start : start + chunk]
        found = {row.case_id: row for row in all_rows(flt, case_ids=some)}
        yield from (found[i] for i in some if i in found)


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
