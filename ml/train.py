"""Train one classifier and write a run directory that is also a model artifact.

    python -m ml.train --arch custom_cnn --data ../shared/data/mini-mias --target abnormal \
        --out runs/cnn-mias

The run directory holds ``config.json``, ``model.keras``, ``history.csv``, ``metrics.json``,
plots, ``manifest.json`` and ``MODEL_CARD.md``. Training sees only the training split; the
best epoch is chosen on validation AUC; the threshold is chosen on validation; the test
split is touched once, at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ml.config import ARCHITECTURES, TARGETS, ModelConfig, PatchConfig, SplitConfig, TrainConfig
from ml.training_data import TrainingData, load_training_data

CHECKPOINT = "checkpoint.keras"


def fit(
    model: Any,
    train_ds: Any,
    val_ds: Any,
    cfg: TrainConfig,
    out: Path,
    epochs: int,
    learning_rate: float,
    class_weight: dict[int, float] | None,
    initial_epoch: int = 0,
    film_auc: Any = None,
    best_so_far: float | None = None,
) -> dict[str, list[float]]:
    """Adam + binary cross-entropy, checkpoint on best exact validation AUC, early stopping.

    With ``film_auc`` (see ``validation_film_auc_callback``) both watch validation films.
    ``best_so_far`` carries an earlier stage's best figure, so a later stage only replaces
    the checkpoint with something better.
    """
    import keras

    film_callback = [film_auc] if film_auc is not None else []
    monitor = "val_film_auc" if film_auc is not None else "val_auc"

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
        run_eagerly=cfg.run_eagerly,
    )
    callbacks = [
        # first, so the callbacks below see their figures
        validation_patch_auc_callback(val_ds),
        *film_callback,
        keras.callbacks.ModelCheckpoint(
            out / CHECKPOINT,
            monitor=monitor,
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode="max", patience=cfg.patience, restore_best_weights=True
        ),
        keras.callbacks.CSVLogger(out / "history.csv", append=initial_epoch > 0),
    ]
    history = model.fit(
        train_ds,
        epochs=initial_epoch + epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=cfg.steps_per_epoch,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=cfg.verbose,
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def exact_auc(y: np.ndarray, p: np.ndarray) -> float:
    """scikit-learn's ROC AUC, NaN with one class: every distinct score is its own threshold."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(int)
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def validation_patch_auc_callback(val_ds: Any) -> Any:
    """A callback setting ``val_loss``, ``val_accuracy`` and an exact ``val_auc`` per epoch.

    ``keras.metrics.AUC`` bins scores at 200 thresholds: once a model's scores crowd above
    0.995 they share one bin and it reads 0.5 whatever their order, so checkpoints chosen
    on it were chosen by chance. One pass over the validation patches gives the exact
    figure, and the loss and accuracy with it (fit gets no ``validation_data``).
    """
    import keras

    class ValidationPatchAUC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            ys, ps = [], []
            for x, y in val_ds:
                ps.append(np.asarray(self.model(x, training=False), np.float64).reshape(-1))
                ys.append(np.asarray(y).reshape(-1))
            y_all, p_all = np.concatenate(ys), np.concatenate(ps)
            q = np.clip(p_all, 1e-7, 1 - 1e-7)
            if logs is not None:
                logs["val_loss"] = float(-np.mean(y_all * np.log(q) + (1 - y_all) * np.log(1 - q)))
                logs["val_accuracy"] = float(np.mean((p_all >= 0.5) == (y_all == 1)))
                logs["val_auc"] = exact_auc(y_all, p_all)

    return ValidationPatchAUC()


