"""Drift: does a model version still score this site's films as it scored its reference?

A model proven on one population can silently stop working on another: a new scanner, a
software update on one unit, a new site. So every version with film scores is watched per
manufacturer, scanner model and site (``Image.manufacturer``, ``scanner_model``, ``site``,
kept from the DICOM header at ingest), week by week: its film scores against the version's
reference distribution (the population stability index and a two-sample KS test), the share
of films it failed to score, and the case-level recall rate and reader agreement with it.

The reference is the scores of the version's normal validation films where its evidence
records them (``evidence["reference_scores"]``, written by ``ml.evaluate``), else its first ``DRIFT_REFERENCE_WEEKS`` weeks of
local scores (those weeks are then the baseline, not tested); the page says which.

A group's week *drifts* when, on at least ``DRIFT_MIN_FILMS`` scored films, its PSI reaches
``DRIFT_PSI_ALERT`` and the KS test gives p below ``DRIFT_KS_P``: both, so that neither a
large sample making a trivial shift "significant" nor a small one making PSI noisy alerts
alone. ``raise_alerts`` writes each drifted (version, grouping, group, week) once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import DateField, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import ExtractYear, TruncWeek

from .. import events
from ..choices import AgeBand, AIStatus, Decision, DriftGroupBy
from ..models import AIResult, DriftAlert, ModelVersion, density_bit

UNKNOWN = "unknown"
PSI_BINS = 10
# An empty bin's share, so PSI stays finite: the usual floor in credit-risk practice.
PSI_FLOOR = 1e-4
REFERENCE_KEY = "reference_scores"

FILM_FIELDS = (
    "image__study__case_id",
    "week",
    "image__manufacturer",
    "image__scanner_model",
    "image__site",
    "status",
    "probability",
    "image__study__case__read_densities",
    "study_year",
    "image__study__case__patient__birth_year",
    "image__study__case__final_decision",
    "image__study__case__first_agrees",
    "image__study__case__first_seen_version_id",
    "image__study__case__second_agrees",
    "image__study__case__second_seen_version_id",
)


# ----------------------------------------------------------------------------- statistics


def psi(reference: np.ndarray, sample: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``sample`` against ``reference``.

    Bins are the reference's deciles (ties merged), so each holds about a tenth of the
    reference; sum over bins of (a - e) * ln(a / e), shares floored at ``PSI_FLOOR``.
    Below 0.1 is read as stable, 0.1-0.2 as a moderate shift, above 0.2 as a major one.
    """
    reference = np.asarray(reference, dtype=float)
    sample = np.asarray(sample, dtype=float)
    edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    expected = _shares(reference, edges)
    actual = _shares(sample, edges)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.maximum(counts / max(len(values), 1), PSI_FLOOR)


