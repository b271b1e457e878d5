import json
import shutil
from pathlib import Path

import pytest

from ml.artifacts import (
    DEFAULT_ARTIFACT,
    ArtifactError,
    Manifest,
    load_manifest,
    verify_checksum,
)


@pytest.fixture
def artifact_copy(tiny_artifact: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_artifact, tmp_path / "copy"))


def test_manifest_round_trips(tiny_artifact: Path):
    manifest = load_manifest(tiny_artifact)
    assert isinstance(manifest, Manifest)
    assert manifest.architecture == "custom_cnn" and manifest.input_size == 64
    assert len(manifest.sha256) == 64
    assert verify_checksum(tiny_artifact) == manifest


def test_a_tampered_model_file_is_refused(artifact_copy: Path):
    with open(artifact_copy / "model.keras", "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ArtifactError, match="checksum"):
        verify_checksum(artifact_copy)


def test_a_missing_model_file_is_refused(artifact_copy: Path):
    (artifact_copy / "model.keras").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        verify_checksum(artifact_copy)


def test_a_missing_manifest_is_refused(tmp_path: Path):
    with pytest.raises(ArtifactError, match="no manifest"):
        load_manifest(tmp_path)


def test_a_manifest_without_required_fields_is_refused(artifact_copy: Path):
    path = artifact_copy / "manifest.json"
    data = json.loads(path.read_text())
    del data["sha256"]
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="sha256"):
        load_manifest(artifact_copy)


def test_a_corrupt_manifest_is_refused(artifact_copy: Path):
    (artifact_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError):
        load_manifest(artifact_copy)


def test_the_shipped_model_is_a_complete_artifact():
    manifest = verify_checksum(DEFAULT_ARTIFACT)
    assert manifest.architecture == "custom_cnn"
    assert manifest.input_size == 299
    assert (DEFAULT_ARTIFACT / "MODEL_CARD.md").is_file()
    assert "not for clinical use" in (DEFAULT_ARTIFACT / "MODEL_CARD.md").read_text()
    assert 0.0 < manifest.threshold < 1.0
    assert "auc_ci95" in manifest.metrics["patch"]["test"]
