"""Evaluate an artifact on data, at patch and at whole-image level, and write its figures.

    python -m ml.evaluate --artifact models/custom_cnn-mias-abnormal-v1 \
        --data ../shared/data/mini-mias --out runs/eval [--write-evidence]

Layouts: a mini-MIAS-like folder (``images/`` + ``labels.csv``), a DDSM folder (TFRecords
and/or ``*_data.npy`` pairs) or a single ``*_data.npy`` file. On the mini-MIAS folder the
artifact was trained on, only its test patients are evaluated; on any other mini-MIAS
folder every film is (``--split auto``, the default).

On mini-MIAS it also measures what the app may show (``ml.evidence``): film AUC with a CI
over women, calibration, exam-score deciles and bands fitted on the validation women, the
heat-map randomisation test against a brightest-spot baseline, and the FROC of the region
marks. ``--write-evidence`` records them in the artifact's manifest and model card.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.evidence import (
    SCHEMA,
    band_evidence,
    calibration_evidence,
    exam_score_evidence,
    film_auc_evidence,
    heatmap_verdict,
    marks_verdict,
    rank_correlation,
    triage_verdict,
)
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


# --------------------------------------------------------------------------- evidence

HEAT_GRID = 64  # maps are compared on a 64 x 64 grid: fine enough, cheap to rank
RANDOM_SEEDS = (1, 2, 3)


@dataclass
class FilmRecord:
    """What the evidence needs from one scored film; the full heat map is not kept."""

    film: Any
    probability: float
    lesions: list[tuple[float, float, float]]  # row, col, radius of target lesions
    usable: bool  # False when a positive film's lesion has no coordinates
    peak: tuple[int, int]
    heat: np.ndarray  # HEAT_GRID x HEAT_GRID
    mask: np.ndarray  # breast, on the same grid
    marks: list[Any]  # every candidate mark (no score floor), for the FROC sweep
    baseline: list[Any]  # brightest-spot marks
    lesion_share: float  # share of the breast inside a lesion circle


def _grid(a: np.ndarray) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.asarray(a, dtype=np.float32))
    return np.asarray(
        im.resize((HEAT_GRID, HEAT_GRID), Image.Resampling.BILINEAR), dtype=np.float32
    )


def _inside(circles: Sequence[tuple[float, float, float]], rc: tuple[int, int]) -> bool:
    return any((rc[0] - r) ** 2 + (rc[1] - c) ** 2 <= rad**2 for r, c, rad in circles)


def _peak(heat: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(r), int(c)


def _record(film: Any, image: np.ndarray, pred: Any, target: str) -> FilmRecord:
    from ml.data import breast_mask, to_target
    from ml.marks import brightest_point_marks, region_marks

    h, w = image.shape
    found = _lesions_for_target(film, target)
    lesions = [(*f.centre_rc(h), float(f.radius)) for f in found]
    positive = bool(to_target([film.label], target)[0])
    mask = breast_mask(image)
    share = 0.0
    if lesions:
        rr, cc = np.mgrid[0:h, 0:w]
        inside = np.zeros((h, w), bool)
        for r, c, rad in lesions:
            inside |= (rr - r) ** 2 + (cc - c) ** 2 <= rad**2
        share = float((inside & mask).sum() / max(mask.sum(), 1))
    return FilmRecord(
        film=film,
        probability=pred.probability,
        lesions=lesions,
        usable=bool(lesions) or not positive,
        peak=_peak(pred.heatmap),
        heat=_grid(pred.heatmap),
        mask=_grid(mask.astype(np.float32)) > 0.5,
        marks=region_marks(
            pred.patch_boxes,
            pred.patch_probabilities,
            pred.heatmap,
            image.shape,
            pred.scaled_shape,
            min_score=0.0,
        ),
        baseline=brightest_point_marks(image, mask),
        lesion_share=share,
    )


def score_films(
    predictor: Any, films: Sequence[Any], target: str, batch: int = 4
) -> tuple[list[FilmRecord], float]:
    """Score every film once and keep what the film, heat-map and marks figures need.

    Also returns the predictor's seconds per film (scoring and Grad-CAM, not the records).
    """
    records, seconds = [], 0.0
    for i in range(0, len(films), batch):
        chunk = films[i : i + batch]
        images = [f.load() for f in chunk]
        started = time.perf_counter()
        preds = predictor.predict_images(images)
        seconds += time.perf_counter() - started
        for film, image, pred in zip(chunk, images, preds, strict=True):
            records.append(_record(film, image, pred, target))
    return records, seconds / max(len(films), 1)


def reinitialised(model: Any, seed: int) -> Any:
    """The same architecture with fresh random weights (the model itself is untouched)."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)