def ks_p(reference: np.ndarray, sample: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (scipy, imported here only:
    the web process does not load it until an auditor asks for this page)."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(sample, float), np.asarray(reference, float))
    return float(result.statistic), float(result.pvalue)


# ----------------------------------------------------------------------------- the films


@dataclass(frozen=True)
class Films:
    """One version's finished film results, as columns (one row per film)."""

    case_id: np.ndarray
    week: np.ndarray  # datetime64[D], the Monday
    groups: dict[str, np.ndarray]  # DriftGroupBy value -> label per film ("unknown": none)
    scored: np.ndarray  # bool: a score came back
    score: np.ndarray  # float, NaN where not scored
    densities: np.ndarray  # Case.read_densities bits
    age_band: np.ndarray
    recalled: np.ndarray  # float per film's case: 1 recall, 0 no recall, NaN undecided
    agrees: np.ndarray  # float (n, 2): each read's agreement with this version, NaN if none

    def __len__(self) -> int:
        return len(self.case_id)

    def take(self, mask: np.ndarray) -> Films:
        return Films(
            case_id=self.case_id[mask],
            week=self.week[mask],
            groups={k: v[mask] for k, v in self.groups.items()},
            scored=self.scored[mask],
            score=self.score[mask],
            densities=self.densities[mask],
            age_band=self.age_band[mask],
            recalled=self.recalled[mask],
            agrees=self.agrees[mask],
        )


def films_of(version: ModelVersion) -> Films:
    """Every film the version finished (scored or failed), with where it was made.

    One query; the week (local Monday) and the study's year are computed by the database,
    the rest column by column in NumPy, so a page over many films stays a short wait.
    """
    rows = list(
        AIResult.for_images.filter(
            model_version=version, status__in=(AIStatus.DONE, AIStatus.FAILED)
        )
        .annotate(
            week=TruncWeek("image__study__case__received_at", output_field=DateField()),
            study_year=ExtractYear("image__study__study_date"),
        )
        .values_list(*FILM_FIELDS)
    )
    n = len(rows)
    columns = [np.array(c, object) for c in zip(*rows, strict=True)] if rows else None
    if columns is None:
        columns = [np.empty(0, object) for _ in FILM_FIELDS]
    (case_id, week, manufacturer, model, site, status, probability) = columns[:7]
    (densities, study_year, birth_year, decision) = columns[7:11]
    first_agrees, first_seen, second_agrees, second_seen = columns[11:]
    score = np.where(probability == None, np.nan, probability).astype(float)  # noqa: E711
    scored = (status == AIStatus.DONE) & ~np.isnan(score)
    return Films(
        case_id=case_id.astype(np.int64),
        week=week.astype("datetime64[D]"),
        groups={
            DriftGroupBy.MANUFACTURER: _labels(manufacturer),
            DriftGroupBy.SCANNER_MODEL: _labels(model),
            DriftGroupBy.SITE: _labels(site),
        },
        scored=scored,
        score=np.where(scored, score, np.nan),
        densities=densities.astype(np.int64),
        age_band=age_bands(study_year, birth_year),
        recalled=np.select(
            [decision == Decision.RECALL, decision == Decision.NO_RECALL], [1.0, 0.0], np.nan
        ),
        agrees=np.stack(
            [
                _agrees(first_agrees, first_seen, version.pk),
                _agrees(second_agrees, second_seen, version.pk),
            ],
            axis=1,
        ).reshape(n, 2),
    )


def age_bands(study_year: np.ndarray, birth_year: np.ndarray) -> np.ndarray:
    """Each woman's age band at her screen (None: a year unknown). Only her birth year is
    kept, so the age is the difference of the years (at most a year high)."""
    known = (study_year != None) & (birth_year != None)  # noqa: E711
    age = np.where(known, study_year, 0).astype(float) - np.where(known, birth_year, 0).astype(
        float
    )
    bands = np.select(
        [age < 50, age < 60, age < 70],
        [AgeBand.UNDER_50, AgeBand.AGE_50_59, AgeBand.AGE_60_69],
        AgeBand.AGE_70_UP,
    ).astype(object)
    bands[~known] = AgeBand.UNKNOWN
    return bands


def _labels(values: np.ndarray) -> np.ndarray:
    return np.where((values == None) | (values == ""), UNKNOWN, values).astype(object)  # noqa: E711


def _agrees(agrees: np.ndarray, seen: np.ndarray, version_id: int) -> np.ndarray:
    """Each read's agreement, counted for the version the reader saw and no other."""
    counted = (agrees != None) & (seen == version_id)  # noqa: E711
    return np.where(counted, agrees == True, np.nan).astype(float)  # noqa: E712


# ----------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class DriftFilter:
    """Who the local figures are about: every film, or one density, age band, manufacturer."""

    density: str = ""
    age_band: str = ""
    manufacturer: str = ""

    def __str__(self) -> str:
        """In a reader's words, "" for every film."""
        parts = [
            f"read as density {self.density.upper()}" if self.density else "",
            f"of women aged {AgeBand(self.age_band).label}" if self.age_band else "",
            f"with a film from a {self.manufacturer} unit" if self.manufacturer else "",
        ]
        return ", ".join(p for p in parts if p)

    def mask(self, films: Films) -> np.ndarray:
        keep = np.ones(len(films), bool)
        if self.density:
            keep &= (films.densities & density_bit(self.density)) != 0
        if self.age_band:
            keep &= films.age_band == self.age_band
        if self.manufacturer:
            keep &= films.groups[DriftGroupBy.MANUFACTURER] == self.manufacturer
        return keep


@dataclass(frozen=True)
class Reference:
    scores: np.ndarray
    source: str  # "evidence" or "local"
    description: str
    until: dt.date | None  # local reference: the first week tested (earlier weeks are it)


@dataclass(frozen=True)
class Week:
    week: dt.date
    films: int
    scored: int
    failed_share: float
    psi: float | None  # None: in the reference period, or no scored film
    ks_statistic: float | None
    ks_p: float | None
    screens: int
    recall_rate: float | None
    agreement: float | None
    in_reference: bool
    drifted: bool


@dataclass(frozen=True)
class Group:
    name: str
    films: int
    weeks: list[Week]

    @property
    def drifted_weeks(self) -> list[Week]:
        return [w for w in self.weeks if w.drifted]


@dataclass(frozen=True)
class DriftReport:
    version: ModelVersion | None
    group_by: str
    reference: Reference | None
    groups: list[Group] = field(default_factory=list)
    films: int = 0
    alerts: list[DriftAlert] = field(default_factory=list)


def reference_of(version: ModelVersion, films: Films) -> Reference:
    """The normal validation films' scores from the version's evidence, else its first
    weeks here."""
    recorded = version.evidence.get(REFERENCE_KEY) or {}
    listed = recorded.get("scores") if isinstance(recorded, dict) else None
    scores = np.array([s for s in listed or [] if isinstance(s, int | float)], float)
    if len(scores):
        return Reference(
            scores,
            "evidence",
            f"its evidence's scores of {len(scores)} films ({recorded.get('of') or 'validation films'})",
            None,
        )
    weeks = settings.DRIFT_REFERENCE_WEEKS
    if not len(films):
        return Reference(np.array([], float), "local", f"its first {weeks} weeks here", None)
    first: dt.date = films.week.min().item()
    until = first + dt.timedelta(weeks=weeks)
    early = films.scored & (films.week < np.datetime64(until))
    return Reference(
        films.score[early],
        "local",
        f"its first {weeks} weeks of scores here ({int(early.sum())} films, weeks of "
        f"{first:%-d %b %Y} to {until - dt.timedelta(days=7):%-d %b %Y}): its evidence "
        "records no reference scores",
        until,
    )


def week_figures(films: Films, reference: Reference, week: dt.date) -> Week:
    """One group's figures for one week."""
    scores = films.score[films.scored]
    in_reference = reference.until is not None and week < reference.until
    psi_value = ks_stat = p = None
    if len(scores) and len(reference.scores) and not in_reference:
        psi_value = psi(reference.scores, scores)
        ks_stat, p = ks_p(reference.scores, scores)
    _, first = np.unique(films.case_id, return_index=True)
    recalled = films.recalled[first]
    decided = recalled[~np.isnan(recalled)]
    reads = films.agrees[first].ravel()
    reads = reads[~np.isnan(reads)]
    drifted = (
        psi_value is not None
        and p is not None
        and len(scores) >= settings.DRIFT_MIN_FILMS
        and psi_value >= settings.DRIFT_PSI_ALERT
        and p < settings.DRIFT_KS_P
    )
    return Week(
        week=week,
        films=len(films),
        scored=int(len(scores)),
        failed_share=1.0 - len(scores) / len(films) if len(films) else 0.0,
        psi=psi_value,
        ks_statistic=ks_stat,
        ks_p=p,
        screens=int(len(first)),
        recall_rate=float(decided.mean()) if len(decided) else None,
        agreement=float(reads.mean()) if len(reads) else None,
        in_reference=in_reference,
        drifted=drifted,
    )


def groups_of(films: Films, reference: Reference, group_by: str) -> list[Group]:
    """Each group's weeks, largest group first: one sort, then a slice per group's week."""
    if not len(films):
        return []
    labels = films.groups[group_by]
    names, label_code = np.unique(labels.astype(str), return_inverse=True)
    weeks, week_code = np.unique(films.week, return_inverse=True)
    order = np.lexsort((week_code, label_code))
    key = label_code[order] * len(weeks) + week_code[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    found: dict[int, list[Week]] = {}
    for begin, stop in zip(starts, [*starts[1:], len(order)], strict=True):
        index = order[begin:stop]
        group, week = divmod(int(key[begin]), len(weeks))
        found.setdefault(group, []).append(
            week_figures(films.take(index), reference, weeks[week].item())
        )
    groups = [Group(str(names[g]), sum(w.films for w in ws), ws) for g, ws in found.items()]
    return sorted(groups, key=lambda g: (-g.films, g.name))


def drift_report(
    version: ModelVersion | None,
    group_by: str = DriftGroupBy.MANUFACTURER,
    flt: DriftFilter | None = None,
    raise_new: bool = False,
) -> DriftReport:
    """The drift page's figures for one version, grouped and filtered as asked; with
    ``raise_new``, first the alerts not yet written (``raise_alerts``), on the same load."""
    if version is None:
        return DriftReport(None, group_by, None)
    films = films_of(version)
    reference = reference_of(version, films)  # never filtered: the version's own
    if raise_new:
        _raise(version, films, reference)
    shown = films.take((flt or DriftFilter()).mask(films))
    return DriftReport(
        version,
        group_by,
        reference,
        groups_of(shown, reference, group_by),
        len(shown),
        alerts_of(version),
    )


def monitored_versions() -> QuerySet[ModelVersion]:
    """The active version and every other with film scores, newest first."""
    scored = AIResult.for_images.filter(model_version=OuterRef("pk"), status=AIStatus.DONE)
    return ModelVersion.objects.filter(Q(is_active=True) | Exists(scored)).order_by(
        "-is_active", "-created_at"
    )


def alerts_of(version: ModelVersion) -> list[DriftAlert]:
    return list(
        DriftAlert.objects.filter(model_version=version).order_by("-week", "group_by", "group")
    )


# ----------------------------------------------------------------------------- alerts


def raise_alerts(version: ModelVersion) -> list[DriftAlert]:
    """Write an alert, and its audit event, for each drifted group's week not yet alerted.

    Judged on every film (no filter), for each grouping. Idempotent: the alert's unique key
    (version, grouping, group, week) is claimed inside a savepoint, so a second run, or two
    at once (the page and the sweep), writes nothing twice. Returns the alerts new now.
    """
    films = films_of(version)
    return _raise(version, films, reference_of(version, films))


def _raise(version: ModelVersion, films: Films, reference: Reference) -> list[DriftAlert]:
    new = []
    for group_by in DriftGroupBy.values:
        for group in groups_of(films, reference, group_by):
            for week in group.drifted_weeks:
                alert = _claim(version, group_by, group.name, week, reference)
                if alert is not None:
                    new.append(alert)
    return new


def _claim(
    version: ModelVersion, group_by: str, group: str, week: Week, reference: Reference
) -> DriftAlert | None:
    key = {"model_version": version, "group_by": group_by, "group": group, "week": week.week}
    if DriftAlert.objects.filter(**key).exists():
        return None
    try:
        with transaction.atomic():
            alert = DriftAlert.objects.create(
                **key,
                films=week.scored,
                psi=week.psi or 0.0,
                ks_p=week.ks_p if week.ks_p is not None else 1.0,
                reference=reference.source,
            )
            events.drift_alert(alert)
    except IntegrityError:  # another run claimed it first
        return None
    return alert


def sweep() -> int:
    """Raise the alerts of every monitored version (the beat sweep); how many are new."""
    return sum(len(raise_alerts(version)) for version in monitored_versions())
