"""How good a model is, in figures: patch and whole-film metrics, on a run or an artifact.

``evaluate_patches`` and ``film_level`` finish a training run (threshold on validation,
figures on test); ``evaluate_artifact`` scores any artifact on a mini-MIAS-layout or DDSM
folder and, on mini-MIAS, measures its evidence (``ml.evidence_measurement``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml.breast import breast_mask
from ml.config import PatchConfig, TrainConfig
from ml.data import (
    ddsm_tfrecord_dataset,
    extract_mias_patches,
    find_ddsm_files,
    is_mias_folder,
    lesions_for_target,
    load_ddsm_npy,
    make_dataset,
    read_mias,
    to_target,
)
from ml.evidence_measurement import (
    RANDOM_SEEDS,
    FilmRecord,
    build_evidence,
    inside_circles,
    score_films,
)
from ml.metrics import evaluate_scores, threshold_for_sensitivity, write_plots
from ml.predictor import Predictor
from ml.selection import select_films

TEST_FILM_SCORES = "test_film_scores.json"


def predict_arrays(model: Any, images: np.ndarray, cfg: TrainConfig, method: str) -> np.ndarray:
    """Scores of uint8 patches, through the same tf.data preprocessing training used."""
    ds = make_dataset(
        (images, np.zeros(len(images), np.int32)),
        target=cfg.target,
        preprocessing=method,
        input_size=cfg.model.input_size,
        batch_size=cfg.batch_size,
    )
    return np.concatenate([np.asarray(model(x, training=False)).reshape(-1) for x, _ in ds])


def evaluate_patches(model: Any, data: Any, cfg: Any, method: str, out: Path) -> dict[str, Any]:
    """Threshold from validation patches at the target sensitivity, then the test figures."""
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


def localisation(
    films: Sequence[Any], heatmaps: Sequence[np.ndarray], target: str
) -> dict[str, Any]:
    """Share of heatmap peaks inside an annotated lesion circle, against a random point.

    The random baseline is, per film, the share of the breast area covered by the lesion
    circles (what a point drawn uniformly inside the breast would score), averaged.
    """
    hits, chance, n = 0, 0.0, 0
    for film, heat in zip(films, heatmaps, strict=True):
        lesions = lesions_for_target(film, target)
        if not lesions:
            continue
        image = film.load()
        h, w = image.shape
        rr, cc = np.mgrid[0:h, 0:w]
        inside = np.zeros((h, w), bool)
        for f in lesions:
            r, c, radius = f.circle(h)
            inside |= (rr - r) ** 2 + (cc - c) ** 2 <= radius**2
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
    rows = [
        {"refnum": f.refnum, "patient": f.patient, "label": int(t), "score": float(s)}
        for f, t, s in zip(test, y_test, p_test, strict=True)
    ]
    # one row per test film, so k runs' films pool into one estimate (ml.runs.cross_validate)
    (out / TEST_FILM_SCORES).write_text(json.dumps(rows, indent=1) + "\n")
    return {
        "threshold": threshold,
        "aggregation": predictor.whole_image.aggregation,
        "validation_films": len(val),
        "test_films": len(test),
        "validation": evaluate_scores(y_val, p_val, threshold, cfg.bootstrap),
        "test": result,
    }


def _localisation(records: Sequence[FilmRecord]) -> dict[str, Any]:
    lesion = [r for r in records if r.lesions]
    n = len(lesion)
    return {
        "films": n,
        "peak_in_lesion": float(np.mean([inside_circles(r.lesions, r.peak) for r in lesion]))
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
    man = predictor.manifest
    if data.is_file():
        images, labels = load_ddsm_npy(data)
    else:
        files = find_ddsm_files(data)
        pair = files.val if split == "val" else files.test
        if pair is not None:
            images, labels = load_ddsm_npy(*pair)
        else:
            pairs = list(ddsm_tfrecord_dataset(files.train_records).as_numpy_iterator())
            images = np.stack([im[..., 0] for im, _ in pairs])
            labels = np.array([lab for _, lab in pairs])
    t_patch = next((v for k, v in man.thresholds.items() if k.startswith("patch_")), man.threshold)
    p = predictor.predict_patches(images)
    y = to_target(labels, man.target)
    patch = evaluate_scores(y, p, t_patch, n_boot)
    patch["plots"] = write_plots(y, p, patch, out, "patch")
    return {"split": split, "patch": patch}


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