def randomisation_test(
    predictor: Any, records: Sequence[FilmRecord], seeds: Sequence[int] = RANDOM_SEEDS
) -> dict[str, Any]:
    """The model-parameter randomisation test (Adebayo et al. 2018) on lesion films.

    The same tiling and Grad-CAM run with re-initialised weights; a map that localises as
    well, or ranks the breast's pixels the same way, reflects the image and not training.
    """
    from ml.predictor import Predictor

    peaks, correlations = [], []
    for seed in seeds:
        random_predictor = Predictor(reinitialised(predictor.model, seed), predictor.manifest)
        hits, corr = [], []
        for i in range(0, len(records), 4):
            chunk = records[i : i + 4]
            preds = random_predictor.predict_images([r.film.load() for r in chunk])
            for rec, pred in zip(chunk, preds, strict=True):
                hits.append(_inside(rec.lesions, _peak(pred.heatmap)))
                corr.append(rank_correlation(rec.heat, _grid(pred.heatmap), rec.mask))
        peaks.append(float(np.mean(hits)) if hits else float("nan"))
        correlations.append(float(np.mean(corr)) if corr else float("nan"))
    return {"seeds": list(seeds), "peak_in_lesion": peaks, "rank_correlation": correlations}


def heatmap_evidence(
    predictor: Any, records: Sequence[FilmRecord], seeds: Sequence[int] = RANDOM_SEEDS
) -> dict[str, Any]:
    """Trained map against the brightest-spot baseline, a random point and random weights."""
    lesion = [r for r in records if r.lesions]
    random_weights = randomisation_test(predictor, lesion, seeds)

    def share(hit: Any) -> float:
        return float(np.mean([hit(r) for r in lesion])) if lesion else float("nan")

    trained = share(lambda r: _inside(r.lesions, r.peak))
    baseline = share(
        lambda r: bool(r.baseline) and _inside(r.lesions, (r.baseline[0].row, r.baseline[0].col))
    )
    passed, reason = heatmap_verdict(
        trained, baseline, random_weights["peak_in_lesion"], random_weights["rank_correlation"]
    )
    return {
        "passed": passed,
        "reason": reason,
        "films": len(lesion),
        "trained_peak_in_lesion": trained,
        "baseline_peak_in_lesion": baseline,
        "random_point_in_lesion": share(lambda r: r.lesion_share),
        "random_weights": random_weights,
    }


def marks_evidence(records: Sequence[FilmRecord]) -> dict[str, Any]:
    """FROC of the model's marks against the brightest-spot marks, on the same films."""
    from ml.marks import MAX_MARKS, froc, froc_steps, sensitivity_at

    usable = [r for r in records if r.usable]
    lesions = [r.lesions for r in usable]
    points = froc([r.marks[:MAX_MARKS] for r in usable], lesions)
    base = froc([r.baseline[:MAX_MARKS] for r in usable], lesions)
    at_1 = sensitivity_at(points, 1.0)
    base_at_1 = sensitivity_at(base, 1.0)
    passed, reason = marks_verdict(at_1, base_at_1)
    return {
        "passed": passed,
        "reason": reason,
        "films": len(usable),
        "lesions": sum(len(ls) for ls in lesions),
        "max_per_image": MAX_MARKS,
        "froc": {
            "sensitivity_at_0_5_fp": sensitivity_at(points, 0.5),
            "sensitivity_at_1_fp": at_1,
            "points": [[float(f), float(s)] for f, s in froc_steps(points)],
        },
        "baseline_froc": {
            "sensitivity_at_0_5_fp": sensitivity_at(base, 0.5),
            "sensitivity_at_1_fp": base_at_1,
        },
    }


