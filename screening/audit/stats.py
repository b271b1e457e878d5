"""Screening statistics: agreement, performance against outcomes, ROC, what-if thresholds.

Pure Python and NumPy (scikit-learn for ROC), no Django, so every figure on the auditor
dashboard can be checked against a reference implementation in a test. A decision is
True for recall, False for no recall, None when not made; an outcome is True for a
malignancy, False for a proven normal or benign outcome, None when not yet known.
Figures that cannot be computed (no positives, nobody to compare) are None, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..choices import ai_recalls

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
KAPPA_CI_MIN_N = 10


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class Agreement:
    """Two raters' agreement on the cases both decided."""

    n: int
    agreed: int
    percent: float | None
    kappa: float | None
    kappa_ci: Interval | None


def codes(values: Iterable[bool | None] | np.ndarray) -> np.ndarray:
    """Decisions or outcomes as int8 codes: 1 yes, 0 no, -1 not known.

    Every figure below is computed on such arrays, so 100 000 screens take milliseconds.
    """
    if isinstance(values, np.ndarray):
        return values if values.dtype == np.int8 else values.astype(np.int8)
    return np.fromiter((-1 if v is None else int(v) for v in values), dtype=np.int8)


Decisions = Sequence[bool | None] | np.ndarray


def agreement(a: Decisions, b: Decisions) -> Agreement:
    """Percent agreement and Cohen's kappa with a 95 % confidence interval.

    The interval uses Cohen's (1960) large-sample standard error,
    sqrt(po (1 - po) / (n (1 - pe)^2)), clipped to [-1, 1]; being a large-sample
    interval it is only given from ``KAPPA_CI_MIN_N`` pairs. Kappa is undefined (None)
    when chance agreement is 1, i.e. both raters gave one and the same answer throughout.
    """
    a, b = codes(a), codes(b)
    if len(a) != len(b):
        raise ValueError("Both raters must be given the same cases.")
    both = (a >= 0) & (b >= 0)
    return agreement_of(np.bincount(2 * a[both] + b[both], minlength=4))


def agreement_of(table: Sequence[int] | np.ndarray) -> Agreement:
    """``agreement`` from the 2 x 2 table of both raters' decisions, as counts of
    (no, no), (no, yes), (yes, no), (yes, yes): many pairs of raters from one ``bincount``."""
    no_no, no_yes, yes_no, yes_yes = (int(count) for count in table)
    n = no_no + no_yes + yes_no + yes_yes
    if n == 0:
        return Agreement(0, 0, None, None, None)
    agreed = no_no + yes_yes
    po = agreed / n
    a_yes, b_yes = (yes_no + yes_yes) / n, (no_yes + yes_yes) / n
    pe = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    if math.isclose(pe, 1.0):
        return Agreement(n, agreed, po, None, None)
    kappa = (po - pe) / (1 - pe)
    if n < KAPPA_CI_MIN_N:
        return Agreement(n, agreed, po, kappa, None)
    se = math.sqrt(po * (1 - po) / (n * (1 - pe) ** 2))
    ci = Interval(max(-1.0, kappa - Z95 * se), min(1.0, kappa + Z95 * se))
    return Agreement(n, agreed, po, kappa, ci)


def wilson(successes: int, n: int) -> Interval | None:
    """Wilson score 95 % interval of a proportion: sound at 0 %, 100 % and small n."""
    if n == 0:
        return None
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


@dataclass(frozen=True)
class Proportion:
    successes: int
    n: int

    @property
    def value(self) -> float | None:
        return self.successes / self.n if self.n else None

    @property
    def ci(self) -> Interval | None:
        return wilson(self.successes, self.n)


