"""What a training run learns from: patches loaded (and cached) from mini-MIAS or DDSM.

``load_training_data`` reads the folder a ``TrainConfig`` names: mini-MIAS patches split by
woman (cached under ``cache_dir()``, since cutting them takes minutes), or the seed's DDSM
TFRecords and npy files. Hard negatives (the normal tiles of the training films an earlier
model scores highest) are added here too: they change what the run learns from.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.breast import breast_mask
from ml.config import TrainConfig, WholeImageConfig, mias_pseudonym
from ml.data import (
    NORMAL,
    MiasFilm,
    PatchSet,
    clear_of_lesions,
    ddsm_tfrecord_dataset,
    ddsm_tfrecord_labels,
    find_ddsm_files,
    is_mias_folder,
    load_ddsm_npy,
    mias_split_patches,
    read_mias,
)
from ml.predictor import Predictor, tile_image, to_0_255


@dataclass
class TrainingData:
    """Training source plus in-memory validation and test patches (five-class labels)."""

    train: Any  # tf.data.Dataset of (uint8 image, label) or (images, labels) arrays
    train_labels: np.ndarray
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    description: dict[str, Any]
    test_groups: np.ndarray | None = None
    val_groups: np.ndarray | None = None
    split: dict[str, list[int]] = field(default_factory=dict)


def _cache_key(cfg: TrainConfig) -> str:
    labels = Path(cfg.data) / "labels.csv"
    stamp = [str(labels.resolve()), labels.stat().st_size, labels.stat().st_mtime_ns]
    blob = json.dumps([asdict(cfg.patches), asdict(cfg.split), stamp], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_dir() -> Path:
    """Where extracted patches are cached: ``$MAMMO_CACHE_DIR`` or ``runs/cache``."""
    return Path(os.environ.get("MAMMO_CACHE_DIR", "runs/cache"))


def load_mias(cfg: TrainConfig, cache_root: Path | None = None) -> TrainingData:
    cache = (cache_root or cache_dir()) / f"mias-patches-{_cache_key(cfg)}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        sets = {
            k: PatchSet(z[f"{k}_images"], z[f"{k}_labels"], list(z[f"{k}_refs"]))
            for k in ("train", "val", "test")
        }
        split = json.loads(str(z["split"]))
    else:
        sets, split = mias_split_patches(cfg.data, cfg.patches, cfg.split)
        cache.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"split": json.dumps(split)}
        for k, s in sets.items():
            arrays[f"{k}_images"] = s.images
            arrays[f"{k}_labels"] = s.labels
            arrays[f"{k}_refs"] = np.array(s.refnums)
        np.savez(cache, **arrays)
    description = {
        "source": "mini-MIAS (Suckling et al. 1994), 258 films of 129 women, research use",
        "layout": "mini-mias",
        "path": str(cfg.data),
        "patches": asdict(cfg.patches),
        "split": asdict(cfg.split),
        "split_unit": "patient (film N belongs to patient (N+1)//2), stratified by abnormal",
        "patients": {k: len(v) for k, v in split.items()},
        "test_patients": split["test"],
        "val_patients": split["val"],
        # the women whose films it learnt from, as the site names them (ml.manifest_schema)
        "subjects": [mias_pseudonym(p) for p in split["train"]],
        "patch_counts": {
            k: {"total": len(s), "by_label": np.bincount(s.labels, minlength=5).tolist()}
            for k, s in sets.items()
        },
    }
    return TrainingData(
        train=(sets["train"].images, sets["train"].labels),
        train_labels=sets["train"].labels,
        val=(sets["val"].images, sets["val"].labels),
        test=(sets["test"].images, sets["test"].labels),
        description=description,
        test_groups=sets["test"].patients,
        val_groups=sets["val"].patients,
        split=split,
    )


def load_ddsm(cfg: TrainConfig) -> TrainingData:
    files = find_ddsm_files(cfg.data)
    if not files.train_records or files.val is None or files.test is None:
        raise SystemExit(
            f"{cfg.data}: expected *.tfrecords for training plus cv*/val* and test* "
            "*_data.npy/*_labels.npy pairs (the Kaggle DDSM Mammography layout)"
        )
    labels = ddsm_tfrecord_labels(files.train_records)
    return TrainingData(
        train=ddsm_tfrecord_dataset(files.train_records),
        train_labels=labels,
        val=load_ddsm_npy(*files.val),
        test=load_ddsm_npy(*files.test),
        description={
            "source": "Kaggle DDSM Mammography patches (CBIS-DDSM derived), 299x299",
            "layout": "ddsm",
            "path": str(cfg.data),
            "train_records": [p.name for p in files.train_records],
            "validation": files.val[0].name,
            "test": files.test[0].name,
            "train_count": int(len(labels)),
        },
    )


def load_training_data(cfg: TrainConfig) -> TrainingData:
    if not is_mias_folder(cfg.data):
        return load_ddsm(cfg)
    data = load_mias(cfg)
    if cfg.hard_negatives_from:
        data = add_hard_negatives(data, cfg)
    return data


def add_hard_negatives(data: TrainingData, cfg: TrainConfig) -> TrainingData:
    """Add each training film's highest-scoring normal tiles (by an earlier model) as normals."""
    if cfg.hard_negatives_from is None:
        raise ValueError(
            "hard negatives need an artifact to mine them with (--hard-negatives-from)"
        )
    predictor = Predictor.load(cfg.hard_negatives_from)
    return with_hard_negatives(data, cfg, predictor, cfg.hard_negatives_from)


