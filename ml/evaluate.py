"""Evaluate an artifact on data, at patch and at whole-image level, and write its figures.

    python -m ml.evaluate --artifact models/custom_cnn-mias-abnormal-v1 \
        --data ../shared/data/mini-mias --out runs/eval

Layouts: a mini-MIAS-like folder (``images/`` + ``labels.csv``), a DDSM folder (TFRecords
and/or ``*_data.npy`` pairs) or a single ``*_data.npy`` file. On the mini-MIAS folder the
artifact was trained on, only its test patients are used (``--split`` to change that).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml.metrics import evaluate_scores, threshold_for_sensitivity, write_plots


def evaluate_patches(model: Any, data: Any, cfg: Any, method: str, out: Path) -> dict[str, Any]:
    """Threshold from validation patches at the target sensitivity, then the test figures."""
    from ml.data import to_target
    from ml.train import predict_arrays

    p_val = predict_arrays(model, data.val[0], cfg, method)
    y_val = to_target(data.val[1], cfg.target)
    threshold = threshold_for_sensitivity(y_val, p_val, cfg.target_sensitivity)
    p_test = predict_arrays(model, data.test[0], cfg, method)
    y_test = to_target(data.test[1], cfg.target)
    val = evaluate_scores(y_val, p_val, threshold, cfg.bootstrap, data.val_groups)
    test = evaluate_scores(y_test, p_test, threshold, cfg.bootstrap, data.test_groups)
    test["plots"] = write_plots(y_test, p_test, test, out, "patch_test")
    np.savez(out / "patch_predictions.npz", y_val=y_val, p_val=p_val, y_test=y_test, p_test=p_test)
    return {
        "threshold": threshold,
        "target_sensitivity": cfg.target_sensitivity,
        "bootstrap_unit": "patient" if data.test_groups is not None else "patch",
        "validation": val,
        "test": test,
    }


def _lesions_for_target(film: Any, target: str) -> list[Any]:
    from ml.data import MALIGNANT_CALC, MALIGNANT_MASS

    found = [f for f in film.findings if f.has_location]
    if target == "malignant":
        found = [f for f in found if f.label in (MALIGNANT_CALC, MALIGNANT_MASS)]
    return found


def localisation(
    films: Sequence[Any], heatmaps: Sequence[np.ndarray], target: str
) -> dict[str, Any]:
    """Share of heatmap peaks inside an annotated lesion circle, against a random point.

    The random baseline is, per film, the share of the breast area covered by the lesion
    circles (what a point drawn uniformly inside the breast would score), averaged.
    """
    from ml.data import breast_mask

    hits, chance, n = 0, 0.0, 0
    for film, heat in zip(films, heatmaps, strict=True):
        lesions = _lesions_for_target(film, target)
        if not lesions:
            continue
        image = film.load()
        h, w = image.shape
        rr, cc = np.mgrid[0:h, 0:w]
        inside = np.zeros((h, w), bool)
        for f in lesions:
            r, c = f.centre_rc(h)
            inside |= (rr - r) ** 2 + (cc - c) ** 2 <= f.radius**2
        peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
        hits += bool(inside[peak])
        mask = breast_mask(image)
        chance += float((inside & mask).sum() / max(mask.sum(), 1))
        n += 1
    return {
        "films": n,
        "peak_in_lesion": hits / n if n else float("nan"),
        "random_point_in_lesion": chance / n if n else float("nan"),
    }


def film_scores(
    predictor: Any, films: Sequence[Any], batch: int = 4
) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Image probabilities, heatmaps and mean seconds per film."""
    probs: list[float] = []
    heats: list[np.ndarray] = []
    started = time.perf_counter()
    for i in range(0, len(films), batch):
        chunk = films[i : i + batch]
        for pred in predictor.predict_images([f.load() for f in chunk]):
            probs.append(pred.probability)
            heats.append(pred.heatmap)
    seconds = (time.perf_counter() - started) / max(len(films), 1)
    return np.asarray(probs), heats, seconds