@dataclass(frozen=True)
class Performance:
    """One decision-maker's screening performance.

    Recall rate and cancer detection rate are per screen decided (outcome known or not);
    sensitivity, specificity and PPV only use screens whose outcome is known.
    """

    screens: int
    recalls: int
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def sensitivity(self) -> Proportion:
        return Proportion(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> Proportion:
        return Proportion(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> Proportion:
        return Proportion(self.tp, self.tp + self.fp)

    @property
    def recall_rate(self) -> Proportion:
        return Proportion(self.recalls, self.screens)

    @property
    def cancer_detection_per_1000(self) -> float | None:
        """Cancers found per 1000 screens; None while no screen's outcome is known at all."""
        if not self.screens or not (self.tp + self.fp + self.fn + self.tn):
            return None
        return 1000 * self.tp / self.screens

    @property
    def confusion(self) -> list[list[int]]:
        """[[tn, fp], [fn, tp]]: rows the outcome, columns the decision (scikit-learn's layout)."""
        return [[self.tn, self.fp], [self.fn, self.tp]]


def performance(decisions: Decisions, outcomes: Decisions) -> Performance:
    """Count recalls and the confusion matrix of decisions against known outcomes."""
    d, o = codes(decisions), codes(outcomes)
    if len(d) != len(o):
        raise ValueError("Decisions and outcomes must cover the same cases.")
    return performance_of(np.bincount(3 * (d + 1) + (o + 1), minlength=9).reshape(3, 3))


def performance_of(table: np.ndarray) -> Performance:
    """``performance`` from the 3 x 3 table of decisions (none, no recall, recall) down and
    outcomes (unknown, no cancer, cancer) across."""
    return Performance(
        screens=int(table[1:].sum()),
        recalls=int(table[2].sum()),
        tp=int(table[2, 2]),
        fp=int(table[2, 1]),
        fn=int(table[1, 2]),
        tn=int(table[1, 1]),
    )


# Above this many score draws (resamples x scores) the AUC's interval is DeLong's, not the
# bootstrap's: 1000 resamples of a million screens take tens of seconds.
BOOTSTRAP_MAX_DRAWS = 20_000_000
BOOTSTRAP, DELONG = "bootstrap", "DeLong"


@dataclass(frozen=True)
class Roc:
    """The ROC curve of a score against known outcomes, with the AUC's 95 % CI and how the
    interval was found (``BOOTSTRAP`` or ``DELONG``)."""

    n: int
    positives: int
    fpr: list[float]
    tpr: list[float]
    auc: float | None
    auc_ci: Interval | None
    ci_method: str = BOOTSTRAP


def roc(
    scores: Sequence[float] | np.ndarray,
    outcomes: Sequence[bool] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    bootstrap: bool | None = None,
) -> Roc:
    """ROC and AUC; None where a class is missing (no AUC exists without both).

    The interval is the stratified bootstrap's where that is quick (``BOOTSTRAP_MAX_DRAWS``)
    or asked for (``bootstrap=True``), else DeLong's: the same AUC, an interval from its
    exact variance estimate, in one sort."""
    y = np.asarray(outcomes, dtype=bool)
    p = np.asarray(scores, dtype=float)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        return Roc(len(y), positives, [], [], None, None)
    fpr, tpr = roc_curve(p[y], p[~y])
    ranked = _RankedScores(p[y], p[~y])
    auc = ranked.auc_ranked(np.ones(positives), np.ones(len(y) - positives))
    if bootstrap is None:
        bootstrap = n_boot * len(y) <= BOOTSTRAP_MAX_DRAWS
    if bootstrap:
        ci, method = bootstrap_auc_ci(p[y], p[~y], n_boot, seed), BOOTSTRAP
    else:
        ci, method = delong_auc_ci(p[y], p[~y], ranked), DELONG
    return Roc(len(y), positives, fpr.tolist(), tpr.tolist(), auc, ci, method)


def roc_curve(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score, highest first, keeping only
    the corners (scikit-learn's ``roc_curve`` with ``drop_intermediate``, point for point),
    from sorted values rather than a stable argsort: a tenth of the time on a million."""
    thresholds = np.unique(np.concatenate([positives, negatives]))[::-1]
    tps = len(positives) - np.searchsorted(np.sort(positives), thresholds, side="left")
    fps = len(negatives) - np.searchsorted(np.sort(negatives), thresholds, side="left")
    if len(fps) > 2:
        corners = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps = fps[corners], tps[corners]
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    return fps / fps[-1], tps / tps[-1]


def delong_auc_ci(
    positives: np.ndarray, negatives: np.ndarray, ranked: _RankedScores | None = None
) -> Interval:
    """95 % interval of the AUC from DeLong's (1988) variance: each case's share of the
    pairs it wins (ties half), the variance of those shares within each class.
    ``ranked``: the same scores already ranked."""
    ranked = ranked or _RankedScores(positives, negatives)
    n_pos, n_neg = len(positives), len(negatives)
    wins_pos = (ranked.left + 0.5 * (ranked.right - ranked.left)) / n_neg
    sorted_pos = np.sort(positives)
    # The negatives in rank order: the variance ignores order, and sorted lookups are faster.
    below = np.searchsorted(sorted_pos, ranked.ranked, side="left")
    upto = np.searchsorted(sorted_pos, ranked.ranked, side="right")
    wins_neg = ((n_pos - upto) + 0.5 * (upto - below)) / n_pos
    auc = float(wins_pos.mean())
    variance = 0.0
    if n_pos > 1:
        variance += float(wins_pos.var(ddof=1)) / n_pos
    if n_neg > 1:
        variance += float(wins_neg.var(ddof=1)) / n_neg
    half = Z95 * math.sqrt(variance)
    return Interval(max(0.0, auc - half), min(1.0, auc + half))


class _RankedScores:
    """The negatives sorted once, and where each positive falls among them."""

    def __init__(self, positives: np.ndarray, negatives: np.ndarray):
        self.negatives = negatives
        self.ranked = np.sort(negatives)
        self.left = np.searchsorted(self.ranked, positives, side="left")
        self.right = np.searchsorted(self.ranked, positives, side="right")

    def auc(self, pos_weights: np.ndarray, neg_weights: np.ndarray) -> float:
        # Only weights given by position need the permutation; a sort of values is faster.
        order = np.argsort(self.negatives, kind="stable")
        return self.auc_ranked(pos_weights, neg_weights[order])

    def auc_ranked(self, pos_weights: np.ndarray, ranked_neg_weights: np.ndarray) -> float:
        """As ``auc``, with the negatives' weights already in ranked order."""
        cum = np.concatenate([[0.0], np.cumsum(ranked_neg_weights)])
        below, upto = cum[self.left], cum[self.right]
        wins = np.dot(pos_weights, below + 0.5 * (upto - below))
        return float(wins / (pos_weights.sum() * ranked_neg_weights.sum()))


def weighted_auc(
    positives: np.ndarray, negatives: np.ndarray, pos_weights: np.ndarray, neg_weights: np.ndarray
) -> float:
    """AUC of scores where each score counts ``weight`` times (ties count half).

    A bootstrap resample is a set of such counts, so one sort of the negatives serves
    every resample: each positive's share is a cumulative sum looked up by rank.
    """
    return _RankedScores(positives, negatives).auc(pos_weights, neg_weights)


def bootstrap_auc_ci(
    positives: np.ndarray, negatives: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> Interval:
    """Percentile 95 % interval of the AUC over stratified bootstrap resamples.

    Cancers and non-cancers are resampled separately (as pROC does by default), so every
    resample has both classes; a resample costs O(n) after one sort. Drawing negatives
    by rank rather than by position is the same uniform draw, without a permutation.
    """
    rng = np.random.default_rng(seed)
    ranked = _RankedScores(positives, negatives)
    n_pos, n_neg = len(positives), len(negatives)
    aucs = [
        ranked.auc_ranked(
            np.bincount(rng.integers(0, n_pos, n_pos), minlength=n_pos),
            np.bincount(rng.integers(0, n_neg, n_neg), minlength=n_neg),
        )
        for _ in range(n_boot)
    ]
    low, high = np.percentile(aucs, [2.5, 97.5])
    return Interval(float(low), float(high))


@dataclass(frozen=True)
class ClusteredAuc:
    """An AUC on screens that come in clusters (a woman's screens), with a 95 % CI that
    resamples or weighs whole clusters, and how it was found (``BOOTSTRAP`` or ``DELONG``)."""

    n: int
    positives: int
    clusters: int
    auc: float | None
    ci: Interval | None
    ci_method: str = BOOTSTRAP


def clustered_auc(
    scores: Sequence[float] | np.ndarray,
    outcomes: Sequence[bool] | np.ndarray,
    clusters: Sequence[int] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    bootstrap: bool | None = None,
) -> ClusteredAuc:
    """AUC with an interval by woman: a woman screened twice is one draw, not two, so her
    screens are resampled (or their variance summed) together. The bootstrap over clusters
    where quick (``BOOTSTRAP_MAX_DRAWS``) or asked for, else Obuchowski's clustered form of
    DeLong's variance (``obuchowski_auc_ci``). None where a class is missing."""
    y = np.asarray(outcomes, dtype=bool)
    p = np.asarray(scores, dtype=float)
    group, count = cluster_indices(clusters)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        return ClusteredAuc(len(y), positives, count, None, None)
    pos, neg = p[y], p[~y]
    v10, v01 = placements(pos, neg)
    auc = float(v10.mean())
    if bootstrap is None:
        bootstrap = n_boot * len(y) <= BOOTSTRAP_MAX_DRAWS
    ci: Interval | None = None
    method = BOOTSTRAP
    if count < 2:
        pass  # one woman: no spread between women to measure
    elif bootstrap:
        ci = cluster_bootstrap_auc_ci(pos, neg, group[y], group[~y], count, n_boot, seed)
    else:
        ci = obuchowski_auc_ci(pos, neg, group[y], group[~y], count, (v10, v01))
        method = DELONG
    return ClusteredAuc(len(y), positives, count, auc, ci, method)


def placements(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values: each positive's share of the negatives it outscores, and
    each negative's share of the positives that outscore it (ties half). Both come from
    where each negative falls among the distinct positive scores, so the many negatives of
    a screening population are never sorted."""
    values, per_value = np.unique(positives, return_counts=True)
    k = len(values)
    at = np.searchsorted(values, negatives, side="left")
    tied = np.zeros(len(negatives), bool)
    inside = at < k
    tied[inside] = values[at[inside]] == negatives[inside]
    # Positives strictly below each negative, and those tied with it.
    pos_below = np.concatenate([[0], np.cumsum(per_value)])[at]
    pos_tied = np.where(tied, per_value[np.minimum(at, k - 1)], 0)
    v01 = (len(positives) - pos_below - pos_tied + 0.5 * pos_tied) / len(positives)
    # Negatives strictly below each distinct positive score, and those tied with it.
    strictly = np.bincount(at[~tied], minlength=k + 1)[:k]
    equal = np.bincount(at[tied], minlength=k)
    neg_below = np.cumsum(strictly) + np.concatenate([[0], np.cumsum(equal)[:-1]])
    share = (neg_below + 0.5 * equal) / len(negatives)
    v10 = share[np.searchsorted(values, positives)]
    return v10, v01


def cluster_indices(clusters: Sequence[int] | np.ndarray) -> tuple[np.ndarray, int]:
    """Each item's cluster numbered 0..count-1, and the count. Database ids (dense, not
    far above the count) are renumbered through a lookup table rather than a sort: a
    million screens in milliseconds."""
    ids = np.asarray(clusters)
    if not len(ids):
        return np.zeros(0, np.int64), 0
    if ids.dtype.kind in "iu" and ids.min() >= 0 and ids.max() < 4 * len(ids) + (1 << 20):
        present = np.zeros(int(ids.max()) + 1, bool)
        present[ids] = True
        number = np.cumsum(present) - 1
        return number[ids], int(present.sum())
    unique, inverse = np.unique(ids, return_inverse=True)
    return inverse.ravel(), len(unique)


def obuchowski_auc_ci(
    positives: np.ndarray,
    negatives: np.ndarray,
    positive_cluster: np.ndarray,
    negative_cluster: np.ndarray,
    clusters: int,
    placed: tuple[np.ndarray, np.ndarray] | None = None,
) -> Interval:
    """95 % interval of the AUC from Obuchowski's (1997) variance for clustered data:
    DeLong's placement values (each screen's share of the pairs it wins) summed within each
    cluster, their spread across the clusters (``clusters`` of them, numbered 0..clusters-1).
    With one screen per woman it is DeLong's interval up to a factor n/(n-1)."""
    v10, v01 = placed or placements(positives, negatives)
    m, n = len(positives), len(negatives)
    auc = float(v10.mean())
    s10 = np.bincount(positive_cluster, v10, minlength=clusters) - auc * np.bincount(
        positive_cluster, minlength=clusters
    )
    s01 = np.bincount(negative_cluster, v01, minlength=clusters) - auc * np.bincount(
        negative_cluster, minlength=clusters
    )
    scale = clusters / (clusters - 1)
    variance = scale * (
        float(np.dot(s10, s10)) / m**2
        + float(np.dot(s01, s01)) / n**2
        + 2 * float(np.dot(s10, s01)) / (m * n)
    )
    half = Z95 * math.sqrt(max(variance, 0.0))
    return Interval(max(0.0, auc - half), min(1.0, auc + half))


def cluster_bootstrap_auc_ci(
    positives: np.ndarray,
    negatives: np.ndarray,
    positive_cluster: np.ndarray,
    negative_cluster: np.ndarray,
    clusters: int,
    n_boot: int = 1000,
    seed: int = 0,
) -> Interval | None:
    """Percentile 95 % interval of the AUC over bootstrap resamples of whole clusters: each
    resample draws women with replacement and weighs each screen by how often its woman was
    drawn (one sort serves every resample). Resamples without both classes are skipped; None
    when every one lacked a class (a handful of women)."""
    rng = np.random.default_rng(seed)
    ranked = _RankedScores(positives, negatives)
    negative_cluster = negative_cluster[np.argsort(negatives, kind="stable")]
    aucs = []
    for _ in range(n_boot):
        drawn = np.bincount(rng.integers(0, clusters, clusters), minlength=clusters)
        pos_weights, neg_weights = drawn[positive_cluster], drawn[negative_cluster]
        if pos_weights.any() and neg_weights.any():
            aucs.append(ranked.auc_ranked(pos_weights, neg_weights))
    if not aucs:
        return None
    low, high = np.percentile(aucs, [2.5, 97.5])
    return Interval(float(low), float(high))


def mcnemar_exact(first_only: int, second_only: int) -> float:
    """Two-sided exact McNemar p of a paired comparison: the screens only the first got
    right against those only the second did, as a binomial test at one half (the same
    figure as ``scipy.stats.binomtest(first_only, n, 0.5)``); 1 when none differ. Summed in
    logarithms, so tens of thousands of discordant screens take a millisecond."""
    n = int(first_only) + int(second_only)
    if n == 0:
        return 1.0
    k = min(int(first_only), int(second_only))
    j = np.arange(1, k + 1)
    log_terms = np.concatenate([[0.0], np.cumsum(np.log((n - j + 1) / j))]) - n * math.log(2)
    top = float(log_terms.max())
    tail = math.exp(top) * float(np.exp(log_terms - top).sum())
    return min(1.0, 2 * tail)


def decisions_at(scores: Sequence[float | None] | np.ndarray, threshold: float) -> np.ndarray:
    """What the AI would have said at ``threshold`` (recall at or above it, as in the app),
    as codes; a missing score (None or NaN) is no decision."""
    if isinstance(scores, np.ndarray) and scores.dtype.kind == "f":
        values = scores
    else:
        values = np.array([np.nan if s is None else s for s in scores], dtype=float)
    decided = ~np.isnan(values)
    result = np.full(len(values), -1, dtype=np.int8)
    result[decided] = ai_recalls(values[decided], threshold)
    return result


def median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None
