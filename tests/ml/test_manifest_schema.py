"""The manifest a brought model must carry, and the model-file checks that need no TensorFlow."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ml.artifacts import DEFAULT_ARTIFACT, ArtifactError, read_manifest_data
from ml.manifest_schema import check_manifest, check_model_file, subjects
from ml.models import PREPROCESSING_METHODS, preprocess
from tests.ml.conftest import external_manifest

VALID = external_manifest("0" * 64)


def changed(path: str, value: object) -> dict:
    """VALID with one dotted field set (or removed when ``value`` is ...)."""
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    block = data
    for key in parents:
        block = block[key]
    if value is ...:
        del block[last]
    else:
        block[last] = value
    return data


def test_a_complete_external_manifest_passes() -> None:
    check_manifest(VALID)


@pytest.mark.parametrize(
    ("path", "value", "names"),
    [
        ("input_size", ..., "'input_size'"),
        ("input_size", "224", "'input_size'"),
        ("input_size", 4, "'input_size'"),
        ("target", "cancer", "'target'"),
        ("target", ..., "'target'"),
        ("architecture", "efficientnet", "'architecture'"),
        ("preprocessing.method", "imagenet_torch", "'preprocessing.method'"),
        ("preprocessing.method", ..., "'preprocessing.method'"),
        ("preprocessing", ..., "'preprocessing'"),
        ("preprocessing.patch_size", 0, "'preprocessing.patch_size'"),
        ("threshold", 1.5, "'threshold'"),
        ("sha256", "abc", "'sha256'"),
        ("version", "", "'version'"),
        ("version", "x" * 41, "'version'"),
        ("training_data.subjects", "P-1,P-2", "'training_data.subjects'"),
        ("calibration.subjects", [1, 2], "'calibration.subjects'"),
        ("evidence", [], "'evidence'"),
        ("evidence", {"target": "abnormal"}, "'evidence.target'"),
    ],
)
def test_a_bad_field_is_refused_by_name(path: str, value: object, names: str) -> None:
    with pytest.raises(ArtifactError, match=names):
        check_manifest(changed(path, value))


def test_the_seed_architectures_may_leave_the_method_to_the_predictor_default() -> None:
    data = changed("preprocessing.method", ...) | {"architecture": "custom_cnn"}
    check_manifest(data)


def test_the_shipped_manifest_and_model_file_pass() -> None:
    data = read_manifest_data(DEFAULT_ARTIFACT)
    check_manifest(data)
    check_model_file(DEFAULT_ARTIFACT / data["model_file"], data["input_size"])


def test_subjects_are_read_from_both_blocks_and_default_to_none() -> None:
    assert subjects(VALID) == {
        "training_data": ["P-ACC-T1", "P-ACC-T2"],
        "calibration": ["P-ACC-C1"],
    }
    assert subjects({"training_data": {"source": "x"}}) == {"training_data": [], "calibration": []}


def test_raw_pixels_are_fed_unchanged() -> None:
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    assert "raw_0_255" in PREPROCESSING_METHODS
    assert np.array_equal(preprocess(x, "raw_0_255"), x)


def test_a_brought_model_file_matching_its_manifest_passes(external_artifact: Path) -> None:
    check_model_file(external_artifact / "model.keras", 48)


def test_the_seed_models_pass_the_model_file_check(tiny_artifact: Path) -> None:
    check_model_file(tiny_artifact / "model.keras", 64)


def test_an_input_size_the_file_disagrees_with_is_refused(external_artifact: Path) -> None:
    with pytest.raises(
        ArtifactError, match=r"takes input \(None, 48, 48, 3\).*'input_size' says 64"
    ):
        check_model_file(external_artifact / "model.keras", 64)


def test_a_gradcam_layer_the_file_lacks_is_refused(external_artifact: Path) -> None:
    check_model_file(external_artifact / "model.keras", 48, "features")
    with pytest.raises(ArtifactError, match="'preprocessing.gradcam_layer' names 'conv4'"):
        check_model_file(external_artifact / "model.keras", 48, "conv4")


def test_a_file_that_is_not_a_keras_archive_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.keras").write_bytes(b"HDF5 or anything else")
    with pytest.raises(ArtifactError, match="not a Keras 3 .keras archive"):
        check_model_file(tmp_path / "model.keras", 48)


def _saved(tmp_path: Path, build: str) -> Path:
    import keras

    inputs = keras.Input((48, 48, 1 if build == "gray" else 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    if build == "softmax":
        outputs = keras.layers.Dense(2, activation="softmax")(x)
    elif build == "linear":
        outputs = keras.layers.Dense(1)(x)
    else:
        outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    keras.Model(inputs, outputs).save(tmp_path / "model.keras")
    return tmp_path / "model.keras"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        ("softmax", "expected a Dense layer of one unit"),
        ("linear", "activation 'linear'; expected sigmoid"),
        ("gray", r"takes input \(None, 48, 48, 1\)"),
    ],
)
def test_a_model_the_predictor_cannot_read_is_refused(
    tmp_path: Path, build: str, message: str
) -> None:
    with pytest.raises(ArtifactError, match=message):
        check_model_file(_saved(tmp_path, build), 48)


def test_the_check_reads_the_archive_without_tensorflow(external_artifact: Path) -> None:
    """Run in a fresh interpreter: the web process may call it and must not load TensorFlow."""
    import subprocess
    import sys

    code = (
        "import sys; from ml.manifest_schema import check_model_file;"
        f"check_model_file({str(external_artifact / 'model.keras')!r}, 48);"
        "print(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_a_manifest_copied_in_by_hand_is_read_as_written(
    external_artifact: Path, tmp_path: Path
) -> None:
    copy_dir = tmp_path / "copy"
    shutil.copytree(external_artifact, copy_dir)
    assert read_manifest_data(copy_dir) == json.loads((copy_dir / "manifest.json").read_text())


def test_the_shipped_manifest_names_the_women_it_learnt_from_but_not_its_test_women() -> None:
    data = read_manifest_data(DEFAULT_ARTIFACT)
    named = subjects(data)
    counts = data["training_data"]["patients"]
    assert (len(named["training_data"]), len(named["calibration"])) == (
        counts["train"],
        counts["val"],
    )
    tested = {f"MIAS-{p:03d}" for p in data["training_data"]["test_patients"]}
    assert tested.isdisjoint(named["training_data"]) and tested.isdisjoint(named["calibration"])