def validation_film_auc_callback(cfg: TrainConfig, split: dict[str, list[int]]) -> Any:
    """A callback adding ``val_film_auc``: validation films scored as the app scores them.

    Patch AUC rewards telling lesion crops from random normal tiles; the app ranks whole
    films by their highest patch score, which a few bright normal tiles can spoil. Selecting
    on the films themselves selects for what the worklist needs.
    """
    import keras

    from ml.config import WholeImageConfig
    from ml.data import breast_mask, read_mias, to_target
    from ml.models import PREPROCESSING
    from ml.predictor import model_input, patch_probabilities, tile_image, to_0_255

    size = cfg.model.input_size
    whole = WholeImageConfig(patch_size=size, stride=size // 2)
    films = [f for f in read_mias(cfg.data) if f.patient in set(split["val"])]
    tiles = []
    for film in films:
        image = to_0_255(film.load())
        tiles.append(tile_image(image, breast_mask(image), whole)[0].astype(np.uint8))
    labels = to_target([f.label for f in films], cfg.target)
    if len(set(labels.tolist())) < 2:
        raise ValueError("selecting on films needs both normal and abnormal validation films")
    method = PREPROCESSING[cfg.model.arch]

    class ValidationFilmAUC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            scores = [
                float(patch_probabilities(self.model, model_input(ft, size, method), 32).max())
                for ft in tiles
            ]
            auc = exact_auc(labels, np.asarray(scores))
            if logs is not None:
                logs["val_film_auc"] = auc
            if cfg.verbose:
                print(f"epoch {epoch + 1}: validation film AUC {auc:.3f} ({len(films)} films)")

    return ValidationFilmAUC()


def predict_arrays(model: Any, images: np.ndarray, cfg: TrainConfig, method: str) -> np.ndarray:
    from ml.data import make_dataset

    ds = make_dataset(
        (images, np.zeros(len(images), np.int32)),
        target=cfg.target,
        preprocessing=method,
        input_size=cfg.model.input_size,
        batch_size=cfg.batch_size,
    )
    return np.concatenate([np.asarray(model(x, training=False)).reshape(-1) for x, _ in ds])


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


def train_model(
    cfg: TrainConfig,
    data: TrainingData,
    out: Path,
    model: Any,
    initial_epoch: int = 0,
    best_so_far: float | None = None,
) -> tuple[Any, dict[str, list[float]]]:
    """Fit ``model`` on ``data.train`` (then fine-tune), return the best checkpoint and history.

    ``initial_epoch`` and ``best_so_far`` let a second stage (after hard-negative mining)
    continue the first one's history and only replace its checkpoint with a better one.
    """
    import keras

    from ml.data import class_weights, make_dataset, to_target
    from ml.models import PREPROCESSING, set_base_trainable

    method = PREPROCESSING[cfg.model.arch]
    common: dict[str, Any] = {
        "target": cfg.target,
        "preprocessing": method,
        "input_size": cfg.model.input_size,
        "batch_size": cfg.batch_size,
    }
    train_ds = make_dataset(
        data.train,
        augment=cfg.augment,
        shuffle=True,
        seed=cfg.seed + initial_epoch,
        repeat=cfg.steps_per_epoch is not None,
        **common,
    )
    val_ds = make_dataset(data.val, **common)
    weights = class_weights(to_target(data.train_labels, cfg.target)) if cfg.class_weights else None

    film_auc = (
        validation_film_auc_callback(cfg, data.split)
        if cfg.select_on == "films" and data.split
        else None
    )
    history = fit(
        model,
        train_ds,
        val_ds,
        cfg,
        out,
        cfg.epochs,
        cfg.learning_rate,
        weights,
        initial_epoch=initial_epoch,
        film_auc=film_auc,
        best_so_far=best_so_far,
    )
    if cfg.fine_tune_epochs and cfg.model.arch != "custom_cnn":
        set_base_trainable(model, True)
        more = fit(
            model,
            train_ds,
            val_ds,
            cfg,
            out,
            cfg.fine_tune_epochs,
            cfg.fine_tune_learning_rate,
            weights,
            initial_epoch=initial_epoch + len(history["loss"]),
            film_auc=film_auc,
            best_so_far=best_figure(history, film_auc is not None, best_so_far),
        )
        for k, v in more.items():
            history.setdefault(k, []).extend(v)
    ckpt = out / CHECKPOINT
    best = keras.saving.load_model(ckpt, compile=False) if ckpt.is_file() else model
    return best, history


def best_figure(history: dict[str, list[float]], films: bool, before: float | None) -> float | None:
    """The best selection figure so far (validation film or patch AUC), NaNs skipped."""
    values = [v for v in history.get("val_film_auc" if films else "val_auc", []) if v == v]
    if before is not None:
        values.append(before)
    return max(values) if values else None


def initial_model(cfg: TrainConfig) -> Any:
    """A fresh network, or an earlier artifact's (checksum verified) to continue from."""
    from ml.models import build_model

    if not cfg.init_from:
        return build_model(cfg.model)
    from ml.artifacts import load_model

    model, _ = load_model(cfg.init_from)
    return model


def read_history(out: Path) -> dict[str, list[float]]:
    import csv

    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {}) if k != "epoch"}


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
    from ml.artifacts import MODEL_CARD, MODEL_FILE, Manifest, save_artifact, write_manifest
    from ml.evaluate import evaluate_patches, film_level, model_card
    from ml.metrics import plot_history
    from ml.models import PREPROCESSING

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
    save_artifact(best, out, manifest)
    if ckpt.is_file():
        ckpt.unlink()
    if data.split:
        from ml.predictor import Predictor

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
    from ml.models import GRADCAM_LAYER, PREPROCESSING

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


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=ARCHITECTURES, default="custom_cnn")
    p.add_argument("--data", required=True, help="mini-MIAS folder or DDSM folder")
    p.add_argument("--target", choices=TARGETS, default="abnormal")
    p.add_argument("--out", default=None, help="run directory (default runs/<arch>-<target>)")
    p.add_argument("--weights", default=None, help='"imagenet", a local .weights.h5, or none')
    p.add_argument("--input-size", type=int, default=299)
    p.add_argument("--internal-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--fine-tune-epochs", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--lesion-crops", type=int, default=PatchConfig.lesion_crops)
    p.add_argument("--normal-tiles", type=int, default=PatchConfig.normal_tiles_per_film)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--target-sensitivity", type=float, default=0.90)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--split-seed", type=int, default=SplitConfig.seed)
    p.add_argument("--version", default="0.0.0")
    p.add_argument(
        "--kfold", type=int, default=0, help="k-fold cross-validation by patient (mini-MIAS)"
    )
    p.add_argument("--init-from", default=None, help="artifact whose weights training starts from")
    p.add_argument(
        "--hard-negatives-from",
        default=None,
        help="artifact that mines the highest-scoring normal tiles of the training films",
    )
    p.add_argument("--hard-negatives", type=int, default=3, help="mined tiles per training film")
    p.add_argument(
        "--select-on",
        choices=("patches", "films"),
        default="patches",
        help="checkpoint and early stopping on validation patch AUC or whole-film AUC (mini-MIAS)",
    )
    p.add_argument("--verbose", type=int, default=1)
    a = p.parse_args(argv)
    weights = None if a.weights in (None, "none", "None") else a.weights
    return TrainConfig(
        model=ModelConfig(a.arch, a.input_size, weights, a.internal_size),
        patches=PatchConfig(
            patch_size=a.input_size,
            lesion_crops=a.lesion_crops,
            normal_tiles_per_film=a.normal_tiles,
        ),
        split=SplitConfig(seed=a.split_seed, folds=a.kfold),
        data=a.data,
        target=a.target,
        out_dir=a.out or f"runs/{a.arch}-{a.target}",
        epochs=a.epochs,
        batch_size=a.batch_size,
        learning_rate=a.lr,
        patience=a.patience,
        fine_tune_epochs=a.fine_tune_epochs,
        steps_per_epoch=a.steps_per_epoch,
        augment=not a.no_augment,
        target_sensitivity=a.target_sensitivity,
        seed=a.seed,
        version=a.version,
        verbose=a.verbose,
        init_from=a.init_from,
        hard_negatives_from=a.hard_negatives_from,
        hard_negatives_per_film=a.hard_negatives,
        select_on=a.select_on,
    )


