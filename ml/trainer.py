"""The training loop: fit a network on a run's patches, keep its best epoch.

Adam and binary cross-entropy, an exact validation AUC each epoch (on patches, or on whole
validation films scored as the app scores them), the best epoch checkpointed and early
stopping on it, then optional fine-tuning of a transfer model's base. What the run learns
from is ``ml.training_data``'s; evaluating and writing the artifact is ``ml.runs``'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ml.artifacts import HISTORY_FILE, load_model
from ml.breast import breast_mask
from ml.config import TrainConfig, WholeImageConfig
from ml.data import class_weights, make_dataset, read_mias, to_target
from ml.models import PREPROCESSING, build_model, set_base_trainable
from ml.predictor import model_input, patch_probabilities, tile_image, to_0_255
from ml.training_data import TrainingData

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
        keras.callbacks.CSVLogger(out / HISTORY_FILE, append=initial_epoch > 0),
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
    if not cfg.init_from:
        return build_model(cfg.model)
    model, _ = load_model(cfg.init_from)
    return model
