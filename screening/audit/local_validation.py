"""Local validation: a model version measured on this site's own screens against outcomes.

What ``ml.evaluate`` measured on files when a version was registered says nothing about the
women screened here. This module judges any version with case results (the active one, or
one in silent trial) on the screens read here whose outcome is recorded: the exam-level AUC
with an interval by woman, sensitivity and specificity at each of its operating points beside
the readers' on the same screens (paired, McNemar's exact test), the cancers where it and the
readers parted, and how observed cancer rates follow its score. Screens of women the version
was trained or calibrated on (its evidence names them) are left out and counted.

The columns come as the dashboard's do (``report_data``): one pass over the cases with an
outcome and one over the version's scores from the covering index ``airesult_scores``, side
by side; every figure is then vectorised (``stats``). Read-only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ml import evidence as ml_evidence

from ..choices import AIStatus, AuditAction, CaseStatus, Outcome
from ..models import AIResult, AuditEvent, Case, ModelVersion, Patient
from . import drift, plots, report_data, reporting, stats

FINAL, FIRST = reporting.FINAL, reporting.FIRST
# The most cases listed in each direction; the page says how many there are in all.
LISTED = 100
DECILES = 10
EVERY_SCREEN = drift.DriftFilter()
# Where a version's evidence may name the women it was trained or calibrated on.
SUBJECT_BLOCKS = ("training_data", "calibration", "bands", "exam_score", "training", "validation")


@dataclass
class LocalScreens:
    """The screens with a recorded outcome, as columns (codes as ``stats.codes``), with the
    version's case score (NaN: not scored by it)."""

    case_id: np.ndarray
    patient_id: np.ndarray
    cancer: np.ndarray
    closed: np.ndarray
    recall: np.ndarray  # (3, screens): first, second, arbitration
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.case_id)

    def take(self, index: np.ndarray) -> LocalScreens:
        return LocalScreens(
            case_id=self.case_id[index],
            patient_id=self.patient_id[index],
            cancer=self.cancer[index],
            closed=self.closed[index],
            recall=self.recall[:, index],
            score=self.score[index],
        )


def screens_with_outcome(
    version: ModelVersion, fast: bool | None = None
) -> tuple[LocalScreens, int]:
    """Every screen with an outcome and the version's score on it; and how many screens the
    version scored in all (outcome or not). ``fast``: the packed PostgreSQL transfer."""
    if fast is None:
        fast = connection.vendor == "postgresql"
    return _packed(version) if fast else _rows(version)


# The case id, its woman and the record's codes (``report_data.RECORD_LAYOUT``, bytes 25-28).
SCREEN_LAYOUT = np.dtype([("case_id", ">i8"), ("patient_id", ">i8"), ("codes", ">u4")])
_SCREENS_SQL = (
    "SELECT string_agg(int8send(id) || int8send(patient_id)"
    " || substring(report_record from 25 for 4), ''::bytea)"
    " FROM screening_case WHERE outcome <> ''"
)


def _packed(version: ModelVersion) -> tuple[LocalScreens, int]:
    raw, scored = report_data._both(
        (_SCREENS_SQL, [], SCREEN_LAYOUT),
        (report_data._scores_sql([]), [version.pk], report_data.SCORE_LAYOUT),
    )
    assert scored is not None
    codes = raw["codes"].astype(np.uint16)

    def code(shift: int) -> np.ndarray:
        return ((codes >> np.uint16(shift)) & np.uint16(3)).astype(np.int8) - np.int8(1)

    case_ids = raw["case_id"].astype(np.int64)
    screens = LocalScreens(
        case_id=case_ids,
        patient_id=raw["patient_id"].astype(np.int64),
        cancer=code(0),
        closed=(codes & np.uint16(4)).astype(bool),
        recall=np.stack([code(4 + 2 * i) for i in range(3)]),
        score=report_data.align(
            case_ids, scored["case_id"].astype(np.int64), scored["score"].astype(float)
        ),
    )
    return screens, len(scored)


def _code(value: Any) -> int:
    """A read's decision (True recall, False not, None no read) as a ``stats.codes`` code."""
    return -1 if value is None else int(value)


