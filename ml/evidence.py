"""What the measurements allow the app to show: the manifest's ``evidence`` block.

A model's raw maximum-patch probability reads like a risk ("0.98") and its Grad-CAM map
like a finding, but on real films neither need be evidence. ``ml.evidence_measurement``
(``python -m ml.evaluate --write-evidence``) measures each claim on held-out films and
records it in the manifest; the app shows a figure only when the claim it would make has
passed. An artifact without the block (an older one) passes nothing.

The functions the app calls (``exam_score``, ``calibrated_probability``, ``band``,
``band_description``, ``triage_validated``, ``heatmap_passed``, ``marks_passed``) are pure
NumPy and never import TensorFlow; the fitting functions import scikit-learn lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ml.metrics import bootstrap_auc_ci, threshold_for_sensitivity

SCHEMA = 1

TRIAGE_MIN_AUC_CI_LOWER = 0.5
"""The score may rank cases only if the 95 % CI of its film AUC lies wholly above chance."""

HEATMAP_MAX_RANDOM_RANK_CORRELATION = 0.5
"""Randomising the weights must change the map (Adebayo et al. 2018): a map that still
correlates this well with a random network's describes the image, not the model."""

MARKS_MIN_SENSITIVITY_AT_1_FP = 0.5
"""Marks must find at least half of the lesions at one false mark per image, and more than
the brightest spots of the smoothed film do at the same rate."""

BAND_SENSITIVITY = 0.90
"""Intermediate starts where 90 % of validation abnormal films score at or above."""

BAND_SPECIFICITY = 0.90
"""High starts where 90 % of validation normal films score below."""

EXAM_SCORE_DECILES = tuple(np.round(np.arange(0.1, 1.0, 0.1), 1))
"""Exam score 1..10: the decile of validation normal films the score reaches."""

Evidence = Mapping[str, Any] | None


def _part(evidence: Evidence, key: str) -> Mapping[str, Any]:
    if not evidence:
        return {}
    part = evidence.get(key)
    return part if isinstance(part, Mapping) else {}


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


# --------------------------------------------------------------------------- app side


def triage_validated(evidence: Evidence) -> bool:
    """May the score be shown to rank cases? Only when the film AUC is proven above chance."""
    return bool(_part(evidence, "triage").get("validated", False))


def heatmap_passed(evidence: Evidence) -> bool:
    """May the Grad-CAM map be shown as a localisation? Only after the randomisation test."""
    return bool(_part(evidence, "heatmap").get("passed", False))


def marks_passed(evidence: Evidence) -> bool:
    """May region marks be shown? Only when their FROC beats the brightest-spot baseline."""
    return bool(_part(evidence, "marks").get("passed", False))


def target(evidence: Evidence) -> str:
    """What the score was trained to find: "malignant", or "abnormal" (benign findings too).

    Anything not stated as malignant counts as abnormal, so no score is ever called a
    probability of cancer unless its version was trained and calibrated against cancers.
    """
    return "malignant" if evidence and evidence.get("target") == "malignant" else "abnormal"


def calibration_shown(evidence: Evidence) -> bool:
    """May a calibrated probability be shown? Only from a fit on validation films, never on
    the films a version's AUC is reported on (``calibration.fitted_on == "validation"``)."""
    return _part(evidence, "calibration").get("fitted_on") == "validation"


def exam_score(score: float, evidence: Evidence) -> int | None:
    """1..10: how many deciles of validation normal films the score reaches, plus one."""
    found = exam_scores(np.asarray([score], float), evidence)
    return None if found is None else int(found[0])


def exam_scores(scores: np.ndarray, evidence: Evidence) -> np.ndarray | None:
    """``exam_score`` for many scores at once (an auditor's export of a million screens)."""
    cuts = _part(evidence, "exam_score").get("cuts")
    if not cuts:
        return None
    return 1 + np.searchsorted(np.asarray(cuts, float), np.asarray(scores, float), side="right")


def calibrated_probability(score: float, evidence: Evidence) -> float | None:
    """The share of validation films with this score that were abnormal (isotonic fit)."""
    found = calibrated_probabilities(np.asarray([score], float), evidence)
    return None if found is None else float(found[0])


def calibrated_probabilities(scores: np.ndarray, evidence: Evidence) -> np.ndarray | None:
    """``calibrated_probability`` for many scores at once."""
    cal = _part(evidence, "calibration")
    xs, ys = cal.get("scores"), cal.get("probabilities")
    if not xs or not ys or len(xs) != len(ys):
        return None
    return np.interp(np.asarray(scores, float), np.asarray(xs, float), np.asarray(ys, float))


