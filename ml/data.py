"""Data: the seed's DDSM patch files, mini-MIAS films and patches, and the tf.data pipeline.

All sources are reduced to the seed's coding: 299 x 299 uint8 grayscale patches with a
label 0 normal, 1 benign calcification, 2 benign mass, 3 malignant calcification,
4 malignant mass. Targets are derived from that label. TensorFlow is imported lazily.
"""

from __future__ import annotations

import csv
import glob
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.breast import breast_mask
from ml.config import PatchConfig, SplitConfig
from ml.models import preprocess

if TYPE_CHECKING:
    import tensorflow as tf

NORMAL, BENIGN_CALC, BENIGN_MASS, MALIGNANT_CALC, MALIGNANT_MASS = range(5)
LABEL_NAMES = (
    "normal",
    "benign calcification",
    "benign mass",
    "malignant calcification",
    "malignant mass",
)
MASS_LIKE = {"CIRC", "SPIC", "MISC", "ARCH", "ASYM"}
MIAS_FILM_SIZE = 1024


# --------------------------------------------------------------------------- targets


def to_target(labels: np.ndarray | Sequence[int], target: str) -> np.ndarray:
    """Binary target from the five-class coding: abnormal (label != 0) or malignant (3, 4)."""
    labels = np.asarray(labels)
    if target == "abnormal":
        return (labels != NORMAL).astype(np.int32)
    if target == "malignant":
        return np.isin(labels, (MALIGNANT_CALC, MALIGNANT_MASS)).astype(np.int32)
    raise ValueError(f"unknown target {target!r}")


def lesions_for_target(film: MiasFilm, target: str) -> list[MiasFinding]:
    """The film's located findings that are positives for ``target`` (what a map should find)."""
    found = [f for f in film.findings if f.has_location]
    if target == "malignant":
        found = [f for f in found if f.label in (MALIGNANT_CALC, MALIGNANT_MASS)]
    return found


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Balanced weights n / (2 n_c), the scikit-learn 'balanced' rule for two classes."""
    y = np.asarray(y).astype(int)
    n = len(y)
    weights = {}
    for c in (0, 1):
        n_c = int((y == c).sum())
        weights[c] = float(n / (2 * n_c)) if n_c else 1.0
    return weights


# --------------------------------------------------------------------------- DDSM files


def ddsm_tfrecord_dataset(paths: Sequence[str | Path]) -> tf.data.Dataset:
    """The Kaggle DDSM TFRecords as ``(uint8 [299, 299, 1], int32 label)`` pairs."""
    import tensorflow as tf

    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "label_normal": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        ex = tf.io.parse_single_example(record, features)
        image = tf.io.decode_raw(ex["image"], tf.uint8)
        image = tf.reshape(image, (299, 299, 1))
        return image, tf.cast(ex["label"], tf.int32)

    files = [str(p) for p in paths]
    return tf.data.TFRecordDataset(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def ddsm_tfrecord_labels(paths: Sequence[str | Path]) -> np.ndarray:
    """All labels of TFRecord files (one cheap pass; used for class weights)."""
    ds = ddsm_tfrecord_dataset(paths).map(lambda _image, label: label)
    return np.fromiter(ds.as_numpy_iterator(), dtype=np.int32)


def as_uint8_patches(images: np.ndarray, source: str = "patches") -> np.ndarray:
    """Patches as uint8 0..255, the coding every model here learnt; refuse what is ambiguous.

    A float file in 0..1 cast straight to uint8 becomes all zeros and still trains (on black
    patches), so it is scaled by 255 instead. Values outside 0..255 (a 12-bit film, or
    standardised pixels) have no single right mapping and are refused rather than clipped.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.bool_ or not np.issubdtype(images.dtype, np.number):
        raise ValueError(f"{source}: expected numeric pixels, got dtype {images.dtype}")
    if images.size == 0:
        return images.astype(np.uint8)
    if not np.isfinite(images).all():
        raise ValueError(f"{source}: pixels include NaN or infinity")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0 or hi > 255:
        raise ValueError(
            f"{source}: pixel values span {lo:g}..{hi:g}; expected 0..255 (or 0..1 floats). "
            "Rescale the file to 8 bits before training on it."
        )
    if np.issubdtype(images.dtype, np.floating) and hi <= 1.0:
        images = images * 255.0
    return np.rint(images).astype(np.uint8)