def cross_validate(cfg: TrainConfig) -> dict[str, Any]:
    """Train one model per patient fold; each fold is a full run under ``out/fold<i>``."""
    import copy

    k = cfg.split.folds
    root = Path(cfg.out_dir)
    folds = []
    for i in range(k):
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.split.fold = i
        fold_cfg.out_dir = str(root / f"fold{i}")
        metrics = json.loads((run(fold_cfg) / "metrics.json").read_text())
        entry = {"fold": i, "patch_auc": metrics["patch"]["test"]["auc"]}
        if "image" in metrics:
            entry["image_auc"] = metrics["image"]["test"]["auc"]
        folds.append(entry)
    summary: dict[str, Any] = {"folds": folds}
    for key in ("patch_auc", "image_auc"):
        values = [f[key] for f in folds if key in f]
        if values:
            summary[key] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1))}
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


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(argv) if argv is not None else None
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--finalise"]:
        out = finalise_run(args[1])
    else:
        cfg = parse_args(argv)
        if cfg.split.folds > 1:
            summary = cross_validate(cfg)
            for key in ("patch_auc", "image_auc"):
                if key in summary:
                    s = summary[key]
                    print(f"{key}: {s['mean']:.3f} ± {s['sd']:.3f} over {cfg.split.folds} folds")
            return
        out = run(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["patch"]["test"]
    lo, hi = test["auc_ci95"]
    print(f"\nrun written to {out}")
    print(f"patch test AUC {test['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f})")
    if "image" in metrics:
        img = metrics["image"]["test"]
        print(
            f"image test AUC {img['auc']:.3f} (95% CI {img['auc_ci95'][0]:.3f}-{img['auc_ci95'][1]:.3f})"
        )


if __name__ == "__main__":
    main()
