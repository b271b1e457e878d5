"""The policy simulator's replay against a hand count on a ten-screen cohort.

Every expected figure below was counted by hand from the table in ``COHORT`` (the working is
in the comments), never by calling the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from screening.audit import simulation
from screening.choices import ReadingPolicy

NAN = float("nan")
# screen: score, first, second, arbitration (-1: none), cancer (1, 0, -1 unknown), closed
COHORT = [
    (0.90, 1, 1, -1, 1, True),  # 1  agreed recall, cancer
    (0.80, 0, 1, 1, 1, True),  # 2  arbitrated to recall, cancer
    (0.70, 0, 0, -1, 1, True),  # 3  both missed a cancer the AI scored high
    (0.20, 1, 0, 0, 1, True),  # 4  arbitrated to no recall, cancer
    (0.10, 0, 1, 1, 1, True),  # 5  the second reader found a cancer scored low
    (0.60, 1, 0, 0, 0, True),  # 6  arbitrated to no recall, normal
    (0.55, 0, 0, -1, 0, True),  # 7  agreed no recall, normal, scored at 0.55 exactly
    (0.30, 1, 1, -1, 0, True),  # 8  agreed recall, normal (false positive)
    (0.15, 0, 0, -1, 0, True),  # 9  agreed no recall, normal
    (0.05, 0, 0, -1, -1, True),  # 10 agreed no recall, outcome unknown
    # Not replayable: still open; closed but unscored; closed with a first read only.
    (0.95, 1, -1, -1, -1, False),
    (NAN, 0, 0, -1, 0, True),
    (0.40, 0, -1, -1, 0, True),
]


@pytest.fixture
def cohort() -> simulation.Cohort:
    score, first, second, arbitration, cancer, closed = zip(*COHORT, strict=True)
    return simulation.cohort(
        np.array(closed),
        np.array(score, float),
        np.array([first, second, arbitration], np.int8),
        np.array(cancer, np.int8),
    )


def figures(r: simulation.Replay) -> dict:
    p = r.performance
    return {
        "screens": p.screens,
        "reads": r.reads,
        "recalls": p.recalls,
        "tp": p.tp,
        "fn": p.fn,
        "fp": p.fp,
        "tn": p.tn,
        "single": r.single_read_cancers,
        "prompts": r.prompts,
    }


def test_only_closed_scored_double_read_screens_are_replayed(cohort):
    assert len(cohort) == 10
    assert (cohort.still_open, cohort.unscored, cohort.not_double_read) == (1, 1, 1)
    assert (cohort.cancers, cohort.with_outcome) == (5, 9)
    # final: agreed reads stand, else the arbitration
    assert cohort.final.tolist() == [1, 1, 0, 0, 1, 0, 0, 1, 0, 0]


def test_standard_double_reading_is_the_recorded_pathway(cohort):
    r = simulation.replay(cohort, ReadingPolicy.STANDARD, 0.5)
    # reads: screens 2, 4, 5, 6 arbitrated (3 reads), six others 2 reads: 12 + 12
    # recalls 1, 2, 5, 8; cancers 1-5 found 1, 2, 5; normals 6-9, recalled 8
    expected = dict(screens=10, reads=24, recalls=4, tp=3, fn=2, fp=1, tn=3, single=0, prompts=0)
    assert figures(r) == expected
    assert r.cut is None
    assert r.reads_per_1000 == 2400
    # mean 2.4, sample variance (60 - 10 * 2.4²) / 9 = 0.2667, se 0.1633, ± 1.96 se
    assert r.reads_per_1000_ci is not None
    assert (r.reads_per_1000_ci.low, r.reads_per_1000_ci.high) == pytest.approx(
        (2079.94, 2720.06), abs=0.01
    )
    assert r.recall_rate.value == 0.4
    assert r.recall_rate.ci is not None
    assert (r.recall_rate.ci.low, r.recall_rate.ci.high) == pytest.approx(
        (0.1682, 0.6873), abs=1e-4
    )  # Wilson, 4 of 10
    assert r.cancers_per_1000 == 300
    assert r.cancers_per_1000_ci is not None
    assert (r.cancers_per_1000_ci.low, r.cancers_per_1000_ci.high) == pytest.approx(
        (107.8, 603.2), abs=0.1
    )  # Wilson, 3 of 10, per 1,000
    assert (r.sensitivity.value, r.specificity.value) == (0.6, 0.75)
    assert r.sensitivity.ci is not None and r.specificity.ci is not None
    assert (r.sensitivity.ci.low, r.sensitivity.ci.high) == pytest.approx(
        (0.2307, 0.8824), abs=1e-4
    )
    assert (r.specificity.ci.low, r.specificity.ci.high) == pytest.approx(
        (0.3006, 0.9544), abs=1e-4
    )


def test_routing_double_reads_the_high_scores_and_single_reads_the_rest(cohort):
    r = simulation.replay(cohort, ReadingPolicy.ROUTING, 0.5)
    # at or above 0.5: 1, 2, 3, 6, 7 keep their double reading (2+3+2+3+2 = 12 reads,
    # decisions 1, 1, 0, 0, 0); below: 4, 5, 8, 9, 10 the first read alone (5 reads,
    # decisions 1, 0, 1, 0, 0). Recalls 1, 2, 4, 8; cancers found 1, 2, 4, missed 3, 5;
    # normals recalled 8. Cancers 4 and 5 only one human read.
    expected = dict(screens=10, reads=17, recalls=4, tp=3, fn=2, fp=1, tn=3, single=2, prompts=0)
    assert figures(r) == expected
    assert r.reads_per_1000 == 1700
    # squares: 4+9+4+9+4 + 5 = 35; variance (35 - 10 * 1.7²) / 9 = 0.6778
    assert r.reads_per_1000_ci is not None
    assert (r.reads_per_1000_ci.low, r.reads_per_1000_ci.high) == pytest.approx(
        (1189.74, 2210.26), abs=0.01
    )
    assert r.sent_to_single_reading.value == 0.4  # 2 of 5 cancers
    assert r.sent_to_single_reading.ci is not None
    assert (r.sent_to_single_reading.ci.low, r.sent_to_single_reading.ci.high) == pytest.approx(
        (0.1176, 0.7693), abs=1e-4
    )


def test_a_score_equal_to_the_cut_counts_as_at_or_above_it(cohort):
    # screen 7 scores 0.55: still double read at 0.55, single read (one read fewer) at 0.56
    assert simulation.replay(cohort, ReadingPolicy.ROUTING, 0.55).reads == 17
    assert simulation.replay(cohort, ReadingPolicy.ROUTING, 0.56).reads == 16


def test_normal_triage_single_reads_the_screens_below_the_normal_cut(cohort):
    r = simulation.replay(cohort, ReadingPolicy.NORMAL_TRIAGE, 0.25)
    # normal (below 0.25): 4, 5, 9, 10, first read alone (4 reads; decisions 1, 0, 0, 0);
    # the rest double read: 2+3+2+3+2+2 = 14 reads. Recalls 1, 2, 4, 8.
    expected = dict(screens=10, reads=18, recalls=4, tp=3, fn=2, fp=1, tn=3, single=2, prompts=0)
    assert figures(r) == expected
    # squares 4+9+4+9+4+4 + 4 = 38; variance (38 - 10 * 1.8²) / 9 = 0.6222
    assert r.reads_per_1000_ci is not None
    assert (r.reads_per_1000_ci.low, r.reads_per_1000_ci.high) == pytest.approx(
        (1311.10, 2288.90), abs=0.01
    )


def test_the_safety_net_turns_every_prompt_into_a_recall(cohort):
    r = simulation.replay(cohort, ReadingPolicy.SAFETY_NET, 0.5)
    # at or above 0.5 every screen is recalled (1, 2, 3, 6, 7), below the final decision
    # stands (5 and 8 recalled): recalls 7; cancers found 1, 2, 3, 5, missed 4; normals
    # recalled 6, 7, 8, kept 9. Prompts: no-recall reads at or above 0.5: screen 2 its
    # first read, 3 both, 6 its second and the arbitration, 7 both: 1 + 2 + 2 + 2.
    expected = dict(screens=10, reads=24, recalls=7, tp=4, fn=1, fp=3, tn=1, single=0, prompts=7)
    assert figures(r) == expected
    assert (r.sensitivity.value, r.specificity.value) == (0.8, 0.25)
    assert r.prompts_per_1000 == 700


def test_the_ai_as_second_reader_sends_disagreements_to_arbitration(cohort):
    r = simulation.replay(cohort, ReadingPolicy.AI_SECOND_READER, 0.5)
    # AI recalls 1, 2, 3, 6, 7. Agrees with the first reader on 1, 5, 6, 9, 10 (one read,
    # decisions 1, 0, 1, 0, 0); disagrees on 2, 3, 4, 7, 8 (two reads, the recorded final:
    # 1, 0, 0, 0, 1). Recalls 1, 2, 6, 8; cancers found 1, 2, missed 3, 4, 5; normals
    # recalled 6, 8, kept 7, 9. Cancers one human read: 1 and 5.
    expected = dict(screens=10, reads=15, recalls=4, tp=2, fn=3, fp=2, tn=2, single=2, prompts=0)
    assert figures(r) == expected
    # squares 5 * 1 + 5 * 4 = 25; variance (25 - 10 * 1.5²) / 9 = 0.2778
    assert r.reads_per_1000_ci is not None
    assert (r.reads_per_1000_ci.low, r.reads_per_1000_ci.high) == pytest.approx(
        (1173.34, 1826.66), abs=0.01
    )


def test_routing_at_the_extremes_is_double_reading_or_the_first_reader_alone(cohort):
    everyone, nobody = simulation.sweep(cohort, ReadingPolicy.ROUTING, [0.0, 1.01])
    assert figures(everyone) | {"single": 0} == figures(
        simulation.replay(cohort, ReadingPolicy.STANDARD, 0.5)
    )
    # the first reads alone: recalls 1, 4, 6, 8; cancers found 1, 4; normals recalled 6, 8
    expected = dict(screens=10, reads=10, recalls=4, tp=2, fn=3, fp=2, tn=2, single=5, prompts=0)
    assert figures(nobody) == expected
    assert nobody.reads_per_1000_ci is not None
    assert nobody.reads_per_1000_ci.low == nobody.reads_per_1000_ci.high == 1000


def test_the_sweep_gives_the_chosen_cut_the_figures_of_a_replay_there(cohort):
    result = simulation.simulate(cohort, high=0.5, normal=0.25, steps=[0.25, 0.5])
    chosen = {r.policy: r for r in result.chosen}
    assert chosen[ReadingPolicy.NORMAL_TRIAGE].cut == 0.25
    assert chosen[ReadingPolicy.ROUTING].cut == 0.5
    for policy, curve in result.curves.items():
        at = curve[0] if policy == ReadingPolicy.NORMAL_TRIAGE else curve[1]
        assert figures(at) == figures(chosen[policy]), policy


def test_figures_without_outcomes_are_none_not_zero() -> None:
    empty = simulation.cohort(
        np.array([True, True]),
        np.array([0.2, 0.8]),
        np.array([[0, 1], [0, 1], [-1, -1]], np.int8),
        np.array([-1, -1], np.int8),
    )
    r = simulation.replay(empty, ReadingPolicy.ROUTING, 0.5)
    assert r.recall_rate.value == 0.5
    assert r.cancers_per_1000 is None and r.cancers_per_1000_ci is None
    assert r.sensitivity.value is None and r.sent_to_single_reading.value is None


def test_the_default_cuts_are_the_validated_band_edges_else_the_threshold() -> None:
    bands = {"high_from": 0.62, "intermediate_from": 0.31}
    assert simulation.default_cuts(0.5, bands) == (0.62, 0.31)
    assert simulation.default_cuts(0.5, None) == (0.5, 0.25)