def load_ddsm_npy(data_path: str | Path, labels_path: str | Path | None = None):
    """The seed's ``*_data.npy`` / ``*_labels.npy`` pair as (uint8 N x 299 x 299, labels)."""
    data_path = Path(data_path)
    if labels_path is None:
        labels_path = data_path.with_name(data_path.name.replace("_data.npy", "_labels.npy"))
    images = np.load(data_path)
    labels = np.load(labels_path).astype(np.int32).reshape(-1)
    if images.ndim == 4:
        images = images[..., 0]
    images = as_uint8_patches(images, str(data_path))
    if len(images) != len(labels):
        raise ValueError(f"{data_path}: {len(images)} images but {len(labels)} labels")
    return images, labels


@dataclass
class DdsmFiles:
    """The seed's layout: training TFRecords plus npy validation and test sets."""

    train_records: list[Path]
    val: tuple[Path, Path] | None
    test: tuple[Path, Path] | None


def find_ddsm_files(root: str | Path) -> DdsmFiles:
    """Find TFRecords and npy pairs; ``cv*``/``val*`` is validation, ``test*`` is test."""
    root = Path(root)
    records = sorted(Path(p) for p in glob.glob(str(root / "*.tfrecord*")))
    val = test = None
    for data in sorted(root.glob("*_data.npy")):
        pair = (data, data.with_name(data.name.replace("_data.npy", "_labels.npy")))
        stem = data.name.lower()
        if stem.startswith(("cv", "val")):
            val = pair
        elif stem.startswith("test"):
            test = pair
    return DdsmFiles(records, val, test)


# --------------------------------------------------------------------------- mini-MIAS


@dataclass
class MiasFinding:
    abnormality: str  # CALC, CIRC, SPIC, MISC, ARCH, ASYM
    severity: str  # B or M
    x: int | None  # bottom-left origin, as in labels.csv
    y: int | None
    radius: int | None

    @property
    def label(self) -> int:
        calc = self.abnormality == "CALC"
        if self.severity == "M":
            return MALIGNANT_CALC if calc else MALIGNANT_MASS
        return BENIGN_CALC if calc else BENIGN_MASS

    @property
    def has_location(self) -> bool:
        return self.x is not None and self.y is not None and self.radius is not None

    def centre_rc(self, film_height: int = MIAS_FILM_SIZE) -> tuple[int, int]:
        """(row, column) in image array coordinates: the README's row = height - y."""
        assert self.x is not None and self.y is not None
        return film_height - self.y, self.x

    def circle(self, film_height: int = MIAS_FILM_SIZE) -> tuple[int, int, int]:
        """(row, column, radius) of a located finding, in image array coordinates."""
        assert self.radius is not None
        return (*self.centre_rc(film_height), self.radius)


@dataclass
class MiasFilm:
    refnum: str
    background: str
    path: Path
    findings: list[MiasFinding] = field(default_factory=list)

    @property
    def number(self) -> int:
        return int(self.refnum[3:])

    @property
    def patient(self) -> int:
        return patient_of(self.refnum)

    @property
    def label(self) -> int:
        """Film label in the five-class coding: the most severe finding (malignant first)."""
        if not self.findings:
            return NORMAL
        return max(f.label for f in self.findings)

    def load(self) -> np.ndarray:
        from PIL import Image

        with Image.open(self.path) as im:
            return np.asarray(im.convert("L"))


def patient_of(refnum: str | int) -> int:
    """mini-MIAS films come in left/right pairs: film N belongs to patient (N + 1) // 2."""
    n = int(str(refnum).removeprefix("mdb"))
    return (n + 1) // 2