def build_evidence(
    predictor: Any,
    records: Sequence[FilmRecord],
    selection: FilmSelection,
    n_boot: int = 1000,
    seeds: Sequence[int] = RANDOM_SEEDS,
    max_lesion_films: int | None = None,
) -> dict[str, Any]:
    """The manifest's ``evidence`` block (see ``ml.evidence``) from scored films."""
    from ml.data import to_target

    target = predictor.manifest.target
    by_ref = {r.film.refnum: r for r in records}
    tested = [by_ref[f.refnum] for f in selection.evaluate]
    fitted = [by_ref[f.refnum] for f in selection.fit]
    y_t = to_target([r.film.label for r in tested], target)
    p_t = np.array([r.probability for r in tested])
    groups = np.array([r.film.patient for r in tested])
    film_auc = film_auc_evidence(y_t, p_t, groups, n_boot, selection.method)
    y_f = to_target([r.film.label for r in fitted], target)
    p_f = np.array([r.probability for r in fitted])
    positives = "abnormal films" if target == "abnormal" else "cancers"
    lesion = [r for r in records if r.lesions][:max_lesion_films]
    return {
        "schema": SCHEMA,
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": selection.description,
        "film_auc": film_auc,
        "triage": triage_verdict(film_auc, held_out=selection.held_out),
        "calibration": calibration_evidence(y_f, p_f),
        "exam_score": exam_score_evidence(y_f, p_f),
        "bands": band_evidence(y_f, p_f, positives),
        "heatmap": heatmap_evidence(predictor, lesion, seeds),
        "marks": marks_evidence(records),
    }


# --------------------------------------------------------------------------- which films


class SplitError(ValueError):
    """The requested split does not exist on this folder."""


@dataclass
class FilmSelection:
    """Films for the held-out figures and films the calibration and bands are fitted on."""

    split: str
    evaluate: list[Any]
    fit: list[Any]
    held_out: bool  # the evaluated films played no part in training or model selection
    method: str
    description: str

    @property
    def scored(self) -> list[Any]:
        seen = {f.refnum for f in self.evaluate}
        return list(self.evaluate) + [f for f in self.fit if f.refnum not in seen]


def trained_on(manifest: Any, films: Sequence[Any]) -> bool:
    """Is this mini-MIAS folder the one the artifact's patient split was drawn from?

    Judged by the data, not the path: the artifact's validation and test women must all be
    present and the number of women must match the training description.
    """
    td = manifest.training_data
    val, test = td.get("val_patients"), td.get("test_patients")
    if td.get("layout") != "mini-mias" or not val or not test:
        return False
    present = {f.patient for f in films}
    total = sum(td.get("patients", {}).values())
    return set(val) | set(test) <= present and (not total or total == len(present))


def _women(films: Sequence[Any]) -> int:
    return len({f.patient for f in films})


def select_films(manifest: Any, films: Sequence[Any], split: str = "auto") -> FilmSelection:
    """``auto``: the artifact's test women on the folder it was trained on, else all films.

    ``test`` and ``val`` need the artifact's own folder: on another folder the patient
    numbers name other women, so asking for them is an error, not a silent wrong pick.
    """
    known = trained_on(manifest, films)
    if split == "auto":
        split = "test" if known else "all"
    if split in ("test", "val") and not known:
        raise SplitError(
            f"--split {split}: this folder is not the one the artifact was trained on "
            "(its patient lists do not match), so it has no such split; use auto or all"
        )
    films = list(films)
    td = manifest.training_data
    if not known:
        return FilmSelection(
            split,
            films,
            films,
            held_out=True,
            method="all films of a folder the artifact was not trained on, "
            "95 % CI by bootstrap over women",
            description=f"mini-MIAS-layout folder, all {len(films)} films of {_women(films)} "
            "women, none used in training; calibration, exam score and bands fitted on the "
            "same films",
        )
    val = [f for f in films if f.patient in set(td["val_patients"])]
    test = [f for f in films if f.patient in set(td["test_patients"])]
    chosen = {"test": test, "val": val, "all": films}[split]
    method = {
        "test": "held-out test split, 95 % CI by bootstrap over women",
        "val": "validation split (used to choose the epoch and threshold, so optimistic), "
        "95 % CI by bootstrap over women",
        "all": "all films, training women included (optimistic), 95 % CI by bootstrap over women",
    }[split]
    source = str(td.get("source", "mini-MIAS")).split(" (")[0]
    return FilmSelection(
        split,
        chosen,
        val,
        held_out=split == "test",
        method=method,
        description=f"{source}, the artifact's {_women(val)} validation and {_women(test)} "
        f"test women ({len(val)} and {len(test)} films); film AUC on "
        + {"test": "the test women", "val": "the validation women", "all": "all films"}[split]
        + ", calibration, exam score and bands fitted on the validation women, heat map "
        "and marks on "
        + {"test": "both", "val": "the validation women", "all": "all films"}[split],
    )


# --------------------------------------------------------------------------- model card


def _fmt(m: dict[str, Any]) -> str:
    lo, hi = m.get("auc_ci95", [float("nan")] * 2)
    return f"{m['auc']:.3f} (95% CI {lo:.3f}–{hi:.3f})"


