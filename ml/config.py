"""Typed configuration for the ml package.

Configs are plain dataclasses so a run can be written to ``config.json`` and read back
exactly; nothing in here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Architecture = Literal["custom_cnn", "vgg16", "resnet50v2", "efficientnetv2b0"]
Target = Literal["abnormal", "malignant"]

ARCHITECTURES: tuple[str, ...] = ("custom_cnn", "vgg16", "resnet50v2", "efficientnetv2b0")
TARGETS: tuple[str, ...] = ("abnormal", "malignant")

REPO_ROOT = Path(__file__).resolve().parent.parent

# mini-MIAS films are 1024 x 1024 at 200 micrometres per pixel (the MIAS films were
# digitised at 50 um and reduced four-fold); this is the scale the shipped model learnt.
MIAS_PIXEL_SPACING_MM = 0.2


def mias_pseudonym(patient: int) -> str:
    """How a mini-MIAS woman is named on the site (``manage.py import_studies --mias``) and in
    a manifest's ``training_data.subjects`` / ``calibration.subjects``."""
    return f"MIAS-{patient:03d}"


def shared_dir() -> Path:
    """Where the shared (never committed) data lives: ``$MAMMO_SHARED_DIR`` or ``../shared``."""
    env = os.environ.get("MAMMO_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def mias_dir() -> Path:
    return shared_dir() / "data" / "mini-mias"


@dataclass
class ModelConfig:
    """What ``ml.models.build_model`` needs to build one network."""

    arch: Architecture = "custom_cnn"
    input_size: int = 299
    # None: no weights; "imagenet": Keras downloads them; anything else: a local file.
    weights: str | None = None
    # The custom CNN may resize its input internally (a Resizing layer right after the
    # input) so a 299 x 299 patch can be learnt at lower cost on a CPU. None: no resize.
    internal_size: int | None = None
    # Transfer models start with the convolutional base frozen when weights are loaded.
    freeze_base: bool = True


@dataclass
class PatchConfig:
    """How patches are cut from whole mini-MIAS films (coordinates in film pixels)."""

    patch_size: int = 299
    lesion_crops: int = 8  # jittered crops per annotated lesion
    jitter: int = 48  # maximum offset of the crop centre from the lesion centre
    normal_tiles_per_film: int = 4
    # A normal tile must lie this much inside the breast: the same rule the predictor uses to
    # pick the patches it scores (WholeImageConfig). With a stricter rule (0.75 in v1) normal
    # tiles never touched the skin line while lesion crops often did, and the model learnt
    # "background in the patch" as a sign of abnormality.
    min_breast_fraction: float = 0.2
    seed: int = 0


@dataclass
class SplitConfig:
    """Patient-level split fractions (the rest is training)."""

    val_fraction: float = 0.15
    test_fraction: float = 0.2
    seed: int = 42
    # k-fold cross-validation: with folds > 1, fold ``fold`` is the test set, the next fold
    # the validation set and the rest the training set (fractions are then ignored).
    folds: int = 0
    fold: int = 0


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    patches: PatchConfig = field(default_factory=PatchConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    data: str = ""
    target: Target = "abnormal"
    out_dir: str = "runs/latest"
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-4
    patience: int = 5
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-5
    steps_per_epoch: int | None = None  # None: one pass over the training set
    augment: bool = True
    class_weights: bool = True
    target_sensitivity: float = 0.90
    bootstrap: int = 1000
    seed: int = 1234
    version: str = "0.0.0"
    verbose: int = 1
    # Skips graph tracing, which for ResNet50V2 costs about a minute on 2 CPU cores:
    # worth it only for runs of a few steps (tests, debugging).
    run_eagerly: bool = False
    # Start from this artifact's weights instead of building a fresh network.
    init_from: str | None = None
    # Hard-negative mining (mini-MIAS): this artifact scores every normal grid tile of the
    # training films and the highest-scoring ``hard_negatives_per_film`` join the training
    # set as normal patches. Validation and test sets are never touched.
    hard_negatives_from: str | None = None
    hard_negatives_per_film: int = 3
    # What the checkpoint and early stopping watch: "patches" (validation patch AUC) or, for
    # mini-MIAS, "films" (AUC of whole validation films scored as the app scores them).
    select_on: Literal["patches", "films"] = "patches"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        model = ModelConfig(**d.pop("model", {}))
        patches = PatchConfig(**d.pop("patches", {}))
        split = SplitConfig(**d.pop("split", {}))
        return cls(model=model, patches=patches, split=split, **d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class CrossValConfig:
    """Grouped cross-validation of one training recipe over every film (see ``ml.crossval``).

    Each fold trains ``train`` from scratch; its validation women are drawn from its own
    training women, so no choice ever sees the test fold.
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    recipe: str = ""  # a short description for the report
    folds: int = 5
    repeats: int = 1
    seed: int = 0  # fold assignment of the first repeat; repeat r uses seed + r
    val_fraction: float = 0.2  # of each fold's training women, stratified by abnormal
    # A second stage: the first stage's best model mines ``train.hard_negatives_per_film``
    # normal tiles of every training film, which join the training set for this many epochs.
    hard_negative_epochs: int = 0
    aggregation: Literal["max", "mean_top3"] = "max"
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TuneConfig:
    """Nested cross-validated hyperparameter search of one recipe (see ``ml.tune``).

    ``cv`` is the base recipe and the outer folds; in each outer fold an Optuna study of
    ``trials`` trials scores every candidate by an ``inner_folds``-fold cross-validation over
    that fold's training women only, so the outer test women never take part in a choice.
    """

    cv: CrossValConfig = field(default_factory=CrossValConfig)
    trials: int = 20
    inner_folds: int = 3
    # After the nested estimate, one more study over every woman picks the configuration to
    # ship; its score is a selection figure (optimistic), never the estimate.
    final_study: bool = False
    sampler_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class WholeImageConfig:
    """How a whole film is scored from patches (see ``ml.predictor``)."""

    patch_size: int = 299
    stride: int = 150
    # Training scale in mm per pixel; images with a known spacing are resampled to it.
    pixel_spacing_mm: float = MIAS_PIXEL_SPACING_MM
    # Without a spacing, films whose longer side exceeds this are shrunk to it (the
    # mini-MIAS film geometry); smaller images are taken to be at training scale already.
    default_long_side: int = 1024
    min_breast_fraction: float = 0.2  # a patch is scored when this much of it is breast
    aggregation: Literal["max", "mean_top3"] = "max"
    batch_size: int = 16