def _int_or_none(value: str | None) -> int | None:
    # the original MIAS file has "*NOTE 3*" where a location is unknown
    try:
        return int(float((value or "").strip()))
    except ValueError:
        return None


def read_mias(root: str | Path) -> list[MiasFilm]:
    """Films of a mini-MIAS folder (``images/`` + ``labels.csv``), findings grouped per film."""
    root = Path(root)
    films: dict[str, MiasFilm] = {}
    with open(root / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            ref = row["refnum"].strip()
            png = (row.get("png") or f"{ref}.png").strip()
            film = films.setdefault(
                ref, MiasFilm(ref, row["background"].strip(), root / "images" / png)
            )
            abn = row["abnormality"].strip()
            if abn == "NORM":
                continue

            x, y, radius = (_int_or_none(row.get(k)) for k in ("x", "y", "radius"))
            film.findings.append(MiasFinding(abn, row["severity"].strip(), x, y, radius))
    return sorted(films.values(), key=lambda f: f.number)


def split_patients(
    patients: Iterable[int], config: SplitConfig | None = None
) -> dict[str, list[int]]:
    """Disjoint train / val / test patient lists, reproducible from the seed."""
    config = config or SplitConfig()
    ids = np.array(sorted(set(patients)))
    rng = np.random.default_rng(config.seed)
    rng.shuffle(ids)
    n = len(ids)
    n_test = max(1, round(n * config.test_fraction))
    n_val = max(1, round(n * config.val_fraction))
    return {
        "test": sorted(int(i) for i in ids[:n_test]),
        "val": sorted(int(i) for i in ids[n_test : n_test + n_val]),
        "train": sorted(int(i) for i in ids[n_test + n_val :]),
    }


def stratified_patient_split(
    films: Sequence[MiasFilm], config: SplitConfig | None = None
) -> dict[str, list[int]]:
    """Patient split stratified by whether the woman has any abnormal film."""
    config = config or SplitConfig()
    by_patient: dict[int, bool] = {}
    for film in films:
        by_patient[film.patient] = by_patient.get(film.patient, False) or bool(film.findings)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for flag in (False, True):
        group = [p for p, abnormal in by_patient.items() if abnormal == flag]
        part = split_patients(group, config)
        for k in out:
            out[k].extend(part[k])
    return {k: sorted(v) for k, v in out.items()}


def patient_folds(films: Sequence[MiasFilm], k: int, seed: int = 0) -> list[list[int]]:
    """K disjoint patient groups, stratified by abnormal/normal women, for cross-validation."""
    by_patient: dict[int, bool] = {}
    for film in films:
        by_patient[film.patient] = by_patient.get(film.patient, False) or bool(film.findings)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for flag in (False, True):
        group = np.array(sorted(p for p, a in by_patient.items() if a == flag))
        rng.shuffle(group)
        for i, p in enumerate(group):
            folds[(i + offset) % k].append(int(p))
        offset += len(group)
    return [sorted(f) for f in folds]


def crop(image: np.ndarray, centre_rc: tuple[int, int], size: int) -> np.ndarray:
    """A size x size crop centred on (row, col), zero-padded where it leaves the film."""
    r0 = int(centre_rc[0]) - size // 2
    c0 = int(centre_rc[1]) - size // 2
    out = np.zeros((size, size), dtype=image.dtype)
    h, w = image.shape
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + size, h), min(c0 + size, w)
    if rs < re and cs < ce:
        out[rs - r0 : re - r0, cs - c0 : ce - c0] = image[rs:re, cs:ce]
    return out


@dataclass
class PatchSet:
    """Patches in the seed's coding plus where each came from."""

    images: np.ndarray  # uint8 N x S x S
    labels: np.ndarray  # int32 five-class coding
    refnums: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def patients(self) -> np.ndarray:
        return np.array([patient_of(r) for r in self.refnums])

    def of_patients(self, patients: Iterable[int]) -> PatchSet:
        """The patches of these women only."""
        keep = np.isin(self.patients, np.asarray(sorted(set(patients))))
        return PatchSet(self.images[keep], self.labels[keep], list(np.asarray(self.refnums)[keep]))


