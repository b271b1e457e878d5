"""The policy simulator: the recorded cohort replayed under each reading policy and threshold.

Columns in, figures out (as ``stats`` and ``report_data``): no database here, so a test can
check every figure against a hand count. The cohort is the closed screens a version scored
whose blind double read is complete (first and second read, and the arbitration where they
disagreed); every policy is then replayed from those reads alone:

- standard double reading: the recorded final decision, two reads plus any arbitration;
- routing by AI (MASAI): scored at or above the cut, the recorded double reading; below
  it, single reading, replayed as the first reader's read;
- normal triage (PRAIM) with single reading of the exams tagged normal: below the normal
  cut, the first reader's read alone; the rest double read as recorded;
- safety net: every no-recall read on an exam at or above the cut is a prompt; the
  figures are those had every prompt been turned into a recall (the upper bound: had every
  reader confirmed, the figures are standard double reading's);
- AI as second reader: the AI recalls at or above the cut; where it agrees with the first
  reader that read stands alone, where it disagrees the arbitration is replayed as the
  recorded final decision of the human double read.

A reader who would have read differently with the AI shown, or knowing a second reader was
no longer behind them, cannot be replayed: the figures say what these reads and scores
give, not what the readers would have done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..choices import ReadingPolicy
from .stats import Z95, Interval, Performance, Proportion, wilson

# The thresholds each policy is swept over for the plot and the CSV.
SWEEP = tuple(round(0.01 * i, 2) for i in range(101))
# Rows of the per-case quantity table that every figure is summed from.
SCREENS, RECALLS, TP, FP, FN, TN, READS, READS_SQUARED, SINGLE_CANCERS, PROMPTS = range(10)
QUANTITIES = 10
# The policies whose cut is the normal band's upper edge (the others': the high band's).
NORMAL_CUT = (ReadingPolicy.NORMAL_TRIAGE,)


@dataclass(frozen=True)
class Cohort:
    """The replayable screens as columns (codes: 1 recall or cancer, 0 not, -1 unknown),
    and how many screens of the selection were left out, and why."""

    score: np.ndarray
    first: np.ndarray
    second: np.ndarray
    final: np.ndarray  # the recorded double reading's closing decision
    arbitrated: np.ndarray  # first and second reads disagreed
    cancer: np.ndarray
    still_open: int = 0
    unscored: int = 0  # closed, but the version has no score for it
    not_double_read: int = 0  # closed and scored, but without a complete double read

    def __len__(self) -> int:
        return len(self.score)

    @property
    def cancers(self) -> int:
        return int((self.cancer == 1).sum())

    @property
    def with_outcome(self) -> int:
        return int((self.cancer >= 0).sum())


def cohort(closed: np.ndarray, score: np.ndarray, reads: np.ndarray, cancer: np.ndarray) -> Cohort:
    """The replayable screens among columns as ``report_data.CaseData`` holds them: ``reads``
    is (3, cases) of first, second and arbitration recall codes."""
    first, second, arbitration = (np.asarray(r, np.int8) for r in reads)
    scored = closed & ~np.isnan(score)
    double = (first >= 0) & (second >= 0) & ((first == second) | (arbitration >= 0))
    keep = scored & double
    return Cohort(
        score=np.asarray(score, float)[keep],
        first=first[keep],
        second=second[keep],
        final=np.where(first == second, first, arbitration)[keep].astype(np.int8),
        arbitrated=(first != second)[keep],
        cancer=np.asarray(cancer, np.int8)[keep],
        still_open=int((~closed).sum()),
        unscored=int((closed & np.isnan(score)).sum()),
        not_double_read=int((scored & ~double).sum()),
    )


@dataclass(frozen=True)
class Replay:
    """One policy at one cut (None: the standard pathway, which uses no cut)."""

    policy: str
    cut: float | None
    performance: Performance
    reads: int
    reads_squared: int
    single_read_cancers: int
    prompts: int

    @property
    def label(self) -> str:
        return str(ReadingPolicy(self.policy).label)

    @property
    def rule(self) -> str:
        """What the cut does under this policy, in words."""
        if self.cut is None:
            return "every screen double read"
        return {
            ReadingPolicy.ROUTING: f"double read at {self.cut:.2f} and above, else single",
            ReadingPolicy.NORMAL_TRIAGE: f"normal below {self.cut:.2f}: single read",
            ReadingPolicy.SAFETY_NET: f"prompt on no recall at {self.cut:.2f} and above",
            ReadingPolicy.AI_SECOND_READER: f"AI recalls at {self.cut:.2f} and above",
        }[ReadingPolicy(self.policy)]

    @property
    def screens(self) -> int:
        return self.performance.screens

    @property
    def reads_per_1000(self) -> float | None:
        return 1000 * self.reads / self.screens if self.screens else None

    @property
    def reads_per_1000_ci(self) -> Interval | None:
        """Normal 95 % interval of the mean reads per screen (sample variance), per 1,000."""
        n = self.screens
        if n < 2:
            return None
        mean = self.reads / n
        variance = max(0.0, (self.reads_squared - n * mean * mean) / (n - 1))
        half = Z95 * math.sqrt(variance / n)
        return Interval(1000 * max(0.0, mean - half), 1000 * (mean + half))

    @property
    def recall_rate(self) -> Proportion:
        return self.performance.recall_rate

    @property
    def cancers_per_1000(self) -> float | None:
        return self.performance.cancer_detection_per_1000

    @property
    def cancers_per_1000_ci(self) -> Interval | None:
        """Wilson 95 % interval of cancers found per screen, per 1,000."""
        found = wilson(self.performance.tp, self.screens)
        if self.cancers_per_1000 is None or found is None:
            return None
        return Interval(1000 * found.low, 1000 * found.high)

    @property
    def sensitivity(self) -> Proportion:
        return self.performance.sensitivity

    @property
    def specificity(self) -> Proportion:
        return self.performance.specificity

    @property
    def sent_to_single_reading(self) -> Proportion:
        """Of the cancers, those only one human would have read."""
        return Proportion(self.single_read_cancers, self.performance.tp + self.performance.fn)

    @property
    def prompts_per_1000(self) -> float | None:
        return 1000 * self.prompts / self.screens if self.screens else None


def _decide(
    c: Cohort, policy: str, positive: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each screen's decision, reads, whether one human alone read it, and safety-net
    prompts, under ``policy`` where ``positive`` marks the screens at or above its cut."""
    double_reads = 2 + c.arbitrated.astype(np.int64)
    first, final = c.first == 1, c.final == 1
    nobody = np.zeros(len(c), bool)
    no_prompts = np.zeros(len(c), np.int64)
    if policy == ReadingPolicy.STANDARD:
        return final, double_reads, nobody, no_prompts
    if policy in (ReadingPolicy.ROUTING, ReadingPolicy.NORMAL_TRIAGE):
        return (
            np.where(positive, final, first),
            np.where(positive, double_reads, 1),
            ~positive,
            no_prompts,
        )
    if policy == ReadingPolicy.SAFETY_NET:
        no_recalls = (
            (c.first == 0).astype(np.int64) + (c.second == 0) + (c.arbitrated & (c.final == 0))
        )
        return final | positive, double_reads, nobody, np.where(positive, no_recalls, 0)
    if policy == ReadingPolicy.AI_SECOND_READER:
        agree = first == positive
        return np.where(agree, first, final), 1 + (~agree).astype(np.int64), agree, no_prompts
    raise ValueError(f"No such reading policy: {policy!r}")


