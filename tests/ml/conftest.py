"""Fixtures for ml tests: tiny data in the seed's formats, tiny models, shared data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ml.config import mias_dir  # noqa: E402

needs_mias = pytest.mark.skipif(
    not (mias_dir() / "labels.csv").is_file(),
    reason=f"mini-MIAS not found at {mias_dir()} (set MAMMO_SHARED_DIR to the shared folder)",
)


def random_patches(n: int, seed: int = 0, size: int = 299) -> tuple[np.ndarray, np.ndarray]:
    """Uint8 patches; labels cycle through the five classes. Abnormal ones get a bright disc."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 90, size=(n, size, size), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % 5
    rr, cc = np.mgrid[0:size, 0:size]
    for i in np.flatnonzero(labels):
        r, c = rng.integers(size // 4, 3 * size // 4, size=2)
        images[i][(rr - r) ** 2 + (cc - c) ** 2 < (size // 8) ** 2] = 230
    return images, labels


def write_tfrecord(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """The Kaggle DDSM format: raw uint8 bytes in `image`, `label`, `label_normal`."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for image, label in zip(images, labels, strict=True):
            feature = {
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                "label_normal": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(label != 0)])
                ),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


@pytest.fixture(autouse=True)
def patch_cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs started by tests cache extracted patches under tmp, not in the repository."""
    monkeypatch.setenv("MAMMO_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def ddsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny copy of the seed's layout: two training TFRecords, cv10 and test10 npy pairs."""
    root = tmp_path_factory.mktemp("ddsm")
    for i in range(2):
        images, labels = random_patches(10, seed=i)
        write_tfrecord(root / f"training10_{i}.tfrecords", images, labels)
    for name, seed in (("cv10", 5), ("test10", 6)):
        images, labels = random_patches(10, seed=seed)
        np.save(root / f"{name}_data.npy", images[..., None])
        np.save(root / f"{name}_labels.npy", labels)
    return root


def save_tiny_artifact(model: Any, out: Path, version: str, source: str) -> Path:
    """Save a tiny 64-pixel custom CNN as an artifact, with the manifest every test shares."""
    from ml.artifacts import Manifest, save_artifact

    manifest = Manifest(
        architecture="custom_cnn",
        version=version,
        target="abnormal",
        input_size=64,
        threshold=0.5,
        metrics={},
        sha256="",
        preprocessing={
            "method": "scale_0_1",
            "gradcam_layer": "conv4",
            "patch_size": 64,
            "stride": 32,
            "pixel_spacing_mm": 0.2,
            "default_long_side": 256,
            "min_breast_fraction": 0.2,
            "aggregation": "max",
            "batch_size": 16,
        },
        training_data={"source": source},
    )
    save_artifact(model, out, manifest, f"# {source}\n")
    return out


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained custom CNN saved as an artifact (input 64, no weights)."""
    import keras

    from ml.config import ModelConfig
    from ml.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig("custom_cnn", input_size=64))
    out = tmp_path_factory.mktemp("artifact")
    return save_tiny_artifact(model, out, "0.0.1", "none (untrained test model)")


def external_manifest(sha256: str) -> dict:
    """A hand-written manifest, as a vendor or another site would ship it."""
    return {
        "architecture": "external",
        "version": "acme-breast-0.3",
        "target": "malignant",
        "input_size": 48,
        "threshold": 0.4,
        "metrics": {},
        "sha256": sha256,
        "preprocessing": {
            "method": "scale_-1_1",
            "patch_size": 96,
            "stride": 48,
            "default_long_side": 256,
            "batch_size": 8,
        },
        "training_data": {
            "source": "Acme screening archive (not this site's)",
            "subjects": ["P-ACC-T1", "P-ACC-T2"],
        },
        "calibration": {"method": "threshold at 90 % sensitivity", "subjects": ["P-ACC-C1"]},
        "framework": {"keras": "3"},
    }


@pytest.fixture(scope="session")
def external_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Keras model built outside ``ml.models`` (no seed architecture, its own layer
    names, 48-pixel input), saved as a .keras file beside a hand-written manifest."""
    import json

    import keras

    from ml.artifacts import sha256_file

    keras.utils.set_random_seed(1)
    inputs = keras.Input((48, 48, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="squash")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="malignancy")(x)
    out = tmp_path_factory.mktemp("brought")
    keras.Model(inputs, outputs, name="acme").save(out / "model.keras")
    manifest = external_manifest(sha256_file(out / "model.keras"))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def write_mini_mias_like(root: Path, films: int = 12) -> Path:
    """A mini-MIAS-shaped folder of synthetic 256 px films, every third with a bright lesion."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["refnum,background,abnormality,severity,x,y,radius,png"]
    rr, cc = np.mgrid[0:256, 0:256]
    for n in range(1, films + 1):
        ref = f"mdb{n:03d}"
        img = np.where((rr - 128) ** 2 + cc**2 < 180**2, rng.integers(80, 140, (256, 256)), 0)
        if n % 3 == 0:
            x, y, r = int(rng.integers(40, 110)), int(rng.integers(60, 196)), 12
            img[(rr - (256 - y)) ** 2 + (cc - x) ** 2 < r**2] = 250
            rows.append(f"{ref},F,CIRC,{'M' if n % 2 else 'B'},{x},{y},{r},{ref}.png")
        else:
            rows.append(f"{ref},F,NORM,,,,,{ref}.png")
        Image.fromarray(img.astype(np.uint8)).save(root / "images" / f"{ref}.png")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def mini_mias_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mini-MIAS-shaped folder of 12 synthetic 256 px films (6 women), some with lesions."""
    return write_mini_mias_like(tmp_path_factory.mktemp("mias"))