def _rows(version: ModelVersion) -> tuple[LocalScreens, int]:
    rows = list(
        Case.objects.exclude(outcome="").values_list(
            "pk",
            "patient_id",
            "outcome",
            "status",
            "first_recall",
            "second_recall",
            "arbitration_recall",
        )
    )
    scores = list(
        AIResult.for_cases.filter(
            model_version=version, status=AIStatus.DONE, probability__isnull=False
        ).values_list("case_id", "probability")
    )
    case_ids = np.array([row[0] for row in rows], np.int64)
    screens = LocalScreens(
        case_id=case_ids,
        patient_id=np.array([row[1] for row in rows], np.int64),
        cancer=np.array([int(row[2] == Outcome.MALIGNANT) for row in rows], np.int8),
        closed=np.array([row[3] == CaseStatus.CLOSED for row in rows], bool),
        recall=np.array([[_code(row[4 + i]) for row in rows] for i in range(3)], np.int8).reshape(
            3, len(rows)
        ),
        score=report_data.align(
            case_ids,
            np.array([s[0] for s in scores], np.int64),
            np.array([s[1] for s in scores], float),
        ),
    )
    return screens, len(scores)


# --- The women a version was trained or calibrated on ---------------------------------


def training_subjects(version: ModelVersion) -> set[str]:
    """The pseudonyms (or patient ids) of the women a version was trained or calibrated on,
    wherever its manifest, evidence or metrics name them: a ``subjects`` list (or a mapping of lists,
    e.g. by split) at the top level or in one of ``SUBJECT_BLOCKS``."""
    found: set[str] = set(version.excluded_subjects)  # the manifest's training and calibration
    for source in (version.evidence, version.metrics):
        if not isinstance(source, Mapping):
            continue
        blocks = [source, *(source.get(name) for name in SUBJECT_BLOCKS)]
        for block in blocks:
            if isinstance(block, Mapping):
                found |= _named(block.get("subjects"))
    return found


def _named(value: Any) -> set[str]:
    if isinstance(value, Mapping):
        return set().union(*(_named(v) for v in value.values())) if value else set()
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return {str(v).strip() for v in value if str(v).strip()}
    return set()


def training_patient_ids(subjects: set[str]) -> np.ndarray:
    """The site's patients among ``subjects`` (by pseudonym), as sorted ids."""
    if not subjects:
        return np.array([], np.int64)
    ids = Patient.objects.filter(pseudonym__in=sorted(subjects)).values_list("pk", flat=True)
    return np.sort(np.fromiter(ids, np.int64))


# --- Figures -----------------------------------------------------------------------


@dataclass
class Paired:
    """The version at one operating point against a reader decision, on the same screens
    (scored, outcome known, the reader decision made)."""

    reader: str
    ai: stats.Performance
    readers: stats.Performance
    cancers_ai_only: int  # cancers the version would recall and the readers did not
    cancers_readers_only: int
    normals_ai_only: int  # non-cancers the version would clear and the readers recalled
    normals_readers_only: int

    @property
    def screens(self) -> int:
        return self.ai.screens

    @property
    def cancers(self) -> int:
        return self.ai.tp + self.ai.fn

    @property
    def sensitivity_p(self) -> float:
        return stats.mcnemar_exact(self.cancers_ai_only, self.cancers_readers_only)

    @property
    def specificity_p(self) -> float:
        return stats.mcnemar_exact(self.normals_ai_only, self.normals_readers_only)


@dataclass
class OperatingPoint:
    label: str
    cut: float
    ai: stats.Performance  # on every judged screen
    paired: list[Paired]


@dataclass
class ListedCase:
    case_id: int
    pseudonym: str
    score: float


@dataclass
class CaseListing:
    """Cancers where the version and the readers parted, the most telling first."""

    cut: float
    count: int
    cases: list[ListedCase]


@dataclass
class ReliabilityBin:
    low: float
    high: float
    screens: int
    cancers: int
    mean_score: float
    mean_calibrated: float | None

    @property
    def observed(self) -> stats.Proportion:
        return stats.Proportion(self.cancers, self.screens)


@dataclass
class LocalReport:
    version: ModelVersion
    computed_at: dt.datetime
    with_outcome: int  # screens with a recorded outcome, scored or not
    scored: int  # screens the version scored, outcome or not
    scored_with_outcome: int  # before training women are left out
    subjects_named: int  # women the evidence names as training or calibration
    excluded_women: int  # of them, women screened here with a scored outcome
    excluded_screens: int
    screens: int  # what the figures rest on
    cancers: int
    women: int
    auc: stats.ClusteredAuc
    points: list[OperatingPoint]
    scored_low_found: CaseListing  # cancers below the lowest cut that readers recalled
    scored_high_missed: CaseListing  # cancers at or above the highest cut readers did not
    reliability: list[ReliabilityBin]
    calibrated: bool  # the reliability plot reads against a validated calibration
    reliability_plot: str | None = None  # drawn once, kept with the figures
    about: drift.DriftFilter = EVERY_SCREEN  # which screens: all, or a filter's