def _integral(mask: np.ndarray) -> np.ndarray:
    ii = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    ii[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    return ii


def _box_fraction(ii: np.ndarray, r0: int, c0: int, size: int) -> float:
    r1, c1 = r0 + size, c0 + size
    total = ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]
    return float(total) / (size * size)


def clear_of_lesions(
    lesions: Sequence[tuple[int, int, int]], r0: int, c0: int, size: int, margin: int = 32
) -> bool:
    """Whether a tile keeps ``margin`` pixels away from every (row, col, radius) lesion circle."""
    for lr, lc, rad in lesions:
        nr = min(max(lr, r0), r0 + size)
        nc = min(max(lc, c0), c0 + size)
        if math.hypot(lr - nr, lc - nc) < rad + margin:
            return False
    return True


def film_patches(
    film: MiasFilm, config: PatchConfig, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[int]]:
    """Lesion-centred jittered crops and normal tiles from inside the breast of one film.

    Normal tiles come from normal films and from lesion films away from every lesion;
    films with a finding that has no coordinates give no patches (where it is is unknown).
    """
    if any(not f.has_location for f in film.findings):
        return [], []
    image = film.load()
    size = config.patch_size
    patches: list[np.ndarray] = []
    labels: list[int] = []
    h, w = image.shape
    for finding in film.findings:
        r, c = finding.centre_rc(h)
        for _ in range(config.lesion_crops):
            dr, dc = rng.integers(-config.jitter, config.jitter + 1, size=2)
            patches.append(crop(image, (r + dr, c + dc), size))
            labels.append(finding.label)
    if h < size or w < size:
        return patches, labels
    ii = _integral(breast_mask(image))
    lesions = [(*f.centre_rc(h), f.radius or 0) for f in film.findings]
    found, tries = 0, 0
    while found < config.normal_tiles_per_film and tries < 400:
        tries += 1
        r0 = int(rng.integers(0, h - size + 1))
        c0 = int(rng.integers(0, w - size + 1))
        if _box_fraction(ii, r0, c0, size) < config.min_breast_fraction:
            continue
        if not clear_of_lesions(lesions, r0, c0, size):
            continue
        patches.append(image[r0 : r0 + size, c0 : c0 + size].copy())
        labels.append(NORMAL)
        found += 1
    return patches, labels


def extract_mias_patches(
    films: Sequence[MiasFilm], config: PatchConfig | None = None, seed: int | None = None
) -> PatchSet:
    """The project's patch extraction: 299 x 299 patches in the seed's coding."""
    config = config or PatchConfig()
    rng = np.random.default_rng(config.seed if seed is None else seed)
    return _patch_set(((film, rng) for film in films), config)


def mias_film_patches(root: str | Path, config: PatchConfig | None = None) -> PatchSet:
    """Patches of every film, each film cut with its own seed.

    So a film's patches do not depend on which other films share its set, and one
    extraction serves every fold of a cross-validation.
    """
    config = config or PatchConfig()
    own_seeds = (
        (film, np.random.default_rng([config.seed, film.number])) for film in read_mias(root)
    )
    return _patch_set(own_seeds, config)