def _row(name: str, m: dict[str, Any]) -> str:
    return (
        f"| {name} | {m['threshold']:.3f} | {m['sensitivity']:.3f} | {m['specificity']:.3f} "
        f"| {m['precision']:.3f} | {m['f1']:.3f} | {m['accuracy']:.3f} | {m['confusion_matrix']} |"
    )


_TABLE_HEAD = [
    "| operating point | threshold | sensitivity | specificity | precision | F1 | "
    "accuracy | confusion [[TN, FP], [FN, TP]] |",
    "|---|---|---|---|---|---|---|---|",
]


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _model_section(manifest: Any) -> list[str]:
    pre = manifest.preprocessing
    resized = (
        f", resized inside the model to {pre['internal_size']}×{pre['internal_size']}"
        if pre.get("internal_size")
        else ""
    )
    target = (
        "(any finding: label ≠ 0)."
        if manifest.target == "abnormal"
        else "(malignant: label 3 or 4)."
    )
    return [
        "## Model",
        f"- Architecture: `{manifest.architecture}` (ml/models.py), one sigmoid output.",
        f"- Input: {manifest.input_size}×{manifest.input_size}×3, grayscale replicated to three "
        f"channels, preprocessing `{pre.get('method')}`{resized}.",
        f"- Target: `{manifest.target}` {target}",
        f"- Created {manifest.created}; sha256 of the model file `{manifest.sha256}`.",
    ]


