"""A training run from end to end: train, evaluate, and write the run directory as an artifact.

``run`` trains (``ml.trainer``) on the configured data (``ml.training_data``) and
``finalise`` picks the threshold on validation, evaluates on test (``ml.evaluation``) and
writes ``model.keras``, ``manifest.json``, ``metrics.json``, plots and ``MODEL_CARD.md``.
``finalise_run`` finishes a run stopped early from its checkpoint; ``cross_validate`` is
``--kfold``: one full run per patient fold, its test films (``test_film_scores.json``)
pooled into the one cross-validation estimate (``ml.metrics.pooled_oof_auc``).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from ml.artifacts import (
    MODEL_CARD,
    MODEL_FILE,
    Manifest,
    read_history,
    save_artifact,
    write_manifest,
)
from ml.config import TrainConfig, mias_pseudonym
from ml.evaluation import TEST_FILM_SCORES, evaluate_patches, film_level
from ml.metrics import plot_history, pooled_oof_auc
from ml.model_card import model_card
from ml.models import GRADCAM_LAYER, PREPROCESSING
from ml.predictor import Predictor
from ml.trainer import CHECKPOINT, initial_model, train_model
from ml.training_data import TrainingData, load_training_data


def run(cfg: TrainConfig) -> Path:
    """Train, pick the threshold on validation, evaluate on test, write the artifact."""
    import keras

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    keras.utils.set_random_seed(cfg.seed)
    started = time.time()
    data = load_training_data(cfg)
    best, history = train_model(cfg, data, out, initial_model(cfg))
    return finalise(cfg, best, data, history, time.time() - started)


def finalise(
    cfg: TrainConfig,
    best: Any,
    data: TrainingData,
    history: dict[str, list[float]],
    train_seconds: float | None,
) -> Path:
    """Evaluate the best model (threshold on validation, figures on test), write the artifact.

    Separate from training so a run stopped early can be finished from its checkpoint
    (``python -m ml.train --finalise RUN_DIR``).
    """
    out = Path(cfg.out_dir)
    started = time.time() - (train_seconds or 0.0)
    method = PREPROCESSING[cfg.model.arch]
    data.description["training"] = {
        "epochs_max": cfg.epochs,
        "epochs_run": len(history.get("loss", [])),
        "fine_tune_epochs": cfg.fine_tune_epochs,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "patience": cfg.patience,
        "augment": cfg.augment,
        "class_weights": cfg.class_weights,
        "weights": cfg.model.weights,
        "seed": cfg.seed,
        "init_from": cfg.init_from,
        "selected_on": cfg.select_on,
    }
    plot_history(history, out / "training_curves.png")
    ckpt = out / CHECKPOINT
    patch = evaluate_patches(best, data, cfg, method, out)
    metrics: dict[str, Any] = {"patch": patch}
    if train_seconds is not None:
        metrics["train_seconds"] = round(train_seconds, 1)
    manifest = Manifest(
        architecture=cfg.model.arch,
        version=cfg.version,
        target=cfg.target,
        input_size=cfg.model.input_size,
        threshold=patch["threshold"],
        metrics=metrics,
        sha256="",
        preprocessing=inference_settings(cfg),
        training_data=data.description,
        model_file=MODEL_FILE,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        thresholds={
            f"patch_sensitivity_{cfg.target_sensitivity:.2f}": patch["threshold"],
            "default": 0.5,
        },
    )
    if data.split:
        manifest.calibration = {
            "method": "model selected and thresholds set on the validation women's films",
            "subjects": [mias_pseudonym(p) for p in data.split["val"]],
        }
    save_artifact(best, out, manifest)
    if ckpt.is_file():
        ckpt.unlink()
    if data.split:
        predictor = Predictor(best, manifest, out)
        metrics["image"] = film_level(predictor, cfg.data, data.split, cfg, out)
        # the app scores whole images, so their threshold is the one it applies
        manifest.thresholds["image_level"] = metrics["image"]["threshold"]
        manifest.threshold = metrics["image"]["threshold"]
    if train_seconds is not None:
        metrics["total_seconds"] = round(time.time() - started, 1)
    manifest.metrics = metrics
    write_manifest(out, manifest)  # the model file, and so its sha256, is unchanged
    (out / MODEL_CARD).write_text(model_card(manifest, history))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return out


def inference_settings(cfg: TrainConfig, aggregation: str = "max") -> dict[str, Any]:
    """The manifest's ``preprocessing``: how the app turns a film into this model's input."""
    return {
        "method": PREPROCESSING[cfg.model.arch],
        "channels": "grayscale replicated to 3 channels as pixel values",
        "intensity": "0..255 (see ml.predictor.to_0_255)",
        "internal_size": cfg.model.internal_size,
        "gradcam_layer": GRADCAM_LAYER[cfg.model.arch],
        "patch_size": cfg.model.input_size,
        "stride": cfg.model.input_size // 2,
        "pixel_spacing_mm": 0.2,
        "default_long_side": 1024,
        "min_breast_fraction": 0.2,
        "aggregation": aggregation,
        "batch_size": 16,
    }


def cross_validate(cfg: TrainConfig) -> dict[str, Any]:
    """Train one model per patient fold (each a full run under ``out/fold<i>``) and pool.

    The headline is the project's one estimator (``ml.metrics.pooled_oof_auc``) over every
    fold's test films; per-fold AUCs are kept as context only, without their mean, which
    hides each fold model's offset (0.588 against a pooled 0.511 for the same attempt).
    """
    k = cfg.split.folds
    root = Path(cfg.out_dir)
    folds, rows = [], []
    for i in range(k):
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.split.fold = i
        fold_cfg.out_dir = str(root / f"fold{i}")
        out = run(fold_cfg)
        metrics = json.loads((out / "metrics.json").read_text())
        entry = {"fold": i, "patch_auc": metrics["patch"]["test"]["auc"]}
        if "image" in metrics:
            entry["film_auc"] = metrics["image"]["test"]["auc"]
            scored = json.loads((out / TEST_FILM_SCORES).read_text())
            rows += [{**r, "fold": i, "repeat": 0} for r in scored]
        folds.append(entry)
    summary: dict[str, Any] = {"per_fold_context_only": folds}
    if rows:
        summary["film_auc"] = pooled_oof_auc(rows, "score", cfg.bootstrap)
    (root / "kfold.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def finalise_run(run_dir: str | Path) -> Path:
    """Finish a run whose training stopped: evaluate its best checkpoint and write it out."""
    import keras

    out = Path(run_dir)
    cfg = TrainConfig.load(out / "config.json")
    cfg.out_dir = str(out)
    model = keras.saving.load_model(out / CHECKPOINT, compile=False)
    history = read_history(out)
    data = load_training_data(cfg)
    return finalise(cfg, model, data, history, None)
