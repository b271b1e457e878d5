"""Inference benchmark: one command, one table row per architecture.

    python benchmarks/inference.py                 # 299 px, the three architectures + shipped
    python benchmarks/inference.py --size 64 --arch custom_cnn --repeats 1   # quick check

Columns: parameters, artifact size (the saved .keras file), images per second at batch 1
and 16 (``predict_on_batch``, the worker's path) and at batch 1 through ``model.predict``
(what a naive worker would do), Grad-CAM seconds per image with tf-keras-vis (one image a
call) and with the fast compiled path (batch 16), forward + Grad-CAM in forward passes
(the fast path's time over ``predict_on_batch``'s on the same batch of 16, the two calls
alternated so machine load hits both alike; target <= 1.2), ``model.predict``'s slowdown
at batch 1 against ``predict_on_batch``, and peak resident memory. Each architecture runs
in its own process so its peak memory is its own. Weights are random
(``weights=None``): speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ml.config import Architecture

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up: tracing and allocation are not what a long-running worker pays
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n_images * repeats / (time.perf_counter() - start)


def _alternated(fn_a, fn_b, rounds: int) -> float:
    """Seconds of ``fn_a`` over seconds of ``fn_b``, calls alternated after a warm-up each."""
    fn_a(), fn_b()
    spent = [0.0, 0.0]
    for _ in range(rounds):
        for i, fn in enumerate((fn_a, fn_b)):
            start = time.perf_counter()
            fn()
            spent[i] += time.perf_counter() - start
    return spent[0] / spent[1]


def measure(arch: Architecture, size: int, repeats: int, artifact: str | None = None) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from ml.config import ModelConfig
    from ml.gradcam import gradcam_reference, predict_and_gradcam
    from ml.models import build_model

    row: dict = {"arch": arch, "size": size}
    if artifact:
        from ml.artifacts import load_model

        model, manifest = load_model(artifact)
        size = manifest.input_size
        row.update(arch=f"shipped {manifest.architecture}", size=size)
        row["artifact_mb"] = (Path(artifact) / manifest.model_file).stat().st_size / 1e6
    else:
        model = build_model(ModelConfig(arch, input_size=size))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            model.save(path)
            row["artifact_mb"] = path.stat().st_size / 1e6
    row["params"] = model.count_params()
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 1, (1, size, size, 3)).astype(np.float32)
    x16 = rng.uniform(0, 1, (16, size, size, 3)).astype(np.float32)
    row["ips_b1"] = _rate(lambda: model.predict_on_batch(x1), 1, repeats * 4)
    row["ips_b16"] = _rate(lambda: model.predict_on_batch(x16), 16, repeats)
    row["ips_predict_b1"] = _rate(lambda: model.predict(x1, verbose=0), 1, repeats * 4)
    row["gradcam_tfkv_s"] = 1 / _rate(lambda: gradcam_reference(model, x1), 1, repeats)
    row["gradcam_fast_s"] = 1 / _rate(lambda: predict_and_gradcam(model, x16), 16, repeats)
    row["cam_passes"] = _alternated(
        lambda: predict_and_gradcam(model, x16), lambda: model.predict_on_batch(x16), repeats * 2
    )
    row["predict_slowdown"] = row["ips_b1"] / row["ips_predict_b1"]
    if artifact:
        from ml.config import mias_dir
        from ml.predictor import Predictor

        predictor = Predictor(model, manifest)
        film_path = mias_dir() / "images" / "mdb028.png"
        if film_path.is_file():
            from PIL import Image

            film = np.asarray(Image.open(film_path))
        else:
            film = (rng.uniform(0, 1, (1024, 1024)) * 200).astype(np.uint8)
            film[:, 600:] = 0
        row["seconds_per_film"] = 1 / _rate(lambda: predictor.predict_images([film]), 1, repeats)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def table(rows: list[dict]) -> str:
    head = (
        f"| {'model':<20} | {'px':>4} | {'params':>10} | {'file MB':>7} | {'img/s b1':>8} | "
        f"{'img/s b16':>9} | {'predict() b1':>12} | {'predict() x':>11} | {'CAM tfkv s':>10} | "
        f"{'CAM fast s':>10} | {'fwd+CAM passes':>14} | {'peak MB':>7} |"
    )
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        lines.append(
            f"| {r['arch']:<20} | {r['size']:>4} | {r['params']:>10,} | {r['artifact_mb']:>7.1f} | "
            f"{r['ips_b1']:>8.2f} | {r['ips_b16']:>9.2f} | {r['ips_predict_b1']:>12.2f} | "
            f"{r['predict_slowdown']:>11.1f} | {r['gradcam_tfkv_s']:>10.3f} | "
            f"{r['gradcam_fast_s']:>10.3f} | {r['cam_passes']:>14.2f} | {r['peak_rss_mb']:>7.0f} |"
        )
    films = [r for r in rows if "seconds_per_film" in r]
    for r in films:
        lines.append(
            f"\n{r['arch']}: {r['seconds_per_film']:.2f} s per 1024x1024 film "
            "(whole-image scoring with Grad-CAM)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", nargs="*", default=["custom_cnn", "vgg16", "resnet50v2"])
    p.add_argument("--size", type=int, default=299)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-shipped", action="store_true", help="skip the shipped artifact row")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--artifact", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(measure(a.one, a.size, a.repeats, a.artifact)))
        return
    jobs: list[tuple[str, str | None]] = [(arch, None) for arch in a.arch]
    if not a.no_shipped:
        from ml.artifacts import DEFAULT_ARTIFACT

        if (DEFAULT_ARTIFACT / "manifest.json").is_file():
            jobs.append(("shipped", str(DEFAULT_ARTIFACT)))
    rows = []
    for arch, artifact in jobs:
        cmd = [sys.executable, __file__, "--one", arch, "--size", str(a.size)]
        cmd += ["--repeats", str(a.repeats)]
        if artifact:
            cmd += ["--artifact", artifact]
        print(f"measuring {arch} ...", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    import tensorflow as tf

    print(
        f"\nInference on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"TensorFlow {tf.__version__}, weights none, 299x299 patches unless stated\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
