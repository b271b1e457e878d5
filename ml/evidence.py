"""What the measurements allow the app to show: the manifest's ``evidence`` block.

A model's raw maximum-patch probability reads like a risk ("0.98") and its Grad-CAM map
like a finding, but on real films neither need be evidence. ``ml.evidence_measurement``
(``python -m ml.evaluate --write-evidence``) measures each claim on held-out films and
records the figures in the manifest; the app judges those figures against its site's
``Gates`` each time it asks (``triage_gate``, ``heatmap_gate``, ``marks_gate``), so a site
can make a gate stricter and a stored "passed" flag is never taken on trust. An artifact
without the figures a gate needs (an older one) passes nothing.

The functions the app calls are pure NumPy and Python (the exact binomial test is summed in
integers) and never import TensorFlow or SciPy; the fitting functions import scikit-learn
lazily.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from ml.metrics import bootstrap_auc_ci, threshold_for_sensitivity

SCHEMA = 2
"""2: figures a gate is judged on (abnormal film count, per-film hits, 10+ seeds), the
target, and where calibration was fitted. Schema 1 blocks fail every gate."""


@dataclass(frozen=True)
class Gates:
    """What a version's measured figures must reach before the app shows each claim.

    The defaults are the floor a clinician would accept: a triage score must rank films
    clearly better than chance on enough abnormal films to say so (the README's target
    AUC 0.75); a heat map must beat, by a paired test, both the brightest point of the
    film and the best of ten re-initialised copies of the network, and must change when
    the weights do (Adebayo et al. 2018); marks must beat the brightest spots the same
    way. A site may make a gate stricter (the ``AI_*`` gate settings), never looser.
    """

    triage_min_auc: float = 0.75
    triage_min_auc_lower: float = 0.5
    triage_min_abnormal_films: int = 30
    heatmap_min_seeds: int = 10
    heatmap_max_median_correlation: float = 0.5
    marks_min_sensitivity: float = 0.5
    max_p: float = 0.05

    # which way is stricter for each setting: +1 a higher value, -1 a lower one
    _STRICTER: ClassVar[dict[str, int]] = {
        "triage_min_auc": 1,
        "triage_min_auc_lower": 1,
        "triage_min_abnormal_films": 1,
        "heatmap_min_seeds": 1,
        "heatmap_max_median_correlation": -1,
        "marks_min_sensitivity": 1,
        "max_p": -1,
    }

    def looser_than(self, floor: Gates) -> list[str]:
        """The settings of ``self`` that are looser than ``floor`` (empty when none is)."""
        return [
            f.name
            for f in fields(self)
            if (getattr(self, f.name) - getattr(floor, f.name)) * self._STRICTER[f.name] < 0
        ]


FLOOR = Gates()
"""The gates ``ml.evaluate`` records its verdicts under and a site may only tighten."""

BAND_SENSITIVITY = 0.90
"""Intermediate starts where 90 % of validation abnormal films score at or above."""

BAND_SPECIFICITY = 0.90
"""High starts where 90 % of validation normal films score below."""

EXAM_SCORE_DECILES = tuple(np.round(np.arange(0.1, 1.0, 0.1), 1))
"""Exam score 1..10: the decile of validation normal films the score reaches."""

Evidence = Mapping[str, Any] | None


@dataclass(frozen=True)
class Verdict:
    """One gate judged: the rule, the figures it was judged on, and what follows."""

    name: str
    passed: bool
    rule: str
    figures: str
    reason: str


def _part(evidence: Evidence, key: str) -> Mapping[str, Any]:
    if not evidence:
        return {}
    part = evidence.get(key)
    return part if isinstance(part, Mapping) else {}


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _p(p: float) -> str:
    return f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"


REMEASURE = "re-measure it with python -m ml.evaluate --write-evidence"


@functools.lru_cache(maxsize=4096)
def one_sided_p(wins: int, losses: int) -> float:
    """Exact one-sided binomial (sign) test on the discordant films of a paired comparison.

    ``wins``: films only the first method gets right, ``losses``: films only the second
    does. Under "neither is better" each discordant film is a fair coin, so the p-value is
    P(X >= wins) for X ~ Binomial(wins + losses, 1/2); 1 when no film is discordant. The
    same figure as ``scipy.stats.binomtest(wins, n, 0.5, alternative="greater")`` (a test
    holds them equal), summed in integers so the web process need not import SciPy.
    """
    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(int(wins), n + 1))
    return float(Fraction(tail, 2**n))


def paired_test(first: Sequence[Any], second: Sequence[Any]) -> dict[str, Any]:
    """Wins, losses and the one-sided p that ``first`` hits more often than ``second``
    (both lists of per-film, or per-lesion, hits in the same order)."""
    a = np.asarray(first, dtype=bool)
    b = np.asarray(second, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired hits differ in length: {a.shape} and {b.shape}")
    wins, losses = int(np.sum(a & ~b)), int(np.sum(~a & b))
    return {"wins": wins, "losses": losses, "p": one_sided_p(wins, losses)}


# --------------------------------------------------------------------------- app side


def triage_validated(evidence: Evidence, gates: Gates = FLOOR) -> bool:
    """May the score be shown to rank cases? Only when ``triage_gate`` passes."""
    return triage_gate(evidence, gates).passed


def heatmap_passed(evidence: Evidence, gates: Gates = FLOOR) -> bool:
    """May the Grad-CAM map be shown as a localisation? Only when ``heatmap_gate`` passes."""
    return heatmap_gate(evidence, gates).passed


def marks_passed(evidence: Evidence, gates: Gates = FLOOR) -> bool:
    """May region marks be shown? Only when ``marks_gate`` passes."""
    return marks_gate(evidence, gates).passed


TRIAGE = "Triage: the score ranks cases"
HEATMAP = "Heat map: shows where the model looked"
MARKS = "Region marks: point at lesions"


def triage_rule(gates: Gates = FLOOR) -> str:
    return (
        f"Film AUC at least {gates.triage_min_auc:.2f} and its 95 % lower bound above "
        f"{gates.triage_min_auc_lower:.2f}, on at least {gates.triage_min_abnormal_films} "
        "abnormal films none of which was used in training or model selection."
    )


def triage_gate(evidence: Evidence, gates: Gates = FLOOR) -> Verdict:
    """Judge the recorded film AUC: a high enough point estimate, a lower bound clear of
    chance, on enough held-out abnormal films for the interval to mean something."""
    rule = triage_rule(gates)
    fa = _part(evidence, "film_auc")
    if not fa:
        return Verdict(TRIAGE, False, rule, "not measured", "No film AUC is recorded.")
    auc, (lo, hi) = float(fa.get("auc", float("nan"))), fa.get("ci95", [float("nan")] * 2)
    figures = f"Film AUC {auc:.2f} (95 % CI {lo:.2f}–{hi:.2f}) on {fa.get('films', '?')} films"
    if "abnormal_films" not in fa or "held_out" not in fa:
        return Verdict(
            TRIAGE,
            False,
            rule,
            figures,
            "The evidence does not say how many of the films were abnormal or whether they "
            f"were held out (it was measured before this rule): {REMEASURE}.",
        )
    abnormal = int(fa["abnormal_films"])
    held = "held-out" if fa["held_out"] else "training or model-selection"
    figures = (
        f"Film AUC {auc:.2f} (95 % CI {lo:.2f}–{hi:.2f}) on {fa['films']} {held} films "
        f"of {fa.get('women', '?')} women, {abnormal} of them abnormal"
    )
    failed = []
    if not fa["held_out"]:
        failed.append("the films were used in training or model selection, so they prove nothing")
    if not auc >= gates.triage_min_auc:
        failed.append(f"the AUC is below {gates.triage_min_auc:.2f}")
    if not lo > gates.triage_min_auc_lower:
        failed.append(
            f"the lower bound is not above {gates.triage_min_auc_lower:.2f}, so it may be chance"
        )
    if abnormal < gates.triage_min_abnormal_films:
        failed.append(
            f"{abnormal} abnormal films are too few to tell "
            f"({gates.triage_min_abnormal_films} needed)"
        )
    if failed:
        return Verdict(TRIAGE, False, rule, figures, "Not met: " + "; ".join(failed) + ".")
    return Verdict(TRIAGE, True, rule, figures, "Met: the score may order the worklist.")


LOCAL_TRIAGE = "Triage on this site's screens"


def local_triage_rule(gates: Gates = FLOOR, min_cancers: int = 0) -> str:
    need = max(gates.triage_min_abnormal_films, min_cancers)
    return (
        f"Exam AUC on this site's own screens at least {gates.triage_min_auc:.2f} and its 95 % "
        f"lower bound (by woman) above {gates.triage_min_auc_lower:.2f}, on at least {need} "
        "cancers, none from a woman the version was trained or calibrated on; proposed by an "
        "admin and confirmed by an auditor."
    )


def local_triage_gate(local: Evidence, gates: Gates = FLOOR, min_cancers: int = 0) -> Verdict:
    """The triage gate's rule judged on a site's own screens with outcomes (its local
    validation: ``auc``, ``ci95``, ``screens``, ``cancers``, ``women``), on at least
    ``min_cancers`` cancers there, as a site proves a model before it orders a worklist."""
    rule = local_triage_rule(gates, min_cancers)
    if not local or local.get("auc") is None:
        return Verdict(LOCAL_TRIAGE, False, rule, "not measured", "No local figures recorded.")
    auc, (lo, hi) = float(local["auc"]), local.get("ci95") or [float("nan")] * 2
    cancers, need = int(local.get("cancers", 0)), max(gates.triage_min_abnormal_films, min_cancers)
    figures = (
        f"Exam AUC {auc:.2f} (95 % CI {lo:.2f}–{hi:.2f}) on {local.get('screens', '?')} screens "
        f"of {local.get('women', '?')} women here, {cancers} of them cancers"
    )
    failed = []
    if not auc >= gates.triage_min_auc:
        failed.append(f"the AUC is below {gates.triage_min_auc:.2f}")
    if not lo > gates.triage_min_auc_lower:
        failed.append(
            f"the lower bound is not above {gates.triage_min_auc_lower:.2f}, so it may be chance"
        )
    if cancers < need:
        failed.append(f"{cancers} cancers are too few to tell ({need} needed)")
    if failed:
        return Verdict(LOCAL_TRIAGE, False, rule, figures, "Not met: " + "; ".join(failed) + ".")
    return Verdict(LOCAL_TRIAGE, True, rule, figures, "Met on this site's own screens.")


def heatmap_rule(gates: Gates = FLOOR) -> str:
    return (
        f"At least {gates.heatmap_min_seeds} copies of the network with random weights; the "
        f"median copy's map correlates with the trained map below "
        f"{gates.heatmap_max_median_correlation:.2f} (rank correlation); and the trained "
        "map's peak falls inside the lesion on more films than the brightest point of the "
        "film does and than the best random copy does, each by a one-sided paired exact "
        f"binomial test on the films where they differ, p < {gates.max_p}."
    )


def _hits(values: Any, n: int | None = None) -> list[bool] | None:
    """A recorded hit vector, or None when missing or of the wrong length."""
    if not isinstance(values, Sequence) or isinstance(values, str):
        return None
    if n is not None and len(values) != n:
        return None
    return [bool(v) for v in values]


def _best_copy(trained: list[bool], copies: list[list[bool]]) -> tuple[int, dict[str, Any]]:
    """The random copy with the most hits (a tie goes to the one the map beats least)."""
    tests = [paired_test(trained, c) for c in copies]
    best = max(range(len(copies)), key=lambda i: (sum(copies[i]), tests[i]["p"]))
    return best, tests[best]


def _versus(test: Mapping[str, Any], other: str) -> str:
    return f"{test['wins']} films only the map, {test['losses']} only {other}, {_p(test['p'])}"


def heatmap_gate(evidence: Evidence, gates: Gates = FLOOR) -> Verdict:
    """Judge the recorded per-film peak hits: the map must depend on training (median
    seed) and localise better than the brightest point and the best random copy, each by
    a paired test, so that one film's luck or one lucky seed decides nothing."""
    rule = heatmap_rule(gates)
    hm = _part(evidence, "heatmap")
    rw = _part(hm, "random_weights")
    trained = _hits(hm.get("trained_hits"))
    n = len(trained) if trained is not None else None
    baseline = _hits(hm.get("baseline_hits"), n)
    raw = rw.get("hits") if isinstance(rw.get("hits"), Sequence) else None
    copies = [_hits(h, n) for h in raw] if raw is not None else []
    corr = [float(c) for c in rw.get("rank_correlation") or []]
    if not hm:
        return Verdict(HEATMAP, False, rule, "not measured", "No heat-map test is recorded.")
    if trained is None or baseline is None or not copies or None in copies or not corr:
        return Verdict(
            HEATMAP,
            False,
            rule,
            hm.get("reason", "figures not recorded"),
            "The evidence does not record which films each map found (it was measured "
            f"before this rule), so the paired test cannot be made: {REMEASURE}.",
        )
    hits = [c for c in copies if c is not None]
    median = float(np.median(corr))
    vs_base = paired_test(trained, baseline)
    best, vs_rand = _best_copy(trained, hits)
    seeds = list(rw.get("seeds") or range(1, len(hits) + 1))
    figures = (
        f"On {n} films with a lesion the map's peak is inside it on {sum(trained)}, the "
        f"brightest point of the film on {sum(baseline)} ({_versus(vs_base, 'the point')}), "
        f"the best of {len(hits)} random copies (seed {seeds[best]}) on {sum(hits[best])} "
        f"({_versus(vs_rand, 'the copy')}); median rank correlation with the random copies' "
        f"maps {median:.2f}"
    )
    failed = []
    if len(hits) < gates.heatmap_min_seeds:
        failed.append(f"only {len(hits)} random copies ({gates.heatmap_min_seeds} needed)")
    if not median < gates.heatmap_max_median_correlation:
        failed.append("the map barely changes when the weights are randomised")
    if not vs_base["p"] < gates.max_p:
        failed.append("it is not shown to beat the brightest point of the film")
    if not vs_rand["p"] < gates.max_p:
        failed.append("it is not shown to beat a network with random weights")
    if failed:
        return Verdict(HEATMAP, False, rule, figures, "Not met: " + "; ".join(failed) + ".")
    return Verdict(HEATMAP, True, rule, figures, "Met: heat maps are shown.")


