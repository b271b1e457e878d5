"""Binary classification figures: thresholds, metrics, bootstrap confidence intervals, plots.

Pure NumPy/scikit-learn; the plotting functions write PNG files with matplotlib's Agg
backend and never display anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def threshold_for_sensitivity(y: np.ndarray, p: np.ndarray, target: float = 0.90) -> float:
    """The highest threshold whose sensitivity (recall of positives) is at least ``target``.

    Screening favours sensitivity: the threshold is fixed on validation data and then
    applied unchanged to the test set. Predictions ``p >= threshold`` count as positive.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    pos = np.sort(p[y == 1])[::-1]
    if len(pos) == 0:
        return 0.5
    k = int(np.ceil(target * len(pos)))  # positives that must be caught
    k = min(max(k, 1), len(pos))
    return float(pos[k - 1])


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    from sklearn.metrics import (
        accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = len(np.unique(y)) == 2
    return {
        "threshold": float(threshold),
        "n": int(len(y)),
        "positives": int(y.sum()),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "sensitivity": float(recall_score(y, pred, zero_division=0)),
        "specificity": float(tn / (tn + fp)) if (tn + fp) else float("nan"),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
        "classification_report": classification_report(
            y, pred, labels=[0, 1], target_names=["negative", "positive"], zero_division=0
        ),
    }


def bootstrap_auc_ci(
    y: np.ndarray,
    p: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the ROC AUC.

    With ``groups`` (e.g. patient ids) whole groups are resampled, since patches of one
    woman are not independent; otherwise single samples are.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    if groups is None:
        index_sets = [np.array([i]) for i in range(len(y))]
    else:
        groups = np.asarray(groups)
        index_sets = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    aucs = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(index_sets), len(index_sets))
        idx = np.concatenate([index_sets[i] for i in pick])
        if len(np.unique(y[idx])) < 2:
            continue
        aucs.append(roc_auc_score(y[idx], p[idx]))
    if not aucs:
        return float("nan"), float("nan")
    lo, hi = np.percentile(aucs, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def evaluate_scores(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    n_boot: int = 1000,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics at the chosen threshold and at 0.5, with the AUC's bootstrap 95% CI."""
    at_t = binary_metrics(y, p, threshold)
    at_half = binary_metrics(y, p, 0.5)
    lo, hi = bootstrap_auc_ci(y, p, n_boot=n_boot, groups=groups, seed=seed)
    return {"auc": at_t["auc"], "auc_ci95": [lo, hi], "at_threshold": at_t, "at_0_5": at_half}


ESTIMATOR = (
    "pooled out-of-fold film AUC: every film scored once per repeat by the fold model that "
    "never saw its woman, the scores of all folds pooled into one ROC AUC per repeat, the "
    "mean over repeats; 95 % CI by percentile bootstrap over women"
)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def pooled_oof_auc(
    rows: list[dict[str, Any]], key: str = "score", n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The project's one cross-validation estimator (``ESTIMATOR``), for every command.

    ``rows`` are out-of-fold films: ``label``, ``patient``, the score under ``key`` and
    ``repeat`` (0 when absent). Pooling, not the mean of per-fold AUCs: the app applies
    one model with one threshold to every film, and a fold model's offset, which a per-fold
    AUC hides, costs it. A bootstrap draw of women recomputes every repeat's pooled AUC, so
    a woman counts once however often she was scored.
    """
    repeats = sorted({r.get("repeat", 0) for r in rows})
    y = np.array([r["label"] for r in rows]).astype(int)
    p = np.array([r[key] for r in rows], dtype=float)
    women = np.array([r["patient"] for r in rows])
    reps = np.array([r.get("repeat", 0) for r in rows])
    aucs = [_auc(y[reps == r], p[reps == r]) for r in repeats]
    ids = np.unique(women)
    figures = {
        "auc": float(np.mean(aucs)),
        "per_repeat": aucs,
        "films": len({r.get("refnum", i) for i, r in enumerate(rows)}),
        "women": int(len(ids)),
        "estimator": ESTIMATOR,
    }
    if len(repeats) == 1:
        return {**figures, "ci95": list(bootstrap_auc_ci(y, p, n_boot, groups=women, seed=seed))}
    rng = np.random.default_rng(seed)
    index = {w: np.flatnonzero(women == w) for w in ids}
    draws = []
    for _ in range(n_boot):
        idx = np.concatenate([index[w] for w in rng.choice(ids, len(ids))])
        per = [_auc(y[idx][reps[idx] == r], p[idx][reps[idx] == r]) for r in repeats]
        if all(a == a for a in per):
            draws.append(float(np.mean(per)))
    lo, hi = np.percentile(draws, [2.5, 97.5]) if draws else (float("nan"),) * 2
    return {**figures, "ci95": [float(lo), float(hi)]}


# --------------------------------------------------------------------------- plots


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(y: np.ndarray, p: np.ndarray, path: str | Path, title: str = "ROC") -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC = {roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pr(
    y: np.ndarray, p: np.ndarray, path: str | Path, title: str = "Precision-recall"
) -> None:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _plt()
    prec, rec, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(rec, prec, label=f"AP = {average_precision_score(y, p):.3f}")
    ax.axhline(np.mean(y), linestyle="--", color="grey", linewidth=0.8, label="prevalence")
    ax.set(xlabel="recall", ylabel="precision", title=title, ylim=(0, 1.02))
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_text_colours(matrix: np.ndarray, cmap: str = "Blues") -> list[list[str]]:
    """White on cells whose colour is dark, black elsewhere, so every count stays legible."""
    import matplotlib

    m = np.asarray(matrix, dtype=float)
    span = m.max() - m.min()
    norm = (m - m.min()) / span if span > 0 else np.zeros_like(m)
    rgb = matplotlib.colormaps[cmap](norm)[..., :3]
    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722])
    return [["white" if v < 0.5 else "black" for v in row] for row in luminance]


def plot_confusion(matrix: list[list[int]], path: str | Path, title: str = "Confusion") -> None:
    plt = _plt()
    m = np.asarray(matrix)
    colours = confusion_text_colours(m)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(
            j,
            i,
            str(v),
            ha="center",
            va="center",
            fontsize=22,
            fontweight="bold",
            color=colours[i][j],
        )
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["neg", "pos"],
        yticklabels=["neg", "pos"],
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    ax.tick_params(labelsize=12)
    ax.xaxis.label.set_size(12)
    ax.yaxis.label.set_size(12)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_history(history: dict[str, list[float]], path: str | Path) -> None:
    plt = _plt()
    keys = [k for k in history if not k.startswith("val_") and f"val_{k}" in history]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3.4))
    axes = np.atleast_1d(axes)
    for ax, k in zip(axes, keys, strict=False):
        ax.plot(history[k], label="train")
        ax.plot(history[f"val_{k}"], label="validation")
        ax.set(xlabel="epoch", title=k)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(
    y: np.ndarray, p: np.ndarray, metrics: dict[str, Any], out: str | Path, prefix: str
) -> list[str]:
    """ROC, precision-recall and confusion-matrix PNGs; returns the file names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"{prefix}_roc.png", f"{prefix}_pr.png", f"{prefix}_confusion.png"]
    if len(np.unique(y)) == 2:
        plot_roc(y, p, out / names[0], title=f"ROC ({prefix})")
        plot_pr(y, p, out / names[1], title=f"Precision-recall ({prefix})")
    else:
        names = names[2:]
    t = metrics["at_threshold"]
    plot_confusion(
        t["confusion_matrix"], out / names[-1], title=f"{prefix}, threshold {t['threshold']:.3f}"
    )
    return names
