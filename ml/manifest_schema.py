"""What a manifest must state before the app will run a model, and what the model file says.

A model brought from elsewhere (a vendor's, one trained on another machine) is run by the
same predictor as the seed's: patches of 0..255 grayscale, replicated to three channels,
resized to ``input_size`` and scaled by ``preprocessing.method``; the score is one sigmoid
unit whose Dense layer Grad-CAM reads. ``check_manifest`` refuses a manifest that leaves any
of that unsaid, naming the field; ``check_model_file`` reads the Keras 3 archive's
``config.json`` from the zip (no TensorFlow, so the web process may call it) and refuses a
model whose input or output disagrees with the manifest.

The women a model was trained and calibrated on are named in ``training_data.subjects`` and
``calibration.subjects`` (lists of the site's patient pseudonyms, e.g. ``MIAS-012``), so
figures measured on the site's own screens can leave them out.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

from ml.artifacts import ArtifactError
from ml.config import ARCHITECTURES, TARGETS
from ml.models import PREPROCESSING_METHODS

# A model not built by ml.models: the manifest's preprocessing says how to feed it.
EXTERNAL = "external"
KNOWN_ARCHITECTURES: tuple[str, ...] = (*ARCHITECTURES, EXTERNAL)
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 2048
VERSION_MAX_LENGTH = 40  # the app stores it in a 40-character column
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_manifest(data: dict[str, Any]) -> None:
    """Raise ``ArtifactError`` naming the first field that is missing or wrong."""
    for check in (_architecture, _version, _target, _input_size, _threshold, _sha256):
        check(data)
    _preprocessing(data)
    _subjects(data, "training_data")
    _subjects(data, "calibration")
    claimed = data.get("evidence", {})
    if not isinstance(claimed, dict):
        raise _field("evidence", "must be an object (or absent: the model starts unvalidated)")
    if claimed.get("target", data["target"]) != data["target"]:
        raise _field(
            "evidence.target", f"is {claimed['target']!r} but 'target' is {data['target']!r}"
        )


def subjects(manifest_data: dict[str, Any]) -> dict[str, list[str]]:
    """The pseudonyms of the women the model was trained on and calibrated on."""
    return {
        block: list((manifest_data.get(block) or {}).get("subjects") or [])
        for block in ("training_data", "calibration")
    }


def _field(name: str, problem: str) -> ArtifactError:
    return ArtifactError(f"manifest field {name!r} {problem}")


def _architecture(data: dict[str, Any]) -> None:
    if data.get("architecture") not in KNOWN_ARCHITECTURES:
        raise _field(
            "architecture",
            f"is {data.get('architecture')!r}; expected one of {', '.join(KNOWN_ARCHITECTURES)}",
        )


def _version(data: dict[str, Any]) -> None:
    value = data.get("version")
    if not isinstance(value, str) or not value.strip() or len(value) > VERSION_MAX_LENGTH:
        raise _field("version", f"must be a name of 1 to {VERSION_MAX_LENGTH} characters")


def _target(data: dict[str, Any]) -> None:
    if data.get("target") not in TARGETS:
        raise _field(
            "target",
            f"is {data.get('target')!r}; expected {' or '.join(TARGETS)} "
            "(what a positive score means)",
        )


def _input_size(data: dict[str, Any]) -> None:
    value = data.get("input_size")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _field("input_size", "is missing or not a whole number of pixels")
    if not MIN_INPUT_SIZE <= value <= MAX_INPUT_SIZE:
        raise _field("input_size", f"is {value}; expected {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE}")


def _threshold(data: dict[str, Any]) -> None:
    value = data.get("threshold")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _field("threshold", "must be a number from 0 to 1")


def _sha256(data: dict[str, Any]) -> None:
    if not isinstance(data.get("sha256"), str) or not _SHA256.fullmatch(data["sha256"]):
        raise _field("sha256", "must be the model file's sha256 (64 lower-case hex digits)")


def _preprocessing(data: dict[str, Any]) -> None:
    block = data.get("preprocessing")
    if not isinstance(block, dict):
        raise _field("preprocessing", "is missing or not an object")
    method = block.get("method")
    if method is None and data["architecture"] != EXTERNAL:
        return  # the seed's older artifacts: the predictor's default (scale_0_1)
    if method not in PREPROCESSING_METHODS:
        raise _field(
            "preprocessing.method",
            f"is {method!r}; expected one of {', '.join(PREPROCESSING_METHODS)}",
        )
    for key in ("patch_size", "stride", "batch_size"):
        value = block.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _field(f"preprocessing.{key}", "must be a whole number")
        if isinstance(value, int) and value < 1:
            raise _field(f"preprocessing.{key}", "must be at least 1")


def _subjects(data: dict[str, Any], block: str) -> None:
    value = data.get(block, {})
    if not isinstance(value, dict):
        raise _field(block, "must be an object")
    people = value.get("subjects", [])
    if not isinstance(people, list) or not all(isinstance(p, str) and p for p in people):
        raise _field(f"{block}.subjects", "must be a list of patient pseudonyms")


# --- The model file --------------------------------------------------------------------


def check_model_file(path: str | Path, input_size: int, gradcam_layer: str | None = None) -> None:
    """Refuse a model file that is not a Keras 3 archive taking ``input_size`` square
    three-channel patches and giving one sigmoid probability from a Dense layer, or that
    lacks the layer the manifest names for Grad-CAM."""
    config = _archive_config(Path(path))
    layers = {layer.get("name") or layer["config"].get("name"): layer for layer in _layers(config)}
    if gradcam_layer and gradcam_layer not in layers:
        raise ArtifactError(
            f"manifest field 'preprocessing.gradcam_layer' names {gradcam_layer!r}, "
            "which the model file has no layer called"
        )
    shape = _input_shape(config, layers)
    if list(shape[1:]) != [input_size, input_size, 3]:
        raise ArtifactError(
            f"model file takes input {_shape_text(shape)}; manifest field 'input_size' says "
            f"{input_size}, so expected (None, {input_size}, {input_size}, 3)"
        )
    head = _output_layer(config, layers)
    head_cfg = head.get("config", {})
    if head.get("class_name") != "Dense" or head_cfg.get("units") != 1:
        raise ArtifactError(
            f"model file's output layer is {head.get('class_name')} "
            f"{head_cfg.get('name', '')!r}; expected a Dense layer of one unit"
        )
    if head_cfg.get("activation") != "sigmoid":
        raise ArtifactError(
            f"model file's output layer has activation {head_cfg.get('activation')!r}; "
            "expected sigmoid (the score is a probability)"
        )


def _archive_config(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ArtifactError(
            f"model file {path.name} is not a Keras 3 .keras archive: {exc}"
        ) from exc
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ArtifactError(f"model file {path.name} has no model config")
    return config


def _layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    layers = config["config"].get("layers")
    if not isinstance(layers, list) or not layers:
        raise ArtifactError(f"model file is a {config.get('class_name')} with no layer list")
    return [layer for layer in layers if isinstance(layer, dict) and "config" in layer]


def _endpoints(config: dict[str, Any], key: str) -> list[str]:
    """Layer names of a functional model's inputs or outputs (one or several nodes)."""
    nodes = config["config"].get(key)
    if not nodes:
        return []
    if isinstance(nodes[0], str):
        nodes = [nodes]
    return [node[0] for node in nodes]


def _input_shape(config: dict[str, Any], layers: dict[str, dict[str, Any]]) -> list[Any]:
    names = _endpoints(config, "input_layers")
    if len(names) > 1:
        raise ArtifactError(f"model file has {len(names)} inputs; expected one image input")
    if names:
        layer = layers.get(names[0], {})
    else:
        layer = next((x for x in layers.values() if x.get("class_name") == "InputLayer"), {})
    shape = layer.get("config", {}).get("batch_shape") or config["config"].get("build_input_shape")
    if not isinstance(shape, list) or len(shape) != 4:
        raise ArtifactError(f"model file's input shape {_shape_text(shape)} is not an image batch")
    return shape


def _output_layer(config: dict[str, Any], layers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    names = _endpoints(config, "output_layers")
    if len(names) > 1:
        raise ArtifactError(f"model file has {len(names)} outputs; expected one probability")
    return layers[names[0]] if names else list(layers.values())[-1]


def _shape_text(shape: Any) -> str:
    if not isinstance(shape, list):
        return repr(shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