def band(score: float, evidence: Evidence) -> str | None:
    """ "low", "intermediate" or "high" by the validation cuts; None without them."""
    found = bands(np.asarray([score], float), evidence)
    return None if found is None else str(found[0])


def bands(scores: np.ndarray, evidence: Evidence) -> np.ndarray | None:
    """``band`` for many scores at once."""
    b = _part(evidence, "bands")
    if "intermediate_from" not in b or "high_from" not in b:
        return None
    return cut_bands(np.asarray(scores, float), b["intermediate_from"], b["high_from"])


def cut_bands(scores: np.ndarray, intermediate_from: float, high_from: float) -> np.ndarray:
    """High at or above ``high_from``, else intermediate at or above ``intermediate_from``,
    else low."""
    return np.where(
        scores >= high_from, "high", np.where(scores >= intermediate_from, "intermediate", "low")
    )


def band_description(name: str, evidence: Evidence) -> str:
    """What a band means on validation films, e.g. "high: 40 % of validation cancers ...".

    The shares are of films scoring *in* the band, so the three bands add up to 100 %.
    """
    b = _part(evidence, "bands")
    if not b or name not in ("low", "intermediate", "high"):
        return f"{name}: not validated"
    positives = b.get("positives", "cancers")
    inter, high = b["intermediate"], b["high"]
    sens = {
        "high": high["sensitivity"],
        "intermediate": inter["sensitivity"] - high["sensitivity"],
        "low": 1.0 - inter["sensitivity"],
    }[name]
    normals = {
        "high": 1.0 - high["specificity"],
        "intermediate": high["specificity"] - inter["specificity"],
        "low": inter["specificity"],
    }[name]
    return (
        f"{name}: {_pct(max(sens, 0.0))} of validation {positives} score here, "
        f"{_pct(max(normals, 0.0))} of normals"
    )


# --------------------------------------------------------------------------- fitting


def film_auc_evidence(
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    method: str = "held-out test split, 95 % CI by bootstrap over women",
) -> dict[str, Any]:
    """Film AUC with a CI that resamples women, since a woman's two films are not independent."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    both = len(np.unique(y)) == 2
    if both:
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y, p))
        lo, hi = bootstrap_auc_ci(y, p, n_boot=n_boot, groups=np.asarray(groups))
    else:
        auc = lo = hi = float("nan")
    return {
        "auc": auc,
        "ci95": [lo, hi],
        "films": int(len(y)),
        "women": int(len(np.unique(groups))),
        "method": method,
    }


def triage_verdict(film_auc: Mapping[str, Any], held_out: bool = True) -> dict[str, Any]:
    """Validated iff the films are held out and the CI's lower bound exceeds
    ``TRIAGE_MIN_AUC_CI_LOWER``."""
    auc, (lo, hi), n = film_auc["auc"], film_auc["ci95"], film_auc["films"]
    validated = bool(held_out and np.isfinite(lo) and lo > TRIAGE_MIN_AUC_CI_LOWER)
    films = "held-out films" if held_out else "films used in training or model selection"
    figures = f"Film AUC {auc:.2f} (95 % CI {lo:.2f}-{hi:.2f}) on {n} {films}"
    if not held_out:
        reason = f"{figures}: figures on such films prove nothing, so the score is not shown."
    elif validated:
        reason = (
            f"{figures}: the lower bound is above {TRIAGE_MIN_AUC_CI_LOWER}, so the score "
            "ranks cases better than chance."
        )
    else:
        reason = (
            f"{figures}: the lower bound is not above {TRIAGE_MIN_AUC_CI_LOWER}, so the "
            "score is not shown to rank cases."
        )
    return {"validated": validated, "reason": reason}


def calibration_evidence(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Isotonic map from score to observed abnormal rate, as ``np.interp`` points.

    Isotonic rather than Platt: it keeps the order, needs no shape assumption, and with
    saturated scores (0.90-0.98) a logistic fit would be dominated by a few films.
    """
    from sklearn.isotonic import IsotonicRegression

    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(p, y)
    return {
        "method": "isotonic",
        "films": int(len(y)),
        "scores": [float(v) for v in iso.X_thresholds_],
        "probabilities": [float(v) for v in iso.y_thresholds_],
    }


