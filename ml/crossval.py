"""Grouped cross-validation of a training recipe over every mini-MIAS film.

    python -m ml.crossval --name cv-shipped --recipe "custom_cnn, 6 tiles" --folds 5 \
        --internal-size 150 --normal-tiles 6 --epochs 10 --select-on films

A single 25-woman test split is too small to tell a 0.75 film AUC from 0.65. Here the
women are cut into k folds; each fold's model is trained from scratch on the other women
(its validation women drawn from them, so every choice stays inside the training fold),
and the fold's films are scored as the app scores them (``ml.predictor.Predictor``). The
out-of-fold film scores are pooled into one AUC, with a 95 % CI by bootstrap over women.

Writes ``runs/<name>/crossval.json``, ``oof.csv`` (one row per scored film) and one model
artifact per fold; prints a one-line summary.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ml.artifacts import Manifest, save_artifact
from ml.config import CrossValConfig, TrainConfig, mias_dir
from ml.data import (
    PatchSet,
    hold_out_patients,
    mias_film_patches,
    patient_folds,
    read_mias,
    to_target,
)
from ml.metrics import pooled_oof_auc
from ml.models import build_model
from ml.predictor import Predictor
from ml.runs import inference_settings
from ml.train import parse_args as train_args
from ml.trainer import CHECKPOINT, best_figure, exact_auc, train_model
from ml.training_data import TrainingData, cache_dir, with_hard_negatives

OOF_FIELDS = ("repeat", "fold", "refnum", "patient", "label", "score", "max", "mean_top3", "tiles")


def load_film_patches(cfg: TrainConfig, cache_root: Path | None = None) -> Any:
    """Every film's training patches, extracted once per patch recipe and cached."""
    labels = Path(cfg.data) / "labels.csv"
    stamp = [str(labels.resolve()), labels.stat().st_size, labels.stat().st_mtime_ns]
    blob = json.dumps([dataclasses.asdict(cfg.patches), stamp, "per-film seeds"], sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    cache = (cache_root or cache_dir()) / f"mias-films-{key}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return PatchSet(z["images"], z["labels"], list(z["refs"]))
    patches = mias_film_patches(cfg.data, cfg.patches)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, images=patches.images, labels=patches.labels, refs=np.array(patches.refnums))
    return patches


def fold_data(
    patches: Any, split: dict[str, list[int]], description: dict[str, Any]
) -> TrainingData:
    """A fold's training and validation patches; its test films are scored whole, not as patches."""
    train = patches.of_patients(split["train"])
    val = patches.of_patients(split["val"])
    size = patches.images.shape[1]
    empty = (np.zeros((0, size, size), np.uint8), np.zeros(0, np.int32))
    return TrainingData(
        train=(train.images, train.labels),
        train_labels=train.labels,
        val=(val.images, val.labels),
        test=empty,
        description=description,
        val_groups=val.patients,
        split=split,
    )


def fold_predictor(model: Any, cfg: TrainConfig, aggregation: str, note: str) -> Any:
    """A ``Predictor`` around an in-memory fold model, with the app's inference settings."""
    manifest = Manifest(
        architecture=cfg.model.arch,
        version="0.0.0-cv",
        target=cfg.target,
        input_size=cfg.model.input_size,
        threshold=0.5,
        metrics={},
        sha256="",
        preprocessing=inference_settings(cfg, aggregation),
        training_data={"source": note},
    )
    return Predictor(model, manifest)