def _quantities(c: Cohort, policy: str, positive: np.ndarray) -> np.ndarray:
    """The (``QUANTITIES``, screens) table each figure is a row sum of, as floats (what
    ``bincount`` sums; exact for whole numbers below 2**53)."""
    decision, reads, single, prompts = _decide(c, policy, positive)
    cancer, normal = c.cancer == 1, c.cancer == 0
    table = np.empty((QUANTITIES, len(c)))
    table[SCREENS] = 1
    table[RECALLS] = decision
    table[TP] = decision & cancer
    table[FP] = decision & normal
    table[FN] = ~decision & cancer
    table[TN] = ~decision & normal
    table[READS] = reads
    table[READS_SQUARED] = reads * reads
    table[SINGLE_CANCERS] = single & cancer
    table[PROMPTS] = prompts
    return table


def sweep(c: Cohort, policy: str, cuts: Sequence[float]) -> list[Replay]:
    """``policy`` at each cut, in one pass: below a cut a screen counts as the policy treats
    a negative, at or above it as a positive. Screens are summed per gap between the sorted
    cuts (``bincount``), so each cut's figures are a prefix sum of the negatives' gaps and a
    suffix sum of the positives': no sort of the screens, whatever their number."""
    wanted = np.asarray(cuts, float)
    order = np.argsort(wanted, kind="stable")
    # How many of the sorted cuts each screen's score reaches (is at or above).
    reached = np.searchsorted(wanted[order], c.score, side="right")
    gaps = len(wanted) + 1
    sums = []
    for positive in (False, True):
        table = _quantities(c, policy, np.full(len(c), positive))
        per_gap = np.stack([np.bincount(reached, row, gaps) for row in table])
        sums.append(np.rint(per_gap).astype(np.int64).cumsum(1))
    below, above = sums
    # The j-th sorted cut: screens reaching at most j cuts are below it, the rest above.
    at = np.arange(len(wanted))
    summed = np.empty((QUANTITIES, len(wanted)), np.int64)
    summed[:, order] = below[:, at] + above[:, -1:] - above[:, at]
    return [_replay(policy, float(cut), summed[:, i]) for i, cut in enumerate(wanted)]


