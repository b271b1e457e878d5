"""Measure what the app may show, on scored films: the manifest's ``evidence`` block.

Film AUC with a CI over women and its abnormal-film count, calibration, exam-score deciles
and bands (fitted on validation women only, never on the films the AUC is reported on), the
heat-map randomisation test against a brightest-spot baseline (Adebayo et al. 2018) and the
FROC of the region marks. Per-film (and per-lesion) hits are recorded so that the app can
recompute the paired tests under its own gates. The gates are ``ml.evidence``'s;
``write_evidence`` records the block in an artifact.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.artifacts import HISTORY_FILE, MODEL_CARD, load_manifest, read_history, write_manifest
from ml.breast import breast_mask
from ml.data import lesions_for_target, to_target
from ml.evidence import (
    SCHEMA,
    band_evidence,
    calibration_evidence,
    exam_score_evidence,
    film_auc_evidence,
    heatmap_gate,
    marks_gate,
    rank_correlation,
    reference_scores_evidence,
    triage_gate,
)
from ml.marks import (
    MAX_MARKS,
    brightest_point_marks,
    froc,
    froc_steps,
    lesions_found,
    region_marks,
    sensitivity_at,
)
from ml.model_card import kept_notes, model_card
from ml.predictor import Predictor
from ml.selection import FilmSelection

HEAT_GRID = 64  # maps are compared on a 64 x 64 grid: fine enough, cheap to rank
RANDOM_SEEDS = tuple(range(1, 11))  # the heat-map gate needs at least ten


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


def inside_circles(circles: Sequence[tuple[float, float, float]], rc: tuple[int, int]) -> bool:
    """Whether the point ``rc`` (row, col) lies in any (row, col, radius) lesion circle."""
    return any((rc[0] - r) ** 2 + (rc[1] - c) ** 2 <= rad**2 for r, c, rad in circles)


def _peak(heat: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(r), int(c)


def _record(film: Any, image: np.ndarray, pred: Any, target: str) -> FilmRecord:
    h, w = image.shape
    found = lesions_for_target(film, target)
    lesions: list[tuple[float, float, float]] = [
        (r, c, float(rad)) for r, c, rad in (f.circle(h) for f in found)
    ]
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
    peaks, correlations, all_hits = [], [], []
    for seed in seeds:
        random_predictor = Predictor(reinitialised(predictor.model, seed), predictor.manifest)
        hits, corr = [], []
        for i in range(0, len(records), 4):
            chunk = records[i : i + 4]
            preds = random_predictor.predict_images([r.film.load() for r in chunk])
            for rec, pred in zip(chunk, preds, strict=True):
                hits.append(inside_circles(rec.lesions, _peak(pred.heatmap)))
                corr.append(rank_correlation(rec.heat, _grid(pred.heatmap), rec.mask))
        peaks.append(float(np.mean(hits)) if hits else float("nan"))
        correlations.append(float(np.mean(corr)) if corr else float("nan"))
        all_hits.append([int(h) for h in hits])
    return {
        "seeds": list(seeds),
        "peak_in_lesion": peaks,
        "rank_correlation": correlations,
        "hits": all_hits,
    }


def _baseline_hit(r: FilmRecord) -> bool:
    return bool(r.baseline) and inside_circles(r.lesions, (r.baseline[0].row, r.baseline[0].col))


def heatmap_evidence(
    predictor: Any, records: Sequence[FilmRecord], seeds: Sequence[int] = RANDOM_SEEDS
) -> dict[str, Any]:
    """Trained map against the brightest-spot baseline, a random point and random weights,
    with each film's hit recorded for the paired tests (``ml.evidence.heatmap_gate``)."""
    lesion = [r for r in records if r.lesions]
    random_weights = randomisation_test(predictor, lesion, seeds)
    trained = [int(inside_circles(r.lesions, r.peak)) for r in lesion]
    baseline = [int(_baseline_hit(r)) for r in lesion]

    def share(hits: Sequence[float]) -> float:
        return float(np.mean(hits)) if len(hits) else float("nan")

    block: dict[str, Any] = {
        "films": len(lesion),
        "film_refs": [r.film.refnum for r in lesion],
        "trained_hits": trained,
        "baseline_hits": baseline,
        "trained_peak_in_lesion": share(trained),
        "baseline_peak_in_lesion": share(baseline),
        "random_point_in_lesion": share([r.lesion_share for r in lesion]),
        "random_weights": random_weights,
    }
    verdict = heatmap_gate({"heatmap": block})
    return {"passed": verdict.passed, "reason": f"{verdict.figures}. {verdict.reason}"} | block