def normal_grid_tiles(film: MiasFilm, whole: WholeImageConfig) -> np.ndarray:
    """The tiles whole-film scoring (``ml.predictor.tile_image``) looks at, minus lesion ones.

    The pool hard negatives are mined from: the tiles of normal tissue a model scores
    highest are the ones that make whole films look abnormal.
    """
    size = whole.patch_size
    empty = np.zeros((0, size, size), np.uint8)
    if any(not f.has_location for f in film.findings):
        return empty
    image = to_0_255(film.load())
    tiles, boxes = tile_image(image, breast_mask(image), whole)
    lesions = [(*f.centre_rc(image.shape[0]), f.radius or 0) for f in film.findings]
    keep = np.array([clear_of_lesions(lesions, r0, c0, size) for r0, c0, _, _ in boxes])
    return tiles[keep].astype(np.uint8) if keep.any() else empty


def mine_hard_negatives(
    predictor: Any, root: str | Path, patients: set[int], per_film: int
) -> np.ndarray:
    """The ``per_film`` normal grid tiles each film of ``patients`` that ``predictor`` scores
    highest: the tiles that make whole films look abnormal."""
    mined: list[np.ndarray] = []
    for film in read_mias(root):
        if film.patient not in patients:
            continue
        tiles = normal_grid_tiles(film, predictor.whole_image)  # the tiles it would score
        if len(tiles) == 0:
            continue
        scores = predictor.predict_patches(tiles)
        mined.extend(tiles[np.argsort(scores)[::-1][:per_film]])
    size = predictor.whole_image.patch_size
    return np.stack(mined) if mined else np.zeros((0, size, size), np.uint8)


def with_hard_negatives(
    data: TrainingData, cfg: TrainConfig, predictor: Any, source: str
) -> TrainingData:
    """``data`` with hard negatives of its training films (only) added as normal patches."""
    extra = mine_hard_negatives(
        predictor, cfg.data, set(data.split["train"]), cfg.hard_negatives_per_film
    )
    images, labels = data.train
    data.train = (
        np.concatenate([images, extra]),
        np.concatenate([labels, np.full(len(extra), NORMAL, labels.dtype)]),
    )
    data.train_labels = data.train[1]
    data.description["hard_negatives"] = {
        "from": source,
        "per_film": cfg.hard_negatives_per_film,
        "added": int(len(extra)),
        "source": "highest-scoring normal grid tiles of the training films only",
    }
    return data
