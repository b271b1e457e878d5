"""AI pipeline benchmark: from an uploaded study to stored scores and heatmaps, per architecture.

    python benchmarks/pipeline.py                         # the three architectures + shipped model
    python benchmarks/pipeline.py --arch custom_cnn --studies 2   # quick check

Each study is four synthetic 12-bit films (1024 x 832, as the demo cases) uploaded through
the real upload action into a throw-away database; the worker's own function
(``screening.ai.inference.score_study``) then decodes, tiles, predicts, runs Grad-CAM and writes
the heatmap and score, exactly as the Celery task does (the broker adds milliseconds, not
seconds). The first study per architecture warms up (model load, graph tracing) and is not
counted. Weights are random for the three architectures (speed does not depend on them);
the shipped row uses the trained artifact under ``models/``.

Columns: images per second (wall time of ``score_study`` over all counted images), the
pipeline's patches per second against the bare model's (``predict_on_batch`` on batches of
16 preprocessed patches, the same model in the same process, timed for 2 s before each
counted study and after the last and averaged, so machine load hits both alike; the range
shows how much the load moved meanwhile) with the target ratio of 0.8, and the mean seconds per image of each stage as stored in
``AIResult.timings``: decode (read the stored file), preprocess (intensity, scale, breast
mask, tiling), predict and Grad-CAM (one compiled pass gives both; "predict" is the image's
share of it, "gradcam" the heatmap assembly), write (render and store the heatmap PNG, on
the writer threads, overlapping the other images' writes and row updates).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
_TMP = Path(tempfile.mkdtemp(prefix="mammo-pipeline-bench-"))
os.environ["DATABASE_URL"] = f"sqlite:///{_TMP / 'bench.sqlite3'}"
os.environ["MEDIA_ROOT"] = str(_TMP / "media")
os.environ["MAMMO_VAR_DIR"] = str(_TMP / "var")
# Jobs the upload sends land in a private folder nobody consumes: this process scores them.
os.environ["CELERY_BROKER_URL"] = "filesystem://"
os.environ["CELERY_BROKER_DIR"] = str(_TMP / "broker")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mammo_portal.settings")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-not-for-production-use")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from benchmarks._films import study_files  # noqa: E402
from screening.ai import actions as ai_actions  # noqa: E402
from screening.ai import inference  # noqa: E402
from screening.intake import actions as intake_actions  # noqa: E402
from screening.models import AIResult  # noqa: E402

if TYPE_CHECKING:
    from ml.config import Architecture

STAGES = ("decode", "preprocess", "predict", "gradcam", "write")
TARGET_RATIO = 0.8  # issue 16: pipeline patches/s >= 0.8 of the bare model's batch-16 rate
ARCHITECTURES = ("custom_cnn", "vgg16", "resnet50v2")
SHIPPED = REPO / "models" / "custom_cnn-mias-abnormal-v1"


def build_artifact(arch: Architecture, size: int, out: Path) -> Path:
    """An untrained model saved the way ``ml.train`` saves a trained one."""
    from ml.artifacts import Manifest, save_artifact
    from ml.config import ModelConfig
    from ml.models import GRADCAM_LAYER, PREPROCESSING, build_model

    model = build_model(ModelConfig(arch, input_size=size))
    manifest = Manifest(
        architecture=arch,
        version=f"bench-{arch}",
        target="abnormal",
        input_size=size,
        threshold=0.5,
        metrics={},
        sha256="",
        preprocessing={
            "method": PREPROCESSING[arch],
            "gradcam_layer": GRADCAM_LAYER[arch],
            "patch_size": size,
            "stride": size // 2,
            "pixel_spacing_mm": 0.2,
            "default_long_side": 1024,
            "min_breast_fraction": 0.2,
            "aggregation": "max",
            "batch_size": 16,
        },
        training_data={"source": "none (untrained, for timing only)"},
    )
    save_artifact(model, out, manifest)
    return out


def bare_patches_per_s(model, size: int, seconds: float = 3.0) -> float:
    """The bare model's rate: ``predict_on_batch`` on batches of 16 preprocessed patches."""
    x = np.random.default_rng(0).uniform(0, 1, (16, size, size, 3)).astype(np.float32)
    model.predict_on_batch(x)  # warm
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        model.predict_on_batch(x)
        calls += 1
    return 16 * calls / (time.perf_counter() - start)