def operating_points(version: ModelVersion) -> list[tuple[str, float]]:
    """The version's threshold and its validated band cuts, lowest first; a cut named
    twice (bands cut at the threshold) is listed once."""
    named: dict[float, list[str]] = {float(version.threshold): ["threshold"]}
    bands = version.evidence.get("bands") if isinstance(version.evidence, Mapping) else None
    if isinstance(bands, Mapping) and "intermediate_from" in bands and "high_from" in bands:
        named.setdefault(float(bands["intermediate_from"]), []).append("intermediate band")
        named.setdefault(float(bands["high_from"]), []).append("high band")
    return [(" = ".join(labels), cut) for cut, labels in sorted(named.items())]


def matching_cases(version: ModelVersion, about: drift.DriftFilter) -> np.ndarray | None:
    """The cases a filter keeps, as the drift page picks films (``drift.DriftFilter``): a
    density a reader recorded, the woman's age band at the screen, a film of that
    manufacturer among those the version scored. None: no filter, every case."""
    if about == EVERY_SCREEN:
        return None
    films = drift.films_of(version)
    return np.unique(films.case_id[about.mask(films)])


def build(
    version: ModelVersion,
    bootstrap: bool | None = None,
    about: drift.DriftFilter = EVERY_SCREEN,
) -> LocalReport:
    """Every local figure of ``version``, computed afresh, on the screens ``about`` keeps."""
    every, scored = screens_with_outcome(version)
    kept = matching_cases(version, about)
    if kept is not None:
        every = every.take(np.isin(every.case_id, kept))
    subjects = training_subjects(version)
    trained_ids = training_patient_ids(subjects)
    trained = (
        np.isin(every.patient_id, trained_ids) if len(trained_ids) else np.zeros(len(every), bool)
    )
    has_score = ~np.isnan(every.score)
    s = every.take(has_score & ~trained)
    left_out = has_score & trained
    final, _ = reporting._pathway_codes(s.closed, s.recall)
    readers = [(FINAL, final), (FIRST, s.recall[0])]
    cancer = s.cancer == 1
    points = [
        _operating_point(label, cut, s.score, s.cancer, readers)
        for label, cut in operating_points(version)
    ]
    cuts = [cut for _, cut in operating_points(version)]
    low_found = cancer & (s.score < cuts[0]) & (final == 1)
    high_missed = cancer & (s.score >= cuts[-1]) & (final == 0)
    return LocalReport(
        version=version,
        computed_at=timezone.now(),
        with_outcome=len(every),
        scored=scored,
        scored_with_outcome=int(has_score.sum()),
        subjects_named=len(subjects),
        excluded_women=stats.cluster_indices(every.patient_id[left_out])[1],
        excluded_screens=int(left_out.sum()),
        screens=len(s),
        cancers=int(cancer.sum()),
        women=stats.cluster_indices(s.patient_id)[1],
        auc=stats.clustered_auc(s.score, cancer, s.patient_id, bootstrap=bootstrap),
        points=points,
        scored_low_found=_listing(s, low_found, cuts[0], lowest_first=True),
        scored_high_missed=_listing(s, high_missed, cuts[-1], lowest_first=False),
        reliability=reliability(s.score, cancer, version.evidence),
        calibrated=ml_evidence.calibration_shown(version.evidence),
        about=about,
    )


def _operating_point(
    label: str,
    cut: float,
    score: np.ndarray,
    cancer: np.ndarray,
    readers: list[tuple[str, np.ndarray]],
) -> OperatingPoint:
    ai = stats.decisions_at(score, cut)
    return OperatingPoint(label, cut, stats.performance(ai, cancer), [
        paired(name, ai, decided, cancer) for name, decided in readers
    ])  # fmt: skip


def paired(name: str, ai: np.ndarray, readers: np.ndarray, cancer: np.ndarray) -> Paired:
    """The version's and the readers' decisions on the screens both made, with the
    discordant screens McNemar's test counts, among cancers and among the rest."""
    # One count of every (version, readers, outcome) combination; each figure is a sum of it.
    key = (ai.astype(np.int64) + 1) * 6 + (readers + 1) * 2 + (cancer == 1)
    table = np.bincount(key, minlength=18).reshape(3, 3, 2)[1:, 1:]  # both decided
    no_decision = np.zeros((1, 3), np.int64)

    def performance(counts: np.ndarray) -> stats.Performance:
        """(decision no/yes, outcome no/yes) as ``stats.performance_of``'s 3 x 3 table."""
        padded = np.hstack([np.zeros((2, 1), np.int64), counts])
        return stats.performance_of(np.vstack([no_decision, padded]))

    return Paired(
        reader=name,
        ai=performance(table.sum(axis=1)),
        readers=performance(table.sum(axis=0)),
        cancers_ai_only=int(table[1, 0, 1]),
        cancers_readers_only=int(table[0, 1, 1]),
        normals_ai_only=int(table[0, 1, 0]),
        normals_readers_only=int(table[1, 0, 0]),
    )