def marks_evidence(records: Sequence[FilmRecord]) -> dict[str, Any]:
    """FROC of the model's marks against the brightest-spot marks, on the same films, with
    each lesion's find at one false mark per image recorded for the paired test."""
    usable = [r for r in records if r.usable]
    lesions = [r.lesions for r in usable]
    model = [r.marks[:MAX_MARKS] for r in usable]
    brightest = [r.baseline[:MAX_MARKS] for r in usable]
    points = froc(model, lesions)
    base = froc(brightest, lesions)
    block: dict[str, Any] = {
        "films": len(usable),
        "lesions": sum(len(ls) for ls in lesions),
        "max_per_image": MAX_MARKS,
        "froc": {
            "sensitivity_at_0_5_fp": sensitivity_at(points, 0.5),
            "sensitivity_at_1_fp": sensitivity_at(points, 1.0),
            "points": [[float(f), float(s)] for f, s in froc_steps(points)],
        },
        "baseline_froc": {
            "sensitivity_at_0_5_fp": sensitivity_at(base, 0.5),
            "sensitivity_at_1_fp": sensitivity_at(base, 1.0),
        },
        "found_at_1_fp": {
            "model": [int(f) for f in lesions_found(model, lesions, 1.0)],
            "baseline": [int(f) for f in lesions_found(brightest, lesions, 1.0)],
        },
    }
    verdict = marks_gate({"marks": block})
    return {"passed": verdict.passed, "reason": f"{verdict.figures}. {verdict.reason}"} | block


def fitted_evidence(records: Sequence[FilmRecord], target: str) -> dict[str, Any]:
    """Calibration, exam-score deciles and bands on validation films, each saying so."""
    y = to_target([r.film.label for r in records], target)
    p = np.array([r.probability for r in records])
    on = {"fitted_on": "validation", "women": len({r.film.patient for r in records})}
    positives = "abnormal films" if target == "abnormal" else "cancers"
    return {
        "calibration": calibration_evidence(y, p) | on,
        "exam_score": exam_score_evidence(y, p) | on,
        "bands": band_evidence(y, p, positives) | on,
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
    target = predictor.manifest.target
    by_ref = {r.film.refnum: r for r in records}
    tested = [by_ref[f.refnum] for f in selection.evaluate]
    y_t = to_target([r.film.label for r in tested], target)
    p_t = np.array([r.probability for r in tested])
    groups = np.array([r.film.patient for r in tested])
    film_auc = film_auc_evidence(y_t, p_t, groups, n_boot, selection.method, selection.held_out)
    triage = triage_gate({"film_auc": film_auc})
    lesion = [r for r in records if r.lesions][:max_lesion_films]
    evidence: dict[str, Any] = {
        "schema": SCHEMA,
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": target,
        "data": selection.description,
        "film_auc": film_auc,
        "triage": {"validated": triage.passed, "reason": f"{triage.figures}. {triage.reason}"},
        "reference_scores": reference_scores_evidence(y_t, p_t),
    }
    if fit := selection.calibration_films:
        evidence |= fitted_evidence([by_ref[f.refnum] for f in fit], target)
    else:
        evidence["calibration_not_fitted"] = selection.no_calibration_reason
    evidence["heatmap"] = heatmap_evidence(predictor, lesion, seeds)
    evidence["marks"] = marks_evidence(records)
    return evidence


def write_evidence(artifact: str | Path, evidence: dict[str, Any]) -> None:
    """Record the evidence in the manifest and re-render the card; model.keras is untouched."""
    artifact = Path(artifact)
    manifest = load_manifest(artifact)
    attempts = manifest.evidence.get("attempts")
    manifest.evidence = dict(evidence)
    if attempts and "attempts" not in evidence:
        manifest.evidence["attempts"] = attempts
    write_manifest(artifact, manifest)
    render_card(artifact, manifest)


def render_card(artifact: str | Path, manifest: Any | None = None) -> None:
    """Re-render MODEL_CARD.md from the manifest, keeping its hand-written lineage notes."""
    artifact = Path(artifact)
    manifest = manifest or load_manifest(artifact)
    card = artifact / MODEL_CARD
    notes = kept_notes(card.read_text()) if card.is_file() else []
    history = None
    if (artifact / HISTORY_FILE).is_file():
        history = read_history(artifact)
    card.write_text(model_card(manifest, history, notes))