def _replay(policy: str, cut: float | None, q: np.ndarray) -> Replay:
    performance = Performance(
        screens=int(q[SCREENS]),
        recalls=int(q[RECALLS]),
        tp=int(q[TP]),
        fp=int(q[FP]),
        fn=int(q[FN]),
        tn=int(q[TN]),
    )
    return Replay(
        policy=policy,
        cut=None if policy == ReadingPolicy.STANDARD else cut,
        performance=performance,
        reads=int(q[READS]),
        reads_squared=int(q[READS_SQUARED]),
        single_read_cancers=int(q[SINGLE_CANCERS]),
        prompts=int(q[PROMPTS]),
    )


def replay(c: Cohort, policy: str, cut: float) -> Replay:
    """``policy`` at one cut."""
    return sweep(c, policy, [cut])[0]


@dataclass(frozen=True)
class Simulation:
    """Every policy at the chosen cuts, and each swept over ``SWEEP``."""

    cohort: Cohort
    high: float
    normal: float
    chosen: list[Replay]
    steps: Sequence[float]
    curves: dict[str, list[Replay]]  # each policy at each of ``steps``


def simulate(c: Cohort, high: float, normal: float, steps: Sequence[float] = SWEEP) -> Simulation:
    """Each policy at its cut (``normal`` for normal triage, ``high`` for the others) and
    over ``steps``."""
    chosen, curves = [], {}
    for policy in ReadingPolicy:
        *curve, at_cut = sweep(c, policy, [*steps, normal if policy in NORMAL_CUT else high])
        chosen.append(at_cut)
        curves[policy.value] = curve
    return Simulation(c, high, normal, chosen, steps, curves)


def default_cuts(threshold: float, bands: dict | None) -> tuple[float, float]:
    """The high cut and the normal cut a version suggests: its validated bands' edges
    (high from, intermediate from), else its threshold and half of it, as its bands are
    cut without evidence (``models.score_bands``)."""
    if bands and "high_from" in bands and "intermediate_from" in bands:
        return float(bands["high_from"]), float(bands["intermediate_from"])
    return float(threshold), float(threshold) / 2