def measure(label: str, artifact: Path, admin, studies: int, first_seed: int) -> dict:
    version = ai_actions.register_model_version(admin, str(artifact), activate=True)
    inference._predictors.clear()
    wall, counted = 0.0, []
    uploaded = []
    for index in range(studies + 1):
        spec = intake_actions.StudySpec(
            accession_number=f"BENCH-{label}-{index}",
            patient_pseudonym=f"BENCH-{label}-{index}",
            synthetic=True,
        )
        uploaded.append(
            intake_actions.upload_study(admin, spec, study_files(first_seed + index)).study
        )
    bare = []
    for index, study in enumerate(uploaded):
        if index >= 1:  # after the warm-up study (the model is loaded), before each study
            predictor = inference.predictor_for(version)
            bare.append(bare_patches_per_s(predictor.model, predictor.manifest.input_size, 2.0))
        start = time.perf_counter()
        inference.score_study(study.pk, version.pk, task_id=f"bench-{study.pk}")
        elapsed = time.perf_counter() - start
        if index == 0:
            warmup = elapsed
            continue
        wall += elapsed
        counted += list(AIResult.objects.filter(image__study=study, model_version=version))
    bare.append(bare_patches_per_s(predictor.model, predictor.manifest.input_size, 2.0))
    failed = [r for r in counted if r.status != "done"]
    if failed:
        raise SystemExit(f"{label}: {len(failed)} images not scored: {failed[0].error}")
    row: dict[str, Any] = {"model": label, "images": len(counted), "warmup_s": warmup}
    row["images_per_s"] = len(counted) / wall
    row["patches_per_s"] = sum(r.timings.get("patches", 0) for r in counted) / wall
    row["bare_patches_per_s"] = float(np.mean(bare))
    row["bare_spread"] = (min(bare), max(bare))
    row["ratio"] = row["patches_per_s"] / row["bare_patches_per_s"]
    for stage in STAGES:
        row[stage] = float(np.mean([r.timings.get(stage, 0.0) for r in counted]))
    row["patches_per_image"] = float(np.mean([r.timings.get("patches", 0) for r in counted]))
    return row


def print_table(rows: list[dict]) -> None:
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads, "
        f"films 1024x832, 4 per study\n"
    )
    head = (
        "| model | images | images/s | patches/image | patches/s | bare b16 patches/s | "
        f"ratio (target {TARGET_RATIO}) | " + " | ".join(f"{s} s" for s in STAGES)
    )
    print(head + " | warm-up s |")
    print("|" + "---|" * (len(STAGES) + 8))
    for r in rows:
        stages = " | ".join(f"{r[s]:.3f}" for s in STAGES)
        lo, hi = r["bare_spread"]
        verdict = "met" if r["ratio"] >= TARGET_RATIO else "missed"
        print(
            f"| {r['model']} | {r['images']} | {r['images_per_s']:.2f} | "
            f"{r['patches_per_image']:.0f} | {r['patches_per_s']:.1f} | "
            f"{r['bare_patches_per_s']:.1f} ({lo:.1f}-{hi:.1f}) | {r['ratio']:.2f} {verdict} | "
            f"{stages} | {r['warmup_s']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="*", default=list(ARCHITECTURES))
    parser.add_argument("--studies", type=int, default=2, help="counted studies per model")
    parser.add_argument("--size", type=int, default=299, help="patch size for untrained models")
    parser.add_argument("--no-shipped", action="store_true", help="skip the shipped model")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    admin = get_user_model().objects.create_user("bench-admin", password=None)
    rows = []
    if SHIPPED.is_dir() and not args.no_shipped:
        rows.append(measure("shipped custom_cnn", SHIPPED, admin, args.studies, 100))
        print_table(rows)
    for n, arch in enumerate(args.arch):
        artifact = build_artifact(arch, args.size, _TMP / "artifacts" / arch)
        rows.append(measure(arch, artifact, admin, args.studies, 200 + 10 * n))
        print_table(rows)


if __name__ == "__main__":
    main()