def train_fold(cv: CrossValConfig, data: TrainingData, out: Path) -> tuple[Any, dict[str, Any]]:
    """Train one fold's model from scratch, with the optional in-fold hard-negative stage."""
    import keras

    cfg = copy.deepcopy(cv.train)
    cfg.out_dir = str(out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    model, history = train_model(cfg, data, out, build_model(cfg.model))
    info: dict[str, Any] = {"epochs_run": len(history.get("loss", [])), "hard_negatives": 0}
    if cv.hard_negative_epochs:
        miner = fold_predictor(model, cfg, "max", "stage 1 of this fold")
        data = with_hard_negatives(data, cfg, miner, "stage 1 of this fold")
        info["hard_negatives"] = data.description["hard_negatives"]["added"]
        films = cfg.select_on == "films" and bool(data.split)
        stage2 = dataclasses.replace(cfg, epochs=cv.hard_negative_epochs)
        model, more = train_model(
            stage2,
            data,
            out,
            model,
            initial_epoch=info["epochs_run"],
            best_so_far=best_figure(history, films, None),
        )
        for k, v in more.items():
            history.setdefault(k, []).extend(v)
        info["epochs_run"] += len(more.get("loss", []))
    key = "val_film_auc" if "val_film_auc" in history else "val_auc"
    values = [v for v in history.get(key, []) if v == v]
    info["selected_on"] = key
    info["best_validation"] = max(values) if values else float("nan")
    return model, info


def score_films(predictor: Any, films: list[Any], batch: int = 8) -> list[dict[str, Any]]:
    """Each film's app score plus its max and mean-of-top-3 patch probabilities."""
    rows = []
    for i in range(0, len(films), batch):
        chunk = films[i : i + batch]
        for film, pred in zip(
            chunk, predictor.predict_images([f.load() for f in chunk]), strict=True
        ):
            p = np.sort(pred.patch_probabilities)
            rows.append(
                {
                    "refnum": film.refnum,
                    "patient": film.patient,
                    "score": float(pred.probability),
                    "max": float(p[-1]),
                    "mean_top3": float(p[-3:].mean()),
                    "tiles": int(len(p)),
                }
            )
    return rows


def film_labels(films: list[Any], target: str) -> dict[str, int]:
    """Each film's 0/1 label for ``target``, by refnum."""
    labels = to_target([f.label for f in films], target).tolist()
    return dict(zip((f.refnum for f in films), labels, strict=True))


def fit_and_score(
    cv: CrossValConfig,
    patches: Any,
    films: list[Any],
    split: dict[str, list[int]],
    out: Path,
    description: dict[str, Any],
) -> tuple[Any, Any, dict[str, Any], list[dict[str, Any]]]:
    """Train one model from scratch on ``split``'s train and val women, score its test women.

    The one step every cross-validation here repeats (``run_crossval``'s folds, ``ml.tune``'s
    inner and outer folds): returns the model, its predictor, the training figures
    (``train_seconds`` included) and one row per test film with its label.
    """
    t0 = time.time()
    model, info = train_fold(cv, fold_data(patches, split, description), out)
    info["train_seconds"] = time.time() - t0
    note = ", ".join(f"{k} {description[k]}" for k in ("fold", "repeat") if k in description)
    predictor = fold_predictor(model, cv.train, cv.aggregation, note)
    test = set(split["test"])
    rows = score_films(predictor, [f for f in films if f.patient in test])
    label_of = film_labels(films, cv.train.target)
    for row in rows:
        row["label"] = label_of[row["refnum"]]
    return model, predictor, info, rows


def run_crossval(cv: CrossValConfig) -> dict[str, Any]:
    """Train and score every fold of every repeat; write ``crossval.json`` and ``oof.csv``."""
    cfg = cv.train
    root = Path(cfg.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(cv.to_dict(), indent=2) + "\n")
    started = time.time()
    films = read_mias(cfg.data)
    patches = load_film_patches(cfg)
    rows: list[dict[str, Any]] = []
    per_fold: list[dict[str, Any]] = []
    train_seconds = 0.0
    for r in range(cv.repeats):
        folds = patient_folds(films, cv.folds, cv.seed + r)
        for i, test in enumerate(folds):
            rest = [p for j, fold in enumerate(folds) if j != i for p in fold]
            split = hold_out_patients(films, rest, cv.val_fraction, cv.seed + r * 100 + i)
            split["test"] = test
            description = {"source": "mini-MIAS", "fold": i, "repeat": r, "split": split}
            t0 = time.time()
            model, predictor, info, scored = fit_and_score(
                cv, patches, films, split, root / f"r{r}f{i}", description
            )
            train_seconds += info.pop("train_seconds")
            for row in scored:
                row.update(repeat=r, fold=i)
            rows.extend(scored)
            y = np.array([row["label"] for row in scored])
            fold_auc = exact_auc(y, np.array([row["score"] for row in scored]))
            per_fold.append(
                {
                    "repeat": r,
                    "fold": i,
                    "film_auc": fold_auc,
                    "films": len(scored),
                    "women": len(test),
                    "train_women": len(split["train"]),
                    "val_women": len(split["val"]),
                    "train_patches": int(len(patches.of_patients(split["train"]))),
                    "seconds": round(time.time() - t0, 1),
                    **info,
                }
            )
            _save_fold(model, predictor, root / f"r{r}f{i}", per_fold[-1])
            if cfg.verbose:
                print(f"repeat {r} fold {i}: film AUC {fold_auc:.3f} ({len(scored)} films)")
    summary = summarise(cv, rows, per_fold, train_seconds, time.time() - started)
    write_oof(rows, root / "oof.csv")
    (root / "crossval.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _save_fold(model: Any, predictor: Any, out: Path, figures: dict[str, Any]) -> None:
    """The fold's model as an artifact (re-scorable later), its checkpoint removed."""
    predictor.manifest.metrics = {"crossval_fold": figures}
    save_artifact(model, out, predictor.manifest, "# Cross-validation fold model\n")
    (out / CHECKPOINT).unlink(missing_ok=True)


def summarise(
    cv: CrossValConfig,
    rows: list[dict[str, Any]],
    per_fold: list[dict[str, Any]],
    train_seconds: float,
    total_seconds: float,
) -> dict[str, Any]:
    """The ``crossval.json`` figures, plus the saturation check on normal films."""
    headline = pooled_oof_auc(rows, "score", cv.train.bootstrap)
    normal = [r["max"] for r in rows if r["label"] == 0]
    abnormal = [r["max"] for r in rows if r["label"] == 1]
    secondary = "mean_top3" if cv.aggregation == "max" else "max"
    return {
        "recipe": cv.recipe,
        "folds": cv.folds,
        "repeats": cv.repeats,
        "film_auc": headline["auc"],
        "ci95": headline["ci95"],
        "estimator": headline["estimator"],
        "per_fold": per_fold,
        "films": len({r["refnum"] for r in rows}),
        "women": len({r["patient"] for r in rows}),
        "train_seconds": round(train_seconds, 1),
        "notes": cv.notes,
        "aggregation": cv.aggregation,
        "per_repeat_auc": headline["per_repeat"],
        "normal_film_max_median": float(np.median(normal)) if normal else float("nan"),
        "abnormal_film_max_median": float(np.median(abnormal)) if abnormal else float("nan"),
        # the same fold models re-aggregated; reported, never used to choose anything
        f"film_auc_{secondary}": pooled_oof_auc(rows, secondary, cv.train.bootstrap),
        "total_seconds": round(total_seconds, 1),
    }


def write_oof(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=OOF_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in OOF_FIELDS})


def summary_line(summary: dict[str, Any], name: str) -> str:
    lo, hi = summary["ci95"]
    return (
        f"{name}: film AUC {summary['film_auc']:.3f} (95% CI {lo:.3f}-{hi:.3f}), "
        f"{summary['folds']} folds x {summary['repeats']}, {summary['films']} films of "
        f"{summary['women']} women, normal-film max median "
        f"{summary['normal_film_max_median']:.3f}, train {summary['train_seconds'] / 60:.1f} min"
    )


def parse_args(argv: list[str] | None = None) -> CrossValConfig:
    """Cross-validation options; every other option is ``python -m ml.train``'s."""
    p = argparse.ArgumentParser(prog="python -m ml.crossval", description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="run folder: runs/<name>")
    p.add_argument("--recipe", default="", help="short description for the report")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--fold-seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--hard-negative-epochs", type=int, default=0)
    p.add_argument("--aggregation", choices=("max", "mean_top3"), default="max")
    p.add_argument("--notes", default="")
    a, rest = p.parse_known_args(argv)
    if "--data" not in rest:
        rest += ["--data", str(mias_dir())]
    train = train_args([*rest, "--out", str(Path("runs") / a.name)])
    return CrossValConfig(
        train=train,
        recipe=a.recipe,
        folds=a.folds,
        repeats=a.repeats,
        seed=a.fold_seed,
        val_fraction=a.val_fraction,
        hard_negative_epochs=a.hard_negative_epochs,
        aggregation=a.aggregation,
        notes=a.notes,
    )


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cv = parse_args(argv)
    summary = run_crossval(cv)
    print(summary_line(summary, Path(cv.train.out_dir).name))


if __name__ == "__main__":
    main()
