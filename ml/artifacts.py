"""Versioned model artifacts: a directory with the Keras model, ``manifest.json`` and a card.

The manifest carries everything inference needs besides the weights (architecture, input
size, preprocessing, threshold) and the sha256 of the model file, so a tampered or
truncated file is refused before Keras ever parses it.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.config import REPO_ROOT

MANIFEST = "manifest.json"
MODEL_FILE = "model.keras"
MODEL_CARD = "MODEL_CARD.md"
HISTORY_FILE = "history.csv"  # the training run's epochs, kept beside the model

DEFAULT_ARTIFACT: Path = REPO_ROOT / "models" / "custom_cnn-mias-abnormal-v1"


class ArtifactError(Exception):
    """The artifact is missing, incomplete, or does not match its manifest."""


@dataclass
class Manifest:
    architecture: str
    version: str
    target: str
    input_size: int
    threshold: float
    metrics: dict[str, Any]
    sha256: str
    preprocessing: dict[str, Any]
    training_data: dict[str, Any]
    model_file: str = MODEL_FILE
    created: str = ""
    framework: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    intended_use: str = "Research only. Not a medical device; not for clinical use."
    # what the measurements allow the app to show (ml.evidence); empty on older artifacts
    evidence: dict[str, Any] = field(default_factory=dict)
    # how the threshold and any calibration were set, and on whose films ("subjects")
    calibration: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        } - set(d)
        if missing:
            names = ", ".join(repr(name) for name in sorted(missing))
            raise ArtifactError(f"manifest lacks field(s) {names}")
        return cls(**{k: v for k, v in d.items() if k in known})


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_path(path: str | Path) -> Path:
    path = Path(path)
    return path / MANIFEST if path.is_dir() else path


def load_manifest(path: str | Path) -> Manifest:
    """Read the manifest of an artifact directory (or a manifest file itself)."""
    return Manifest.from_dict(read_manifest_data(path))


def read_manifest_data(path: str | Path) -> dict[str, Any]:
    """The manifest as written, before any field is checked (``ml.manifest_schema``)."""
    mpath = _manifest_path(path)
    if not mpath.is_file():
        raise ArtifactError(f"no manifest at {mpath}")
    try:
        data = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"unreadable manifest {mpath}: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"manifest {mpath} is not an object")
    return data


def verify_checksum(path: str | Path) -> Manifest:
    """Check the model file against the manifest's sha256; raise ArtifactError otherwise."""
    manifest = load_manifest(path)
    model_path = _manifest_path(path).parent / manifest.model_file
    if not model_path.is_file():
        raise ArtifactError(f"model file missing: {model_path}")
    actual = sha256_file(model_path)
    if actual != manifest.sha256:
        raise ArtifactError(
            f"checksum mismatch for {model_path}: manifest {manifest.sha256[:12]}…, "
            f"file {actual[:12]}…"
        )
    return manifest


def model_path(artifact_dir: str | Path) -> Path:
    return Path(artifact_dir) / load_manifest(artifact_dir).model_file


def save_artifact(
    model: Any,
    artifact_dir: str | Path,
    manifest: Manifest,
    model_card: str | None = None,
) -> Manifest:
    """Write model, manifest (with the model's sha256) and card into ``artifact_dir``."""
    import keras

    out = Path(artifact_dir)
    out.mkdir(parents=True, exist_ok=True)
    mfile = out / manifest.model_file
    model.save(mfile)
    manifest.sha256 = sha256_file(mfile)
    if not manifest.framework:
        import tensorflow as tf

        manifest.framework = {"keras": keras.__version__, "tensorflow": tf.__version__}
    (out / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    if model_card is not None:
        (out / MODEL_CARD).write_text(model_card)
    return manifest


def write_manifest(artifact_dir: str | Path, manifest: Manifest) -> None:
    (Path(artifact_dir) / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")


def load_model(artifact_dir: str | Path) -> tuple[Any, Manifest]:
    """Verify, then load the Keras model (``compile=False``: inference only)."""
    import keras

    manifest = verify_checksum(artifact_dir)
    path = Path(artifact_dir) / manifest.model_file
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types on a corrupt file
        raise ArtifactError(f"cannot load {path}: {exc}") from exc
    return model, manifest


def read_history(out: str | Path) -> dict[str, list[float]]:
    """The per-epoch figures of the run that made this artifact (its ``history.csv``)."""
    with open(Path(out) / HISTORY_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {}) if k != "epoch"}