def _patch_set(
    cuts: Iterable[tuple[MiasFilm, np.random.Generator]], config: PatchConfig
) -> PatchSet:
    """Every film's patches, cut with its generator, stacked in film order."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    refs: list[str] = []
    for film, rng in cuts:
        p, lab = film_patches(film, config, rng)
        images.extend(p)
        labels.extend(lab)
        refs.extend([film.refnum] * len(p))
    size = config.patch_size
    arr = np.stack(images) if images else np.zeros((0, size, size), dtype=np.uint8)
    return PatchSet(arr, np.asarray(labels, dtype=np.int32), refs)


def hold_out_patients(
    films: Sequence[MiasFilm], patients: Iterable[int], fraction: float, seed: int = 0
) -> dict[str, list[int]]:
    """Split ``patients`` into train and val women, stratified by any abnormal film."""
    chosen = set(patients)
    abnormal: dict[int, bool] = {}
    for film in films:
        if film.patient in chosen:
            abnormal[film.patient] = abnormal.get(film.patient, False) or bool(film.findings)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {"train": [], "val": []}
    for flag in (False, True):
        group = np.array(sorted(p for p, a in abnormal.items() if a == flag))
        rng.shuffle(group)
        n_val = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
        out["val"].extend(int(p) for p in group[:n_val])
        out["train"].extend(int(p) for p in group[n_val:])
    return {k: sorted(v) for k, v in out.items()}


def mias_split_patches(
    root: str | Path,
    patch_config: PatchConfig | None = None,
    split_config: SplitConfig | None = None,
) -> tuple[dict[str, PatchSet], dict[str, list[int]]]:
    """Patient-split mini-MIAS patches: {"train", "val", "test"} and the patient lists."""
    patch_config = patch_config or PatchConfig()
    films = read_mias(root)
    split_config = split_config or SplitConfig()
    if split_config.folds > 1:
        folds = patient_folds(films, split_config.folds, split_config.seed)
        k, i = split_config.folds, split_config.fold
        split = {
            "train": sorted(p for j, f in enumerate(folds) if j not in (i, (i + 1) % k) for p in f),
            "val": folds[(i + 1) % k],
            "test": folds[i],
        }
    else:
        split = stratified_patient_split(films, split_config)
    sets = {}
    for i, (name, patients) in enumerate(split.items()):
        chosen = [f for f in films if f.patient in set(patients)]
        sets[name] = extract_mias_patches(chosen, patch_config, seed=patch_config.seed + i)
    return sets, split


def is_mias_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / "labels.csv").is_file() and (path / "images").is_dir()


# --------------------------------------------------------------------------- tf.data


def augment_layers(seed: int) -> Any:
    """Flips, small rotations (+-0.05 turn, about 18 degrees), reflect fill."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed + 1),
        ],
        name="augment",
    )


def make_dataset(
    source: tf.data.Dataset | tuple[np.ndarray, np.ndarray],
    *,
    target: str,
    preprocessing: str,
    input_size: int = 299,
    batch_size: int = 32,
    augment: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of (preprocessed float32 [B, S, S, 3], float32 binary target [B]).

    Grayscale is replicated to three channels as pixel values: no colour map.
    ``source`` yields uint8 ``[H, W]`` or ``[H, W, 1]`` images with five-class labels.
    """
    import tensorflow as tf

    if isinstance(source, tuple):
        images, labels = source
        images = as_uint8_patches(images)
        ds = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, dtype=np.int32)))
        n = len(labels)
    else:
        ds = source
        n = 2048
    malignant = target == "malignant"
    if target not in ("abnormal", "malignant"):
        raise ValueError(f"unknown target {target!r}")

    def to_example(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.cast(image, tf.float32)
        if image.shape.rank == 2:
            image = image[..., tf.newaxis]
        if image.shape[0] != input_size or image.shape[1] != input_size:
            image = tf.image.resize(image, (input_size, input_size), antialias=True)
        image = tf.image.grayscale_to_rgb(image)
        if malignant:
            y = tf.cast((label == 3) | (label == 4), tf.float32)
        else:
            y = tf.cast(label != 0, tf.float32)
        return image, y

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(min(n, 4096), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)
    if augment:
        layers = augment_layers(seed)

        def aug(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x = layers(x, training=True)
            b = tf.shape(x)[0]
            brightness = tf.random.uniform((b, 1, 1, 1), -20.0, 20.0)
            contrast = tf.random.uniform((b, 1, 1, 1), 0.85, 1.15)
            mean = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
            x = (x - mean) * contrast + mean + brightness
            return tf.clip_by_value(x, 0.0, 255.0), y

        ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: (preprocess(x, preprocessing), y))
    return ds.prefetch(tf.data.AUTOTUNE)
