import json
from pathlib import Path

import numpy as np
import pytest

from ml.config import CrossValConfig
from ml.crossval import run_crossval
from ml.metrics import pooled_oof_auc
from tests.ml.test_train_mias import tiny_run


def saturated_model_and_data():
    """A one-weight model whose scores run 0.9990..0.9999, normals below abnormals."""
    import keras
    import tensorflow as tf

    scores = np.linspace(0.9990, 0.9999, 10)
    x = np.log(scores / (1 - scores)).reshape(-1, 1, 1, 1).astype(np.float32)  # logits
    y = np.array([0] * 5 + [1] * 5, np.float32)
    inputs = keras.Input((1, 1, 1))
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, out)
    model.set_weights([np.ones((1, 1), np.float32), np.zeros(1, np.float32)])
    return model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4), scores, y


def test_validation_auc_ranks_saturated_scores_exactly():
    import keras

    from ml.trainer import validation_patch_auc_callback

    model, val_ds, scores, y = saturated_model_and_data()
    binned = keras.metrics.AUC()  # what checkpoints used to watch: 200 thresholds
    binned.update_state(y, scores)
    assert float(binned.result()) < 0.6  # all ten scores share the top bin
    callback = validation_patch_auc_callback(val_ds)
    callback.set_model(model)
    logs: dict = {}
    callback.on_epoch_end(0, logs)
    assert logs["val_auc"] == 1.0
    assert logs["val_accuracy"] == 0.5  # every score is >= 0.5


def test_pooled_auc_over_repeats_is_the_mean_of_each_repeats_auc():
    rows = [
        {"repeat": r, "patient": i, "label": int(i >= 4), "score": s}
        for r, scores in enumerate(([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [0.8] + [0.5] * 7))
        for i, s in enumerate(scores)
    ]
    result = pooled_oof_auc(rows, "score", n_boot=50)
    assert result["per_repeat"] == [1.0, pytest.approx(0.375)]
    assert result["auc"] == pytest.approx((1.0 + 0.375) / 2)
    lo, hi = result["ci95"]
    assert lo <= hi <= 1.0


def test_cross_validation_scores_every_film_once_from_a_model_that_never_saw_it(
    mini_mias_like: Path, tmp_path: Path
):
    cv = CrossValConfig(
        train=tiny_run(mini_mias_like, tmp_path / "cv"),
        recipe="tiny",
        folds=3,
        val_fraction=0.5,
        hard_negative_epochs=1,
    )
    cv.train.hard_negatives_per_film = 1
    summary = run_crossval(cv)
    written = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert written["film_auc"] == summary["film_auc"] or np.isnan(summary["film_auc"])
    assert [written[k] for k in ("folds", "repeats", "films", "women")] == [3, 1, 12, 6]
    assert set(written) >= {"recipe", "ci95", "per_fold", "train_seconds", "notes"}
    oof = (tmp_path / "cv" / "oof.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[2] for line in oof) == [f"mdb{n:03d}" for n in range(1, 13)]
    for fold in written["per_fold"]:
        split = json.loads((tmp_path / "cv" / f"r0f{fold['fold']}" / "manifest.json").read_text())
        assert fold["hard_negatives"] > 0 and fold["women"] == 2
        assert split["metrics"]["crossval_fold"]["train_women"] + fold["val_women"] == 4