def _mias_data(td: dict[str, Any]) -> list[str]:
    p = td["patches"]
    lines = [
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
    return lines


def _ddsm_data(td: dict[str, Any]) -> list[str]:
    records = td.get("train_records", [])
    return [
        f"- Training: {td.get('train_count', 'n/a')} patches from {len(records)} TFRecord "
        f"file(s) ({', '.join(records)}); validation `{td.get('validation')}`, test "
        f"`{td.get('test')}` (the data set's own split, by patch: the Kaggle files do not "
        "say which woman a patch comes from).",
    ]


def _data_section(td: dict[str, Any]) -> list[str]:
    lines = ["## Data and split", f"- {td.get('source', 'unknown source')}."]
    if td.get("path"):
        lines.append(f"- Read from `{td['path']}` (layout `{td.get('layout', 'unknown')}`).")
    if td.get("layout") == "mini-mias":
        lines += _mias_data(td)
    elif td.get("layout") == "ddsm":
        lines += _ddsm_data(td)
    return lines


def _patch_section(patch: dict[str, Any]) -> list[str]:
    if not patch:
        return []
    t = patch["test"]
    return [
        "## Patch-level results (test split, never seen in training or model selection)",
        f"- AUC {_fmt(t)}; bootstrap resamples whole {patch['bootstrap_unit']}s.",
        f"- Validation AUC {_fmt(patch['validation'])}.",
        f"- Threshold {patch['threshold']:.3f}, chosen on validation patches for "
        f"sensitivity ≥ {patch['target_sensitivity']:.2f} (a screening choice).",
        "",
        *_TABLE_HEAD,
        _row("validation-chosen", t["at_threshold"]),
        _row("0.5", t["at_0_5"]),
    ]


def _image_section(image: dict[str, Any] | None, pre: dict[str, Any]) -> list[str]:
    if not image:
        return []
    t = image["test"]
    loc = t["localisation"]
    return [
        "## Whole-film results (test-split films)",
        f"- {image['test_films']} films; image score = {image['aggregation']} of the "
        f"patch probabilities over a {pre.get('patch_size')} px grid, stride "
        f"{pre.get('stride')} px, inside the breast.",
        f"- AUC {_fmt(t)} (bootstrap over women); validation films AUC "
        f"{image['validation']['auc']:.3f}.",
        f"- Threshold {image['threshold']:.3f} chosen on validation films.",
        "",
        *_TABLE_HEAD,
        _row("validation-chosen", t["at_threshold"]),
        _row("0.5", t["at_0_5"]),
        "",
        f"- Seconds per 1024×1024 film on the training CPU (2 cores, score and Grad-CAM): "
        f"{t['seconds_per_film']:.2f}.",
        f"- Localisation: on {loc['films']} test films with an annotated lesion the "
        f"heatmap peak fell inside a lesion circle in {loc['peak_in_lesion']:.0%} of films; "
        f"a random point inside the breast would in {loc['random_point_in_lesion']:.0%}.",
    ]


def _training_section(
    manifest: Any, history: dict[str, list[float]] | None, notes: Sequence[str]
) -> list[str]:
    if not history or "val_auc" not in history:
        return []
    td, m = manifest.training_data, manifest.metrics
    key = "val_film_auc" if "val_film_auc" in history else "val_auc"
    what = "whole-film AUC" if key == "val_film_auc" else "patch AUC"
    best = int(np.argmax(history[key]))
    training = td.get("training", {})
    start = training.get("init_from")
    lines = [
        "## Training",
        f"- {len(history[key])} epochs, best validation {what} "
        f"{history[key][best]:.3f} at epoch {best + 1}"
        + (f" (continued from `{start}`)" if start else "")
        + "; Adam "
        f"(learning rate {training.get('learning_rate', 'n/a')}), binary "
        "cross-entropy, balanced class weights, flips/rotations/brightness/contrast "
        f"augmentation, best epoch kept by validation {what}.",
    ]
    if "train_seconds" in m:
        lines.append(f"- Training time: {m['train_seconds']:.0f} s on a shared 2-core CPU.")
    return lines + list(notes)


def _verdict(ok: bool, yes: str, no: str) -> str:
    return f"**{yes}**" if ok else f"**{no}**"


def _evidence_scores(ev: dict[str, Any]) -> list[str]:
    lines = []
    if fa := ev.get("film_auc"):
        lo, hi = fa["ci95"]
        lines.append(
            f"- Film AUC {fa['auc']:.3f} (95 % CI {lo:.3f}–{hi:.3f}) on {fa['films']} films "
            f"of {fa['women']} women; {fa['method']}."
        )
    if tr := ev.get("triage"):
        ok = _verdict(tr["validated"], "validated", "not validated")
        lines.append(f"- Score for ranking cases (triage): {ok}. {tr['reason']}")
    if cal := ev.get("calibration"):
        pairs = ", ".join(
            f"{s:.3f} → {p:.2f}" for s, p in zip(cal["scores"], cal["probabilities"], strict=True)
        )
        lines.append(
            f"- Calibration ({cal['method']}, fitted on {cal['films']} validation films; "
            f"score → share abnormal, linear between points): {pairs}."
        )
    if es := ev.get("exam_score"):
        cuts = ", ".join(f"{c:.3f}" for c in es["cuts"])
        lines.append(
            f"- Exam score 1–10: one plus the number of deciles of {es['normal_films']} "
            f"validation normal films the score reaches; decile cuts {cuts}."
        )
    return lines


def _evidence_bands(bands: dict[str, Any]) -> list[str]:
    if not bands:
        return []
    from ml.evidence import band_description

    ev = {"bands": bands}
    return [
        "",
        f"Bands, fitted on {bands['films']} validation films (figures are for a score at or "
        "above the band's start):",
        "",
        "| band | from score | sensitivity | specificity | on validation films |",
        "|---|---|---|---|---|",
        f"| low | — | — | — | {band_description('low', ev)} |",
        f"| intermediate | {bands['intermediate_from']:.3f} | "
        f"{bands['intermediate']['sensitivity']:.2f} | "
        f"{bands['intermediate']['specificity']:.2f} | {band_description('intermediate', ev)} |",
        f"| high | {bands['high_from']:.3f} | {bands['high']['sensitivity']:.2f} | "
        f"{bands['high']['specificity']:.2f} | {band_description('high', ev)} |",
    ]


def _evidence_heatmap(hm: dict[str, Any]) -> list[str]:
    if not hm:
        return []
    rw = hm["random_weights"]
    lines = [
        "",
        f"Heat-map randomisation test (Adebayo et al. 2018) on {hm['films']} films with an "
        "annotated lesion: share of films whose heat-map peak lies inside a lesion circle, "
        "and the rank correlation (inside the breast) of each map with the trained one.",
        "",
        "| map | peak inside a lesion | rank correlation with trained map |",
        "|---|---|---|",
        f"| trained model (Grad-CAM × patch probability) | {_pct(hm['trained_peak_in_lesion'])} "
        "| 1 |",
        f"| brightest spot of the smoothed film (baseline) | "
        f"{_pct(hm['baseline_peak_in_lesion'])} | — |",
        f"| random point in the breast (expected) | {_pct(hm['random_point_in_lesion'])} | — |",
    ]
    lines += [
        f"| same network, random weights, seed {s} | {_pct(p)} | {c:.2f} |"
        for s, p, c in zip(rw["seeds"], rw["peak_in_lesion"], rw["rank_correlation"], strict=True)
    ]
    ok = _verdict(hm["passed"], "passed", "failed")
    return lines + ["", f"- Heat map as localisation: {ok}. {hm['reason']}"]


def _evidence_marks(mk: dict[str, Any]) -> list[str]:
    if not mk:
        return []
    fr = mk["froc"]
    base = mk.get("baseline_froc", {})
    lines = [
        "",
        f"Region marks (at most {mk['max_per_image']} per image; a hit when the mark's centre "
        f"lies inside a lesion circle) on {mk['films']} films with {mk['lesions']} lesions:",
        "",
        "| marks | sensitivity at 0.5 false marks / image | at 1 false mark / image |",
        "|---|---|---|",
        f"| model | {_pct(fr['sensitivity_at_0_5_fp'])} | {_pct(fr['sensitivity_at_1_fp'])} |",
    ]
    if base:
        lines.append(
            f"| brightest spots (baseline) | {_pct(base['sensitivity_at_0_5_fp'])} | "
            f"{_pct(base['sensitivity_at_1_fp'])} |"
        )
    ok = _verdict(mk["passed"], "passed", "failed")
    return lines + ["", f"- Region marks: {ok}. {mk['reason']}"]


def _evidence_section(ev: dict[str, Any]) -> list[str]:
    if not ev:
        return []
    return [
        "## Evidence (what the app may show)",
        f"- Measured {ev.get('computed_at', '')} by `python -m ml.evaluate --write-evidence` on "
        f"{ev.get('data', 'unrecorded data')}. The app shows a figure only where its verdict "
        "below has passed (ml/evidence.py holds the rules).",
        *_evidence_scores(ev),
        *_evidence_bands(ev.get("bands", {})),
        *_evidence_heatmap(ev.get("heatmap", {})),
        *_evidence_marks(ev.get("marks", {})),
    ]


def _attempts_section(attempts: Sequence[dict[str, Any]]) -> list[str]:
    if not attempts:
        return []
    lines = [
        "## Attempts",
        "Recipes tried for this target, with their cross-validated film AUC:",
        "",
        "| recipe | film AUC (95 % CI) | folds × repeats | notes |",
        "|---|---|---|---|",
    ]
    for a in attempts:
        lo, hi = a.get("ci95", [float("nan")] * 2)
        lines.append(
            f"| {a.get('recipe', '')} | {a.get('film_auc', float('nan')):.3f} "
            f"({lo:.3f}–{hi:.3f}) | {a.get('folds', '')} × {a.get('repeats', '')} "
            f"| {a.get('notes', '')} |"
        )
    return lines


def _figures_section(
    patch: dict[str, Any], image: dict[str, Any] | None, history: Any
) -> list[str]:
    plots = list(patch.get("test", {}).get("plots", []))
    if image:
        plots += image["test"].get("plots", [])
    if not plots and not history:
        return []
    names = (["training_curves.png"] if history else []) + plots
    return ["## Figures", "", *[f"![{name}]({name})" for name in names]]


def _limitations_section(td: dict[str, Any]) -> list[str]:
    layout = td.get("layout")
    if layout == "mini-mias":
        data = [
            "- mini-MIAS is small (a few hundred patches from fewer than a hundred women for "
            "training), digitised film from the 1990s, and the test split is a few dozen women:",
            "  the confidence intervals are wide and the figures do not transfer to digital",
            "  mammography, other populations or other scanners.",
            "- Normal tiles are drawn from inside the breast, lesion crops are centred on",
            "  annotated lesions: the patch task is easier than finding a lesion in a whole film.",
        ]
    elif layout == "ddsm":
        data = [
            "- The Kaggle DDSM patches are 299×299 crops of digitised film (CBIS-DDSM): patch",
            "  figures say nothing about finding a lesion in a whole film, and the files carry",
            "  no patient identity, so the split is by patch and the CIs are optimistic.",
            "- Film from the 1990s: the figures do not transfer to digital mammography, other",
            "  populations or other scanners.",
        ]
    else:
        data = ["- The training data are described only as above; judge transfer accordingly."]
    return [
        "## Limitations",
        *data,
        "- Trained on a CPU at reduced internal resolution; not comparable to GPU-trained",
        "  VGG16/ResNet50V2 figures on DDSM.",
    ]


def model_card(
    manifest: Any, history: dict[str, list[float]] | None = None, notes: Sequence[str] = ()
) -> str:
    """The artifact's MODEL_CARD.md, rendered from its manifest alone so it cannot drift.

    ``notes`` are hand-written lines kept under Training (e.g. the artifact's lineage).
    """
    m = manifest.metrics
    td = manifest.training_data
    evidence = getattr(manifest, "evidence", None) or {}
    sections = [
        [
            f"# Model card: {manifest.architecture}, target `{manifest.target}`, "
            f"v{manifest.version}",
            "",
            "**For research only. Not a medical device and not for clinical use.** It has not been",
            "validated on any population, and its figures come from a small public film data set.",
        ],
        _model_section(manifest),
        _data_section(td),
        _patch_section(m.get("patch", {})),
        _image_section(m.get("image"), manifest.preprocessing),
        _evidence_section(evidence),
        _attempts_section(evidence.get("attempts", [])),
        _training_section(manifest, history, notes),
        _figures_section(m.get("patch", {}), m.get("image"), history),
        _limitations_section(td),
    ]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"


def kept_notes(card: str) -> list[str]:
    """Hand-written "- Lineage:" bullets of an existing card, kept when it is re-rendered."""
    lines = card.splitlines()
    kept: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("- Lineage:"):
            kept.append(line)
            for cont in lines[i + 1 :]:
                if not cont.startswith("  "):
                    break
                kept.append(cont)
    return kept


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


def _localisation(records: Sequence[FilmRecord]) -> dict[str, Any]:
    lesion = [r for r in records if r.lesions]
    n = len(lesion)
    return {
        "films": n,
        "peak_in_lesion": float(np.mean([_inside(r.lesions, r.peak) for r in lesion]))
        if n
        else float("nan"),
        "random_point_in_lesion": float(np.mean([r.lesion_share for r in lesion]))
        if n
        else float("nan"),
    }


def _evaluate_mias(
    predictor: Any,
    data: Path,
    out: Path,
    split: str,
    n_boot: int,
    evidence: bool,
    seeds: Sequence[int],
    max_lesion_films: int | None,
) -> dict[str, Any]:
    from ml.config import PatchConfig
    from ml.data import extract_mias_patches, read_mias, to_target

    man = predictor.manifest
    selection = select_films(man, read_mias(data), split)
    films = selection.evaluate
    result: dict[str, Any] = {"split": selection.split, "films": len(films)}
    # patches use the patch threshold (chosen on validation patches), films the image one
    t_patch = next((v for k, v in man.thresholds.items() if k.startswith("patch_")), man.threshold)
    pcfg = PatchConfig(**man.training_data.get("patches", {}))
    patches = extract_mias_patches(films, pcfg, seed=pcfg.seed + 2)
    p = predictor.predict_patches(patches.images)
    y = to_target(patches.labels, man.target)
    result["patch"] = evaluate_scores(y, p, t_patch, n_boot, patches.patients)
    result["patch"]["plots"] = write_plots(y, p, result["patch"], out, "patch")
    scored = selection.scored if evidence else films
    records, seconds = score_films(predictor, scored, man.target)
    tested = records[: len(films)]  # FilmSelection.scored lists the evaluated films first
    probs = np.array([r.probability for r in tested])
    yi = to_target([f.label for f in films], man.target)
    t_img = man.thresholds.get("image_level", man.threshold)
    groups = np.array([f.patient for f in films])
    result["image"] = evaluate_scores(yi, probs, t_img, n_boot, groups)
    result["image"]["plots"] = write_plots(yi, probs, result["image"], out, "image")
    result["image"]["seconds_per_film"] = seconds
    result["image"]["localisation"] = _localisation(tested)
    if evidence:
        started = time.perf_counter()
        result["evidence"] = build_evidence(
            predictor, records, selection, n_boot, seeds, max_lesion_films
        )
        result["evidence_seconds"] = time.perf_counter() - started
    return result


def _evaluate_ddsm(
    predictor: Any, data: Path, out: Path, split: str, n_boot: int
) -> dict[str, Any]:
    from ml.data import find_ddsm_files, load_ddsm_npy, to_target

    man = predictor.manifest
    if data.is_file():
        images, labels = load_ddsm_npy(data)
    else:
        files = find_ddsm_files(data)
        pair = files.val if split == "val" else files.test
        if pair is not None:
            images, labels = load_ddsm_npy(*pair)
        else:
            from ml.data import ddsm_tfrecord_dataset

            pairs = list(ddsm_tfrecord_dataset(files.train_records).as_numpy_iterator())
            images = np.stack([im[..., 0] for im, _ in pairs])
            labels = np.array([lab for _, lab in pairs])
    t_patch = next((v for k, v in man.thresholds.items() if k.startswith("patch_")), man.threshold)
    p = predictor.predict_patches(images)
    y = to_target(labels, man.target)
    patch = evaluate_scores(y, p, t_patch, n_boot)
    patch["plots"] = write_plots(y, p, patch, out, "patch")
    return {"split": split, "patch": patch}


def write_evidence(artifact: str | Path, evidence: dict[str, Any]) -> None:
    """Record the evidence in the manifest and re-render the card; model.keras is untouched."""
    from ml.artifacts import MODEL_CARD, load_manifest, write_manifest

    artifact = Path(artifact)
    manifest = load_manifest(artifact)
    attempts = manifest.evidence.get("attempts")
    manifest.evidence = dict(evidence)
    if attempts and "attempts" not in evidence:
        manifest.evidence["attempts"] = attempts
    write_manifest(artifact, manifest)
    card = artifact / MODEL_CARD
    notes = kept_notes(card.read_text()) if card.is_file() else []
    history = None
    if (artifact / "history.csv").is_file():
        from ml.train import read_history

        history = read_history(artifact)
    card.write_text(model_card(manifest, history, notes))


def evaluate_artifact(
    artifact: str | Path,
    data: str | Path,
    out: str | Path,
    split: str = "auto",
    n_boot: int = 1000,
    evidence: bool = True,
    seeds: Sequence[int] = RANDOM_SEEDS,
    max_lesion_films: int | None = None,
) -> dict[str, Any]:
    """Figures for an artifact on a folder; on mini-MIAS also the ``evidence`` block.

    ``split="auto"`` evaluates the artifact's test women on the folder it was trained on
    and every film of any other folder (see ``select_films``).
    """
    from ml.data import is_mias_folder
    from ml.predictor import Predictor

    predictor = Predictor.load(artifact)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(data)
    result: dict[str, Any] = {"artifact": str(artifact), "data": str(data)}
    if is_mias_folder(data):
        result |= _evaluate_mias(
            predictor, data, out, split, n_boot, evidence, seeds, max_lesion_films
        )
    else:
        result |= _evaluate_ddsm(predictor, data, out, split, n_boot)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _print_evidence(ev: dict[str, Any], seconds: float) -> None:
    hm, mk = ev["heatmap"], ev["marks"]
    print(f"\n== evidence ({seconds:.0f} s) on {ev['data']}")
    print(f"  triage: {ev['triage']['reason']}")
    print(f"  heat map: {hm['reason']}")
    print(f"  marks: {mk['reason']}")
    b = ev["bands"]
    print(
        f"  bands: intermediate from {b['intermediate_from']:.3f}, high from {b['high_from']:.3f}"
    )


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(prog="python -m ml.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--artifact", default=None, help="artifact directory (default: shipped)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="runs/eval")
    p.add_argument(
        "--split",
        choices=("auto", "test", "val", "all"),
        default="auto",
        help="auto: the artifact's test women on its own mini-MIAS folder, else all films",
    )
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument(
        "--write-evidence",
        action="store_true",
        help="write the evidence block into the artifact's manifest.json and MODEL_CARD.md",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=list(RANDOM_SEEDS))
    p.add_argument(
        "--max-lesion-films", type=int, default=None, help="cap the randomisation test's films"
    )
    a = p.parse_args(argv)
    from ml.artifacts import DEFAULT_ARTIFACT
    from ml.data import is_mias_folder

    if a.write_evidence and not is_mias_folder(a.data):
        p.error("--write-evidence needs a mini-MIAS-layout folder (whole films with lesions)")
    artifact = a.artifact or DEFAULT_ARTIFACT
    started = time.perf_counter()
    try:
        result = evaluate_artifact(
            artifact,
            a.data,
            a.out,
            a.split,
            a.bootstrap,
            seeds=a.seeds,
            max_lesion_films=a.max_lesion_films,
        )
    except SplitError as exc:
        p.error(str(exc))
    _print_block("patch level", result["patch"])
    if "image" in result:
        _print_block("whole-image level", result["image"])
        loc = result["image"]["localisation"]
        print(
            f"seconds per film {result['image']['seconds_per_film']:.2f}; heatmap peak in "
            f"lesion {loc['peak_in_lesion']:.2f} vs random {loc['random_point_in_lesion']:.2f} "
            f"({loc['films']} films)"
        )
    if "evidence" in result:
        _print_evidence(result["evidence"], result["evidence_seconds"])
        if a.write_evidence:
            write_evidence(artifact, result["evidence"])
            print(f"evidence written to {artifact}")
    print(f"figures written to {a.out}; {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
