import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ml.metrics import (
    binary_metrics,
    bootstrap_auc_ci,
    confusion_text_colours,
    threshold_for_sensitivity,
    write_plots,
)


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.2, 200), 0, 1)
    return y, p


def test_metrics_agree_with_scikit_learn(scores):
    y, p = scores
    m = binary_metrics(y, p, 0.5)
    pred = p >= 0.5
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert tn + fp + fn + tp == 200


def test_threshold_picker_reaches_the_target_sensitivity_on_known_scores():
    y = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
    p = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.25])
    assert threshold_for_sensitivity(y, p, 0.9) == pytest.approx(0.3)  # 9 of 10 caught
    assert threshold_for_sensitivity(y, p, 1.0) == pytest.approx(0.2)
    assert threshold_for_sensitivity(y, p, 0.5) == pytest.approx(0.7)


def test_chosen_threshold_gives_at_least_the_target_sensitivity(scores):
    y, p = scores
    t = threshold_for_sensitivity(y, p, 0.9)
    assert binary_metrics(y, p, t)["sensitivity"] >= 0.9


def test_bootstrap_interval_contains_the_auc(scores):
    y, p = scores
    lo, hi = bootstrap_auc_ci(y, p, n_boot=200)
    assert lo < roc_auc_score(y, p) < hi
    assert hi - lo < 0.3


def test_grouped_bootstrap_is_wider_than_per_sample_when_groups_are_duplicates(scores):
    y, p = scores
    y4, p4 = np.repeat(y, 4), np.repeat(p, 4)
    groups = np.repeat(np.arange(200), 4)
    lo_s, hi_s = bootstrap_auc_ci(y4, p4, n_boot=200)
    lo_g, hi_g = bootstrap_auc_ci(y4, p4, n_boot=200, groups=groups)
    assert hi_g - lo_g > hi_s - lo_s


def test_plots_are_written_as_png(scores, tmp_path):
    y, p = scores
    m = {"at_threshold": binary_metrics(y, p, 0.5)}
    names = write_plots(y, p, m, tmp_path, "test")
    assert len(names) == 3
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confusion_counts_are_white_on_dark_cells_and_black_on_light_ones():
    assert confusion_text_colours(np.array([[0, 50], [10, 200]])) == [
        ["black", "black"],
        ["black", "white"],
    ]
