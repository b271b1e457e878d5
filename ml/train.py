"""Train one classifier and write a run directory that is also a model artifact.

    python -m ml.train --arch custom_cnn --data ../shared/data/mini-mias --target abnormal \
        --out runs/cnn-mias

The run directory holds ``config.json``, ``model.keras``, ``history.csv``, ``metrics.json``,
plots, ``manifest.json`` and ``MODEL_CARD.md``. Training sees only the training split; the
best epoch is chosen on validation AUC; the threshold is chosen on validation; the test
split is touched once, at the end.

This module is the command only (``--finalise RUN_DIR`` finishes a stopped run, ``--kfold K``
runs one per patient fold): the run is ``ml.runs``', the loop ``ml.trainer``'s, the data
``ml.training_data``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ml.config import ARCHITECTURES, TARGETS, ModelConfig, PatchConfig, SplitConfig, TrainConfig
from ml.runs import cross_validate, finalise_run, run


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=ARCHITECTURES, default="custom_cnn")
    p.add_argument("--data", required=True, help="mini-MIAS folder or DDSM folder")
    p.add_argument("--target", choices=TARGETS, default="abnormal")
    p.add_argument("--out", default=None, help="run directory (default runs/<arch>-<target>)")
    p.add_argument("--weights", default=None, help='"imagenet", a local .weights.h5, or none')
    p.add_argument("--input-size", type=int, default=299)
    p.add_argument("--internal-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--fine-tune-epochs", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--lesion-crops", type=int, default=PatchConfig.lesion_crops)
    p.add_argument("--normal-tiles", type=int, default=PatchConfig.normal_tiles_per_film)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--target-sensitivity", type=float, default=0.90)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--split-seed", type=int, default=SplitConfig.seed)
    p.add_argument("--version", default="0.0.0")
    p.add_argument(
        "--kfold", type=int, default=0, help="k-fold cross-validation by patient (mini-MIAS)"
    )
    p.add_argument("--init-from", default=None, help="artifact whose weights training starts from")
    p.add_argument(
        "--hard-negatives-from",
        default=None,
        help="artifact that mines the highest-scoring normal tiles of the training films",
    )
    p.add_argument("--hard-negatives", type=int, default=3, help="mined tiles per training film")
    p.add_argument(
        "--select-on",
        choices=("patches", "films"),
        default="patches",
        help="checkpoint and early stopping on validation patch AUC or whole-film AUC (mini-MIAS)",
    )
    p.add_argument("--verbose", type=int, default=1)
    a = p.parse_args(argv)
    weights = None if a.weights in (None, "none", "None") else a.weights
    return TrainConfig(
        model=ModelConfig(a.arch, a.input_size, weights, a.internal_size),
        patches=PatchConfig(
            patch_size=a.input_size,
            lesion_crops=a.lesion_crops,
            normal_tiles_per_film=a.normal_tiles,
        ),
        split=SplitConfig(seed=a.split_seed, folds=a.kfold),
        data=a.data,
        target=a.target,
        out_dir=a.out or f"runs/{a.arch}-{a.target}",
        epochs=a.epochs,
        batch_size=a.batch_size,
        learning_rate=a.lr,
        patience=a.patience,
        fine_tune_epochs=a.fine_tune_epochs,
        steps_per_epoch=a.steps_per_epoch,
        augment=not a.no_augment,
        target_sensitivity=a.target_sensitivity,
        seed=a.seed,
        version=a.version,
        verbose=a.verbose,
        init_from=a.init_from,
        hard_negatives_from=a.hard_negatives_from,
        hard_negatives_per_film=a.hard_negatives,
        select_on=a.select_on,
    )


def kfold_lines(summary: dict[str, Any]) -> str:
    """What ``--kfold`` prints: the pooled estimate first, named, and per-fold AUCs as context."""
    lines = []
    if film := summary.get("film_auc"):
        lo, hi = film["ci95"]
        lines.append(
            f"film AUC, pooled out-of-fold (the project's estimator): {film['auc']:.3f} "
            f"(95% CI {lo:.3f}-{hi:.3f}, bootstrap over {film['women']} women, "
            f"{film['films']} films)"
        )
    folds = summary["per_fold_context_only"]
    for key, name in (("film_auc", "film"), ("patch_auc", "patch")):
        values = [f"{f[key]:.3f}" for f in folds if key in f]
        if values:
            lines.append(
                f"per-fold {name} AUCs (context only, not an estimate): {', '.join(values)}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(argv) if argv is not None else None
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--finalise"]:
        out = finalise_run(args[1])
    else:
        cfg = parse_args(argv)
        if cfg.split.folds > 1:
            print(kfold_lines(cross_validate(cfg)))
            return
        out = run(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["patch"]["test"]
    lo, hi = test["auc_ci95"]
    print(f"\nrun written to {out}")
    print(f"patch test AUC {test['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f})")
    if "image" in metrics:
        img = metrics["image"]["test"]
        print(
            f"image test AUC {img['auc']:.3f} (95% CI {img['auc_ci95'][0]:.3f}-{img['auc_ci95'][1]:.3f})"
        )


if __name__ == "__main__":
    main()