def film_level(
    predictor: Any, root: str | Path, split: dict[str, list[int]], cfg: Any, out: Path
) -> dict[str, Any]:
    """Whole-film figures on the patient split: threshold on validation films, test films."""
    from ml.data import read_mias, to_target

    films = read_mias(root)
    val = [f for f in films if f.patient in set(split["val"])]
    test = [f for f in films if f.patient in set(split["test"])]
    p_val, _, _ = film_scores(predictor, val)
    y_val = to_target([f.label for f in val], cfg.target)
    threshold = threshold_for_sensitivity(y_val, p_val, cfg.target_sensitivity)
    p_test, heats, seconds = film_scores(predictor, test)
    y_test = to_target([f.label for f in test], cfg.target)
    groups = np.array([f.patient for f in test])
    result = evaluate_scores(y_test, p_test, threshold, cfg.bootstrap, groups)
    result["plots"] = write_plots(y_test, p_test, result, out, "image_test")
    result["seconds_per_film"] = seconds
    result["localisation"] = localisation(test, heats, cfg.target)
    return {
        "threshold": threshold,
        "aggregation": predictor.whole_image.aggregation,
        "validation_films": len(val),
        "test_films": len(test),
        "validation": evaluate_scores(y_val, p_val, threshold, cfg.bootstrap),
        "test": result,
    }


# --------------------------------------------------------------------------- model card


def _fmt(m: dict[str, Any]) -> str:
    lo, hi = m.get("auc_ci95", [float("nan")] * 2)
    return f"{m['auc']:.3f} (95% CI {lo:.3f}–{hi:.3f})"


def _row(name: str, m: dict[str, Any]) -> str:
    return (
        f"| {name} | {m['threshold']:.3f} | {m['sensitivity']:.3f} | {m['specificity']:.3f} "
        f"| {m['precision']:.3f} | {m['f1']:.3f} | {m['accuracy']:.3f} | {m['confusion_matrix']} |"
    )


