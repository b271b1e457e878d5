"""The auditor's figures against scikit-learn and against kappa worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    cohen_kappa_score,
    confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
)

from screening.audit import stats


def test_kappa_matches_a_hand_computed_table():
    # 20 cases: both recall 4, a recall only 2, b recall only 1, both no recall 13.
    a = [True] * 4 + [True] * 2 + [False] * 1 + [False] * 13
    b = [True] * 4 + [False] * 2 + [True] * 1 + [False] * 13
    result = stats.agreement(a, b)
    # po = 17/20 = 0.85; pa = 6/20, pb = 5/20; pe = 0.3*0.25 + 0.7*0.75 = 0.6
    # kappa = (0.85 - 0.6) / 0.4 = 0.625; se = sqrt(0.85*0.15 / (20*0.16)) = 0.199609...
    assert (result.n, result.agreed, result.percent) == (20, 17, pytest.approx(0.85))
    assert result.kappa == pytest.approx(0.625)
    se = math.sqrt(0.85 * 0.15 / (20 * 0.4**2))
    assert result.kappa_ci is not None
    assert result.kappa_ci.low == pytest.approx(0.625 - 1.959964 * se, abs=1e-6)
    assert result.kappa_ci.high == pytest.approx(min(1.0, 0.625 + 1.959964 * se), abs=1e-6)


def test_kappa_matches_scikit_learn_on_random_reads():
    rng = np.random.default_rng(7)
    for _ in range(20):
        a = rng.random(60) < 0.3
        b = np.where(rng.random(60) < 0.8, a, ~a)
        result = stats.agreement(a.tolist(), b.tolist())
        assert result.kappa == pytest.approx(cohen_kappa_score(a, b))
        assert result.kappa is not None and result.kappa_ci is not None
        assert result.kappa_ci.low <= result.kappa <= result.kappa_ci.high


def test_undecided_cases_are_left_out_of_agreement():
    result = stats.agreement([True, None, False, True], [True, True, None, False])
    assert (result.n, result.agreed, result.percent) == (2, 1, 0.5)


def test_all_agree_on_both_answers_is_kappa_one():
    reads = [True, False] * 5
    result = stats.agreement(reads, reads)
    assert result.kappa_ci is not None
    assert result.kappa == 1.0 and (result.kappa_ci.low, result.kappa_ci.high) == (1.0, 1.0)


def test_one_answer_throughout_leaves_kappa_undefined():
    result = stats.agreement([False] * 5, [False] * 5)
    assert result.percent == 1.0 and result.kappa is None and result.kappa_ci is None
    assert math.isnan(cohen_kappa_score([0] * 5, [0] * 5))


def test_a_single_read_gives_kappa_but_no_interval():
    result = stats.agreement([True], [False])
    assert (result.n, result.percent, result.kappa_ci) == (1, 0.0, None)
    assert result.kappa == pytest.approx(cohen_kappa_score([1], [0]))


def test_nothing_to_compare_is_none_not_zero():
    result = stats.agreement([None, None], [True, False])
    assert (result.n, result.percent, result.kappa) == (0, None, None)


def test_performance_matches_scikit_learn():
    rng = np.random.default_rng(3)
    cancer = rng.random(300) < 0.1
    recall = np.where(cancer, rng.random(300) < 0.8, rng.random(300) < 0.07)
    unknown = rng.random(300) < 0.2  # outcome not yet known: counts as a screen only
    outcomes = [None if u else bool(c) for u, c in zip(unknown, cancer, strict=True)]
    result = stats.performance(recall.tolist(), outcomes)

    known = ~unknown
    y, pred = cancer[known], recall[known]
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[False, True]).ravel()
    assert result.confusion == [[tn, fp], [fn, tp]]
    assert result.sensitivity.value == pytest.approx(recall_score(y, pred))
    assert result.specificity.value == pytest.approx(recall_score(~y, ~pred))
    assert result.ppv.value == pytest.approx(precision_score(y, pred))
    assert result.recall_rate.value == pytest.approx(recall.mean())
    assert result.cancer_detection_per_1000 == pytest.approx(1000 * tp / 300)


def test_no_positives_leaves_sensitivity_undefined():
    result = stats.performance([True, False, False], [False, False, False])
    assert result.sensitivity.value is None and result.sensitivity.ci is None
    assert result.specificity.value == pytest.approx(2 / 3)
    assert result.cancer_detection_per_1000 == 0.0


def test_no_known_outcome_leaves_the_detection_rate_undefined():
    result = stats.performance([True, False], [None, None])
    assert result.recall_rate.value == 0.5 and result.cancer_detection_per_1000 is None


def test_wilson_interval_is_sound_at_the_edges():
    assert stats.wilson(0, 0) is None
    zero, full = stats.wilson(0, 10), stats.wilson(10, 10)
    assert zero is not None and full is not None
    assert zero.low == 0.0 and 0.2 < zero.high < 0.35  # 0.2775 by the Wilson formula
    assert full.high == 1.0 and 0.65 < full.low < 0.8
    mid = stats.wilson(50, 100)
    assert mid is not None
    assert mid.low == pytest.approx(0.4038, abs=1e-4) and mid.high == pytest.approx(
        0.5962, abs=1e-4
    )


def test_roc_auc_matches_scikit_learn_with_a_bootstrap_interval():
    rng = np.random.default_rng(11)
    y = rng.random(200) < 0.3
    p = np.clip(rng.normal(0.4 + 0.25 * y, 0.2), 0, 1)
    result = stats.roc(p.tolist(), y.tolist(), n_boot=300)
    assert result.auc == pytest.approx(roc_auc_score(y, p))
    assert result.auc is not None and result.auc_ci is not None
    assert result.auc_ci.low < result.auc < result.auc_ci.high
    assert result.fpr[0] == 0.0 and result.tpr[-1] == 1.0


def test_weighted_auc_equals_scikit_learn_on_the_resample_it_stands_for():
    rng = np.random.default_rng(2)
    pos = np.round(rng.normal(0.6, 0.2, 40), 2)  # rounded: ties between classes happen
    neg = np.round(rng.normal(0.4, 0.2, 90), 2)
    for _ in range(10):
        pos_w, neg_w = rng.integers(0, 4, 40), rng.integers(0, 4, 90)
        scores = np.concatenate([np.repeat(pos, pos_w), np.repeat(neg, neg_w)])
        labels = np.concatenate([np.ones(pos_w.sum()), np.zeros(neg_w.sum())])
        assert stats.weighted_auc(pos, neg, pos_w, neg_w) == pytest.approx(
            roc_auc_score(labels, scores)
        )


def test_bootstrap_interval_is_seeded_and_narrows_with_more_cases():
    rng = np.random.default_rng(4)
    small = stats.bootstrap_auc_ci(rng.normal(1, 1, 20), rng.normal(0, 1, 60), 400)
    large = stats.bootstrap_auc_ci(rng.normal(1, 1, 2000), rng.normal(0, 1, 6000), 400)
    assert large.high - large.low < (small.high - small.low) / 4
    again = stats.bootstrap_auc_ci(np.arange(5.0), np.arange(5.0) - 1, 50, seed=3)
    assert again == stats.bootstrap_auc_ci(np.arange(5.0), np.arange(5.0) - 1, 50, seed=3)


def test_roc_without_both_classes_has_no_auc():
    result = stats.roc([0.2, 0.9], [False, False])
    assert result.auc is None and result.auc_ci is None and result.positives == 0


def test_decisions_at_a_threshold_recall_at_or_above_it():
    assert stats.decisions_at([0.2, 0.5, None, 0.7], 0.5).tolist() == [0, 1, -1, 1]
    assert stats.decisions_at(np.array([np.nan, 0.49]), 0.5).tolist() == [-1, 0]


def test_codes_keep_unknown_apart_from_no():
    assert stats.codes([True, False, None]).tolist() == [1, 0, -1]
    with pytest.raises(ValueError, match="same cases"):
        stats.agreement([True], [True, False])