def exam_score_evidence(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Deciles of the normal films' scores, so the exam score reads against normal films."""
    normals = np.asarray(p, dtype=float)[np.asarray(y).astype(int) == 0]
    cuts = np.quantile(normals, EXAM_SCORE_DECILES) if len(normals) else np.array([])
    return {"normal_films": int(len(normals)), "cuts": [float(c) for c in np.sort(cuts)]}


def _cut_for_specificity(normals: np.ndarray, target: float) -> float:
    """The lowest cut that leaves at least ``target`` of normals strictly below it."""
    s = np.sort(normals)
    k = min(max(int(np.ceil(target * len(s))), 1), len(s))
    return float(np.nextafter(s[k - 1], np.inf))


def _operating_point(y: np.ndarray, p: np.ndarray, cut: float) -> dict[str, float]:
    pos, neg = p[y == 1], p[y == 0]
    return {
        "sensitivity": float(np.mean(pos >= cut)) if len(pos) else float("nan"),
        "specificity": float(np.mean(neg < cut)) if len(neg) else float("nan"),
    }


def band_evidence(
    y: np.ndarray, p: np.ndarray, positives: str = "abnormal films"
) -> dict[str, Any]:
    """Cuts at 90 % sensitivity (intermediate) and 90 % specificity (high), with both figures.

    Where the model separates the classes poorly the two cuts cross; then intermediate
    takes the lower and high the higher, so the bands stay ordered.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    at_sens = threshold_for_sensitivity(y, p, BAND_SENSITIVITY)
    at_spec = _cut_for_specificity(p[y == 0], BAND_SPECIFICITY) if (y == 0).any() else at_sens
    inter, high = min(at_sens, at_spec), max(at_sens, at_spec)
    return {
        "films": int(len(y)),
        "positives": positives,
        "intermediate_from": float(inter),
        "high_from": float(high),
        "intermediate": _operating_point(y, p, inter),
        "high": _operating_point(y, p, high),
    }


def rank_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Spearman correlation of two maps inside ``mask``; 0 when either map is flat there."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if mask is not None:
        a, b = a[mask], b[mask]
    a, b = a.ravel(), b.ravel()
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def heatmap_verdict(
    trained: float,
    baseline: float,
    random_peaks: Sequence[float],
    rank_correlations: Sequence[float],
) -> tuple[bool, str]:
    """Passed iff the map beats the brightest-spot baseline and every random-weight seed,
    and every randomisation of the weights changes it (the highest rank correlation over
    seeds below the constant: one near-empty random map must not average the others away)."""
    best_random = max(random_peaks) if len(random_peaks) else float("nan")
    corr = float(np.max(rank_correlations)) if len(rank_correlations) else float("nan")
    beats_baseline = trained > baseline
    beats_random = bool(np.isfinite(best_random) and trained > best_random)
    changes = bool(np.isfinite(corr) and corr < HEATMAP_MAX_RANDOM_RANK_CORRELATION)
    passed = beats_baseline and beats_random and changes
    figures = (
        f"Heat-map peak inside the lesion on {_pct(trained)} of films, against "
        f"{_pct(baseline)} for the brightest spot of the smoothed film and up to "
        f"{_pct(best_random)} for the same network with random weights; rank correlation "
        f"with the random-weight maps up to {corr:.2f}"
    )
    if passed:
        return True, f"{figures}: the map localises better than both and depends on training."
    failed = []
    if not beats_baseline:
        failed.append("does not beat the brightest spot")
    if not beats_random:
        failed.append("does not beat random weights")
    if not changes:
        failed.append(
            f"barely changes when the weights are randomised "
            f"(correlation not below {HEATMAP_MAX_RANDOM_RANK_CORRELATION})"
        )
    return False, f"{figures}: the map {' and '.join(failed)}, so it is not shown as evidence."


def marks_verdict(sensitivity_at_1_fp: float, baseline_at_1_fp: float) -> tuple[bool, str]:
    """Passed iff marks find at least half the lesions at 1 false mark per image and more
    than the brightest-spot baseline does."""
    enough = sensitivity_at_1_fp >= MARKS_MIN_SENSITIVITY_AT_1_FP
    beats = sensitivity_at_1_fp > baseline_at_1_fp
    figures = (
        f"At one false mark per image the marks find {_pct(sensitivity_at_1_fp)} of lesions, "
        f"the brightest spots of the smoothed film {_pct(baseline_at_1_fp)}"
    )
    if enough and beats:
        return True, f"{figures}: marks are shown."
    why = []
    if not enough:
        why.append(f"below the required {_pct(MARKS_MIN_SENSITIVITY_AT_1_FP)}")
    if not beats:
        why.append("no better than the baseline")
    return False, f"{figures}: {' and '.join(why)}, so marks are not shown."