def model_card(manifest: Any, history: dict[str, list[float]] | None = None) -> str:
    m = manifest.metrics
    td = manifest.training_data
    pre = manifest.preprocessing
    lines = [
        f"# Model card: {manifest.architecture}, target `{manifest.target}`, v{manifest.version}",
        "",
        "**For research only. Not a medical device and not for clinical use.** It has not been",
        "validated on any population, and its figures come from a small public film data set.",
        "",
        "## Model",
        f"- Architecture: `{manifest.architecture}` (ml/models.py), one sigmoid output.",
        f"- Input: {manifest.input_size}×{manifest.input_size}×3, grayscale replicated to three "
        f"channels, preprocessing `{pre.get('method')}`"
        + (
            f", resized inside the model to {pre['internal_size']}×{pre['internal_size']}"
            if pre.get("internal_size")
            else ""
        )
        + ".",
        f"- Target: `{manifest.target}` "
        + (
            "(any finding: label ≠ 0)."
            if manifest.target == "abnormal"
            else "(malignant: label 3 or 4)."
        ),
        f"- Created {manifest.created}; sha256 of the model file `{manifest.sha256}`.",
        "",
        "## Data and split",
        f"- {td.get('source', '')}.",
    ]
    if td.get("layout") == "mini-mias":
        p = td["patches"]
        lines += [
            f"- Split by patient ({td['split_unit']}): {td['patients']} women in train / "
            f"validation / test (split seed {td['split']['seed']}).",
            f"- Patches {p['patch_size']}×{p['patch_size']} at the films' native 0.2 mm scale: "
            f"{p['lesion_crops']} crops per annotated lesion with up to ±{p['jitter']} px "
            f"jitter, {p['normal_tiles_per_film']} normal tiles per film from inside the breast "
            f"(≥{p['min_breast_fraction']:.0%} breast, clear of lesions). Films whose finding "
            "has no coordinates give no patches.",
            "- Patch counts (labels normal, benign calc, benign mass, malignant calc, malignant "
            "mass): "
            + "; ".join(f"{k} {v['total']} {v['by_label']}" for k, v in td["patch_counts"].items())
            + ".",
        ]
        if hard := td.get("hard_negatives"):
            lines.append(
                f"- Hard negatives: {hard['added']} more normal training patches, the "
                f"{hard['per_film']} normal grid tiles per training film that `{hard['from']}` "
                "scored highest (validation and test sets untouched)."
            )
    patch = m.get("patch", {})
    if patch:
        t = patch["test"]
        lines += [
            "",
            "## Patch-level results (test split, never seen in training or model selection)",
            f"- AUC {_fmt(t)}; bootstrap resamples whole {patch['bootstrap_unit']}s.",
            f"- Validation AUC {_fmt(patch['validation'])}.",
            f"- Threshold {patch['threshold']:.3f}, chosen on validation patches for "
            f"sensitivity ≥ {patch['target_sensitivity']:.2f} (a screening choice).",
            "",
            "| operating point | threshold | sensitivity | specificity | precision | F1 | "
            "accuracy | confusion [[TN, FP], [FN, TP]] |",
            "|---|---|---|---|---|---|---|---|",
            _row("validation-chosen", t["at_threshold"]),
            _row("0.5", t["at_0_5"]),
        ]
    image = m.get("image")
    if image:
        t = image["test"]
        loc = t["localisation"]
        lines += [
            "",
            "## Whole-film results (test-split films)",
            f"- {image['test_films']} films; image score = {image['aggregation']} of the "
            f"patch probabilities over a {pre.get('patch_size')} px grid, stride "
            f"{pre.get('stride')} px, inside the breast.",
            f"- AUC {_fmt(t)} (bootstrap over women); validation films AUC "
            f"{image['validation']['auc']:.3f}.",
            f"- Threshold {image['threshold']:.3f} chosen on validation films.",
            "",
            "| operating point | threshold | sensitivity | specificity | precision | F1 | "
            "accuracy | confusion [[TN, FP], [FN, TP]] |",
            "|---|---|---|---|---|---|---|---|",
            _row("validation-chosen", t["at_threshold"]),
            _row("0.5", t["at_0_5"]),
            "",
            f"- Seconds per 1024×1024 film on the training CPU (2 cores, score and Grad-CAM): "
            f"{t['seconds_per_film']:.2f}.",
            f"- Localisation: on {loc['films']} test films with an annotated lesion the "
            f"heatmap peak fell inside a lesion circle in {loc['peak_in_lesion']:.0%} of films; "
            f"a random point inside the breast would in {loc['random_point_in_lesion']:.0%}.",
        ]
    if history and "val_auc" in history:
        key = "val_film_auc" if "val_film_auc" in history else "val_auc"
        what = "whole-film AUC" if key == "val_film_auc" else "patch AUC"
        best = int(np.argmax(history[key]))
        start = td.get("training", {}).get("init_from")
        lines += [
            "",
            "## Training",
            f"- {len(history[key])} epochs, best validation {what} "
            f"{history[key][best]:.3f} at epoch {best + 1}"
            + (f" (continued from `{start}`)" if start else "")
            + "; Adam "
            f"(learning rate {td.get('training', {}).get('learning_rate', 'n/a')}), binary "
            "cross-entropy, balanced class weights, flips/rotations/brightness/contrast "
            f"augmentation, best epoch kept by validation {what}.",
        ]
        if "train_seconds" in m:
            lines.append(f"- Training time: {m['train_seconds']:.0f} s on a shared 2-core CPU.")
    plots = list(patch.get("test", {}).get("plots", []))
    if image:
        plots += image["test"].get("plots", [])
    if plots or history:
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({name})" for name in (["training_curves.png"] if history else [])]
        lines += [f"![{name}]({name})" for name in plots]
    lines += [
        "",
        "## Limitations",
        "- mini-MIAS is small (a few hundred patches from fewer than a hundred women for "
        "training), digitised film from the 1990s, and the test split is a few dozen women:",
        "  the confidence intervals are wide and the figures do not transfer to digital",
        "  mammography, other populations or other scanners.",
        "- Normal tiles are drawn from inside the breast, lesion crops are centred on",
        "  annotated lesions: the patch task is easier than finding a lesion in a whole film.",
        "- Trained on a CPU at reduced internal resolution; not comparable to GPU-trained",
        "  VGG16/ResNet50V2 figures on DDSM.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _print_block(name: str, m: dict[str, Any]) -> None:
    print(f"\n== {name}: AUC {_fmt(m)}")
    for label, key in (("chosen threshold", "at_threshold"), ("threshold 0.5", "at_0_5")):
        r = m[key]
        print(
            f"  {label} {r['threshold']:.3f}: acc {r['accuracy']:.3f} prec {r['precision']:.3f} "
            f"rec {r['recall']:.3f} f1 {r['f1']:.3f} spec {r['specificity']:.3f} "
            f"cm {r['confusion_matrix']}"
        )
    print(m["at_threshold"]["classification_report"])


def evaluate_artifact(
    artifact: str | Path, data: str | Path, out: str | Path, split: str = "test", n_boot: int = 1000
) -> dict[str, Any]:
    from ml.config import PatchConfig
    from ml.data import (
        extract_mias_patches,
        find_ddsm_files,
        is_mias_folder,
        load_ddsm_npy,
        read_mias,
        to_target,
    )
    from ml.predictor import Predictor

    predictor = Predictor.load(artifact)
    man = predictor.manifest
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(data)
    result: dict[str, Any] = {"artifact": str(artifact), "data": str(data), "split": split}
    # patches use the patch threshold (chosen on validation patches), films the image one
    t_patch = next((v for k, v in man.thresholds.items() if k.startswith("patch_")), man.threshold)
    if is_mias_folder(data):
        films = read_mias(data)
        key = {"test": "test_patients", "val": "val_patients"}.get(split)
        if key and key in man.training_data:
            keep = set(man.training_data[key])
            films = [f for f in films if f.patient in keep]
        pcfg = PatchConfig(**man.training_data.get("patches", {}))
        patches = extract_mias_patches(films, pcfg, seed=pcfg.seed + 2)
        p = predictor.predict_patches(patches.images)
        y = to_target(patches.labels, man.target)
        result["patch"] = evaluate_scores(y, p, t_patch, n_boot, patches.patients)
        result["patch"]["plots"] = write_plots(y, p, result["patch"], out, "patch")
        probs, heats, seconds = film_scores(predictor, films)
        yi = to_target([f.label for f in films], man.target)
        t_img = man.thresholds.get("image_level", man.threshold)
        groups = np.array([f.patient for f in films])
        result["image"] = evaluate_scores(yi, probs, t_img, n_boot, groups)
        result["image"]["plots"] = write_plots(yi, probs, result["image"], out, "image")
        result["image"]["seconds_per_film"] = seconds
        result["image"]["localisation"] = localisation(films, heats, man.target)
    else:
        if data.is_file():
            images, labels = load_ddsm_npy(data)
        else:
            files = find_ddsm_files(data)
            pair = files.test if split == "test" else files.val
            if pair is not None:
                images, labels = load_ddsm_npy(*pair)
            else:
                from ml.data import ddsm_tfrecord_dataset

                pairs = list(ddsm_tfrecord_dataset(files.train_records).as_numpy_iterator())
                images = np.stack([im[..., 0] for im, _ in pairs])
                labels = np.array([lab for _, lab in pairs])
        p = predictor.predict_patches(images)
        y = to_target(labels, man.target)
        result["patch"] = evaluate_scores(y, p, t_patch, n_boot)
        result["patch"]["plots"] = write_plots(y, p, result["patch"], out, "patch")
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(prog="python -m ml.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--artifact", default=None, help="artifact directory (default: shipped)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--split", choices=("test", "val", "all"), default="test")
    p.add_argument("--bootstrap", type=int, default=1000)
    a = p.parse_args(argv)
    from ml.artifacts import DEFAULT_ARTIFACT

    result = evaluate_artifact(a.artifact or DEFAULT_ARTIFACT, a.data, a.out, a.split, a.bootstrap)
    _print_block("patch level", result["patch"])
    if "image" in result:
        _print_block("whole-image level", result["image"])
        loc = result["image"]["localisation"]
        print(
            f"seconds per film {result['image']['seconds_per_film']:.2f}; heatmap peak in "
            f"lesion {loc['peak_in_lesion']:.2f} vs random {loc['random_point_in_lesion']:.2f} "
            f"({loc['films']} films)"
        )
    print(f"figures written to {a.out}")


if __name__ == "__main__":
    main()