def marks_rule(gates: Gates = FLOOR) -> str:
    return (
        f"At one false mark per image the marks find at least "
        f"{_pct(gates.marks_min_sensitivity)} of lesions, and more lesions than the "
        "brightest spots of the film, by a one-sided paired exact binomial test on the "
        f"lesions where they differ, p < {gates.max_p}."
    )


def marks_gate(evidence: Evidence, gates: Gates = FLOOR) -> Verdict:
    """Judge the recorded per-lesion finds at one false mark per image against the
    brightest-spot baseline's, paired, as for the heat map."""
    rule = marks_rule(gates)
    mk = _part(evidence, "marks")
    found = _part(mk, "found_at_1_fp")
    model = _hits(found.get("model"))
    baseline = _hits(found.get("baseline"), len(model) if model is not None else None)
    if not mk:
        return Verdict(MARKS, False, rule, "not measured", "No region-mark test is recorded.")
    if model is None or baseline is None:
        return Verdict(
            MARKS,
            False,
            rule,
            mk.get("reason", "figures not recorded"),
            "The evidence does not record which lesions the marks found (it was measured "
            f"before this rule), so the paired test cannot be made: {REMEASURE}.",
        )
    n = len(model)
    sens = sum(model) / n if n else 0.0
    test = paired_test(model, baseline)
    figures = (
        f"At one false mark per image the marks find {sum(model)} of {n} lesions "
        f"({_pct(sens)}), the brightest spots {sum(baseline)} ({test['wins']} lesions only "
        f"the marks, {test['losses']} only the spots, {_p(test['p'])})"
    )
    failed = []
    if not sens >= gates.marks_min_sensitivity:
        failed.append(f"fewer than {_pct(gates.marks_min_sensitivity)} of lesions found")
    if not test["p"] < gates.max_p:
        failed.append("not shown to beat the brightest spots of the film")
    if failed:
        return Verdict(MARKS, False, rule, figures, "Not met: " + "; ".join(failed) + ".")
    return Verdict(MARKS, True, rule, figures, "Met: region marks are shown.")


def gates_verdicts(evidence: Evidence, gates: Gates = FLOOR) -> list[Verdict]:
    """Every gate judged, in the order the models page and the card list them."""
    return [
        triage_gate(evidence, gates),
        heatmap_gate(evidence, gates),
        marks_gate(evidence, gates),
    ]


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
    held_out: bool = True,
) -> dict[str, Any]:
    """Film AUC with a CI that resamples women, since a woman's two films are not
    independent, and the counts ``triage_gate`` judges it by."""
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
        "abnormal_films": int(y.sum()),
        "normal_films": int(len(y) - y.sum()),
        "women": int(len(np.unique(groups))),
        "held_out": bool(held_out),
        "method": method,
    }


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


def reference_scores_evidence(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """The normal films' scores, kept whole: what a site watches its own scores drift from.

    Normals only: a screening population is over 99 % normal, while a validation set is
    enriched with abnormal films, so its full score distribution would read as drift at
    every site from the first week.
    """
    normals = np.asarray(p, dtype=float)[np.asarray(y).astype(int) == 0]
    return {
        "of": "the normal films its film AUC is measured on",
        "films": int(len(normals)),
        "scores": [round(float(v), 6) for v in normals],
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