def _listing(s: LocalScreens, found: np.ndarray, cut: float, lowest_first: bool) -> CaseListing:
    at = np.flatnonzero(found)
    order = np.lexsort((s.case_id[at], s.score[at] if lowest_first else -s.score[at]))
    shown = at[order[:LISTED]]
    case_ids = s.case_id[shown].tolist()
    text = report_data.case_text([], [], case_ids) if case_ids else {}
    return CaseListing(
        cut=cut,
        count=len(at),
        cases=[
            ListedCase(case_id, text[case_id][0], float(score))
            for case_id, score in zip(case_ids, s.score[shown].tolist(), strict=True)
        ],
    )


def reliability(score: np.ndarray, cancer: np.ndarray, evidence: Any) -> list[ReliabilityBin]:
    """Observed cancer rate per decile of the score (tied scores share a decile, so a
    decile may hold more or fewer than a tenth, and empty ones are dropped), beside the mean
    score and, where the version has a validated calibration, its mean calibrated
    probability."""
    if not len(score):
        return []
    edges = np.quantile(score, np.linspace(0, 1, DECILES + 1))
    decile = np.searchsorted(edges[1:-1], score, side="right")
    screens = np.bincount(decile, minlength=DECILES)
    cancers = np.bincount(decile, weights=cancer, minlength=DECILES)
    sums = np.bincount(decile, weights=score, minlength=DECILES)
    calibrated = None
    if ml_evidence.calibration_shown(evidence):
        probabilities = ml_evidence.calibrated_probabilities(score, evidence)
        if probabilities is not None:
            calibrated = np.bincount(decile, weights=probabilities, minlength=DECILES)
    return [
        ReliabilityBin(
            low=float(edges[i]),
            high=float(edges[i + 1]),
            screens=int(screens[i]),
            cancers=int(cancers[i]),
            mean_score=float(sums[i] / screens[i]),
            mean_calibrated=None if calibrated is None else float(calibrated[i] / screens[i]),
        )
        for i in range(DECILES)
        if screens[i]
    ]


# --- Kept figures ------------------------------------------------------------------


def fingerprint(version: ModelVersion) -> str:
    """What the figures depend on, cheaply: the newest case (an import with outcomes), the
    newest outcome recorded, how many screens the version has scored, and its evidence and
    manifest (the cuts, the women named). Each is an index lookup, so a kept report is never stale."""
    newest_case = Case.objects.order_by("-pk").values_list("pk", flat=True).first()
    newest_outcome = (
        AuditEvent.objects.filter(action=AuditAction.OUTCOME_RECORDED)
        .order_by("-created_at", "-pk")
        .values_list("pk", flat=True)
        .first()
    )
    scored = AIResult.for_cases.filter(
        Q(model_version=version) & Q(status=AIStatus.DONE) & Q(probability__isnull=False)
    ).count()
    described = json.dumps(
        [version.threshold, version.evidence, version.metrics, version.manifest_subjects],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(
        json.dumps([version.pk, newest_case, newest_outcome, scored, described]).encode()
    ).hexdigest()


def local_report(
    version: ModelVersion,
    refresh: bool = False,
    bootstrap: bool | None = None,
    about: drift.DriftFilter = EVERY_SCREEN,
) -> LocalReport:
    """``build`` kept for ``REPORT_CACHE_SECONDS`` while nothing it rests on has changed:
    a new outcome, screen or score recomputes it on the next view."""
    screens = hashlib.sha256(repr(about).encode()).hexdigest()[:16]  # a name may hold spaces
    key = f"local-validation:{fingerprint(version)}:{bootstrap}:{screens}"
    report = None if refresh else cache.get(key)
    if report is None:
        report = build(version, bootstrap, about)
        report.reliability_plot = plots.reliability_plot(report.reliability, report.calibrated)
        cache.set(key, report, settings.REPORT_CACHE_SECONDS)
    return report


def versions_with_results() -> list[ModelVersion]:
    """Every version that has scored a screen, and the active one: what the picker offers."""
    scored = AIResult.for_cases.filter(model_version=OuterRef("pk"), status=AIStatus.DONE)
    return list(
        ModelVersion.objects.filter(Q(Exists(scored)) | Q(is_active=True)).order_by(
            "-is_active", "-created_at"
        )
    )
