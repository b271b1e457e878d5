"""The auditor dashboard's pictures: matplotlib figures rendered to SVG data URIs.

Rendered on the server (Agg backend, no browser script), in the reading-room colours,
with text kept as text so the figures stay sharp and small. matplotlib is imported on
first use, so pages that show no plot never pay for it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import simulation, stats

TEXT, MUTED, PANEL, LINE = "#e6e9ee", "#9aa6b2", "#161b22", "#2d3643"
COLOURS = ["#4da3ff", "#ff9f43", "#3ecf8e", "#c9b3ff", "#ff5d5d", "#ffd699", "#a6f0cc"]
STYLE = {
    "figure.facecolor": PANEL,
    "axes.facecolor": PANEL,
    "axes.edgecolor": LINE,
    "axes.labelcolor": TEXT,
    "axes.titlecolor": TEXT,
    "axes.prop_cycle": None,
    "text.color": TEXT,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "grid.color": LINE,
    "legend.facecolor": PANEL,
    "legend.edgecolor": LINE,
    "svg.fonttype": "none",
    "svg.hashsalt": "mammo-portal",
    "font.size": 9,
}


@contextmanager
def _figure(
    width: float, height: float, ncols: int = 1, **margins: float
) -> Iterator[tuple[Any, Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cycler import cycler

    style: dict[Any, Any] = {**STYLE, "axes.prop_cycle": cycler(color=COLOURS)}
    with matplotlib.rc_context(style):
        # Fixed margins: tight_layout would cost a second render for every figure.
        fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
        fig.subplots_adjust(**margins)
        try:
            yield fig, axes[0]
        finally:
            plt.close(fig)


def _data_uri(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _point(performance: stats.Performance) -> tuple[float, float] | None:
    sens, spec = performance.sensitivity.value, performance.specificity.value
    if sens is None or spec is None:
        return None
    return 1 - spec, sens


def _drawn(xs: list[float], ys: list[float], cells: int = 1000) -> tuple[Any, Any]:
    """The points of a monotone curve that move it by a thousandth of an axis or more: a
    million screens' ROC has tens of thousands of points, and the picture the same."""
    import numpy as np

    x, y = np.asarray(xs), np.asarray(ys)
    if len(x) <= 2 * cells:
        return x, y
    cell = np.floor(x * cells) * (cells + 1) + np.floor(y * cells)
    keep = np.ones(len(x), bool)
    keep[1:-1] = cell[1:-1] != cell[:-2]
    return x[keep], y[keep]


def roc_plot(
    roc: stats.Roc,
    readers: list[tuple[str, stats.Performance]],
    ai_points: list[tuple[str, stats.Performance]],
    ai_name: str = "AI",
) -> str | None:
    """The AI's ROC curve with each reader's and the final decision's own operating point."""
    if roc.auc is None:
        return None
    with _figure(4.6, 4.3, left=0.13, right=0.97, bottom=0.11, top=0.97) as (fig, (ax,)):
        label = f"{ai_name} score (AUC {roc.auc:.3f})"
        ax.plot(*_drawn(roc.fpr, roc.tpr), color=COLOURS[0], linewidth=2, label=label)
        ax.plot([0, 1], [0, 1], "--", color=MUTED, linewidth=0.8)
        markers = iter("osD^vP*X")
        for (name, performance), colour in zip(readers, COLOURS[1:] * 3, strict=False):
            if (xy := _point(performance)) is not None:
                ax.plot(*xy, next(markers, "o"), color=colour, markersize=8, label=name)
        for name, performance in ai_points:
            if (xy := _point(performance)) is not None:
                ax.plot(*xy, "x", color=TEXT, markersize=9, markeredgewidth=2)
                ax.annotate(name, xy, textcoords="offset points", xytext=(6, -10), color=TEXT)
        ax.set(
            xlabel="1 - specificity", ylabel="sensitivity", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02)
        )
        ax.grid(True, linewidth=0.5)
        ax.legend(loc="lower right", fontsize=8)
        return _data_uri(fig)


def confusion_plot(performances: list[tuple[str, stats.Performance]]) -> str | None:
    """One 2×2 matrix per decision-maker: outcome down, decision across."""
    shown = [(n, p) for n, p in performances if p.tp + p.fp + p.fn + p.tn]
    if not shown:
        return None
    margins = {"left": 0.9 / (2.4 * len(shown) + 0.9), "right": 0.99, "bottom": 0.16, "top": 0.9}
    with _figure(2.4 * len(shown) + 0.9, 2.6, ncols=len(shown), wspace=0.55, **margins) as (
        fig,
        axes,
    ):
        for ax, (name, performance) in zip(axes, shown, strict=True):
            matrix = performance.confusion
            top = max(max(r) for r in matrix) or 1
            ax.imshow(matrix, cmap="Blues", vmin=0, vmax=top)
            for i in range(2):
                for j in range(2):
                    value = matrix[i][j]
                    ink = "white" if value > top / 2 else "#0e1116"  # legible on any cell
                    ax.text(j, i, str(value), ha="center", va="center", color=ink, fontsize=12)
            ax.set_xticks([0, 1], ["no recall", "recall"])
            ax.set_yticks([0, 1], ["no cancer", "cancer"])
            ax.set_title(name, fontsize=9)
        return _data_uri(fig)


def reliability_plot(bins: list[Any], calibrated: bool) -> str | None:
    """Observed cancer rate per score decile (Wilson 95 % bars) against the mean score, or
    against the mean calibrated probability where the version has a validated calibration:
    only then does the diagonal mean "as often as it says"."""
    if not bins:
        return None
    xs = [b.mean_calibrated if calibrated else b.mean_score for b in bins]
    ys = [b.observed.value for b in bins]
    low = [y - b.observed.ci.low for y, b in zip(ys, bins, strict=True)]
    high = [b.observed.ci.high - y for y, b in zip(ys, bins, strict=True)]
    with _figure(4.6, 3.6, left=0.13, right=0.97, bottom=0.13, top=0.97) as (fig, (ax,)):
        ax.errorbar(xs, ys, yerr=[low, high], fmt="o-", color=COLOURS[0], capsize=3,
                    label="observed cancer rate")  # fmt: skip
        if calibrated:
            ax.plot([0, 1], [0, 1], "--", color=MUTED, linewidth=0.8, label="as calibrated")
        top = max(max(ys) + max(high), 0.05)
        ax.set(
            xlabel="mean calibrated probability" if calibrated else "mean score in decile",
            ylabel="cancers / screens",
            xlim=(-0.02, 1.02),
            ylim=(-0.005, min(1.02, top * 1.1)),
        )
        ax.grid(True, linewidth=0.5)
        ax.legend(fontsize=7, loc="upper left")
        return _data_uri(fig)


def threshold_plot(thresholds: list[Any], current: float, what_if: float | None) -> str | None:
    """Sensitivity, specificity and recall rate had the AI used another threshold."""
    curves = {
        "sensitivity": [w.performance.sensitivity.value for w in thresholds],
        "specificity": [w.performance.specificity.value for w in thresholds],
        "recall rate": [w.performance.recall_rate.value for w in thresholds],
    }
    if all(v is None for values in curves.values() for v in values):
        return None
    xs = [w.threshold for w in thresholds]
    with _figure(4.6, 3.2, left=0.1, right=0.97, bottom=0.15, top=0.97) as (fig, (ax,)):
        for name, values in curves.items():
            points = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=name)
        ax.axvline(current, color=TEXT, linewidth=1, label=f"version threshold {current:.2f}")
        if what_if is not None:
            ax.axvline(what_if, color=COLOURS[4], linestyle="--", label=f"what-if {what_if:.2f}")
        ax.set(xlabel="AI threshold", ylim=(-0.02, 1.02), xlim=(0, 1))
        ax.grid(True, linewidth=0.5)
        ax.legend(fontsize=7, loc="best", framealpha=0.85)
        return _data_uri(fig)


# How each policy is drawn on the simulator's plot: routing and normal triage with single
# reading replay alike at one cut, so normal triage is dashed over routing's line.
POLICY_LINES = {
    "standard": {"color": MUTED, "linestyle": "-"},
    "routing": {"color": COLOURS[0], "linestyle": "-"},
    "normal_triage": {"color": COLOURS[1], "linestyle": "--"},
    "safety_net": {"color": COLOURS[2], "linestyle": "-"},
    "ai_second_reader": {"color": COLOURS[3], "linestyle": "-"},
}


def simulation_plot(result: simulation.Simulation) -> str:
    """Each policy's reads, recall rate, cancers found and cancers sent to single reading,
    against its cut; the chosen high and normal cuts marked."""
    panels = [
        ("reads per 1,000 screens", lambda r: r.reads_per_1000),
        ("recall rate (%)", lambda r: _percent(r.recall_rate.value)),
        ("cancers detected per 1,000", lambda r: r.cancers_per_1000),
        ("cancers sent to single reading", lambda r: r.single_read_cancers),
    ]
    margins = {"left": 0.05, "right": 0.99, "bottom": 0.3, "top": 0.9, "wspace": 0.3}
    with _figure(11.0, 3.0, ncols=len(panels), **margins) as (fig, axes):
        for ax, (title, figure) in zip(axes, panels, strict=True):
            for policy, curve in result.curves.items():
                points = [
                    (cut, figure(r))
                    for cut, r in zip(result.steps, curve, strict=True)
                    if figure(r) is not None
                ]
                if points:
                    label = str(simulation.ReadingPolicy(policy).label)
                    ax.plot(*zip(*points, strict=True), label=label, linewidth=1.5,
                            **POLICY_LINES[policy])  # fmt: skip
            ax.axvline(result.high, color=TEXT, linewidth=0.8)
            ax.axvline(result.normal, color=TEXT, linewidth=0.8, linestyle=":")
            ax.set(xlabel="cut on the AI score", xlim=(0, 1))
            ax.set_title(title, fontsize=9)
            ax.grid(True, linewidth=0.5)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
        return _data_uri(fig)


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def trend_plot(trend: list[Any]) -> str | None:
    """Week by week: screens received (bars) and recall, arbitration, AI agreement (lines)."""
    if not trend:
        return None
    weeks, labels = week_positions([p.week for p in trend])
    with _figure(7.0, 3.6, left=0.08, right=0.92, bottom=0.33, top=0.97) as (fig, (ax,)):
        ax.bar(weeks, [p.received for p in trend], width=6, color=LINE, label="screens received")
        ax.set_ylabel("screens")
        rates = ax.twinx()
        for name, attr, colour in [
            ("recall rate", "recall_rate", COLOURS[1]),
            ("arbitration rate", "arbitration_rate", COLOURS[4]),
            ("AI agrees with final", "ai_agreement", COLOURS[0]),
        ]:
            points = [
                (at, getattr(p, attr))
                for at, p in zip(weeks, trend, strict=True)
                if getattr(p, attr) is not None
            ]
            if points:
                rates.plot(*zip(*points, strict=True), marker="o", color=colour, label=name)
        rates.set(ylim=(-0.02, 1.02), ylabel="rate")
        rates.tick_params(colors=MUTED)
        handles = ax.get_legend_handles_labels()
        more = rates.get_legend_handles_labels()
        rates.legend(
            handles[0] + more[0],
            handles[1] + more[1],
            fontsize=7,
            ncol=4,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.2),
        )
        step = max(1, len(weeks) // 10)
        ax.set_xticks(weeks[::step], labels[::step])
        fig.autofmt_xdate()
        return _data_uri(fig)


def week_positions(mondays: list[dt.date]) -> tuple[list[dt.datetime], list[str]]:
    """Where each week's bar and points stand, and its tick label: mid-week (Thursday noon),
    so a bar six days wide stands inside its own week, and the label names the week ("week
    of 30 Nov 2026") instead of a Monday days before most of its screens."""
    middle = [dt.datetime.combine(monday, dt.time(12)) + dt.timedelta(days=3) for monday in mondays]
    return middle, [f"week of {monday:%-d %b %Y}" for monday in mondays]


def report_plots(report: Any) -> dict[str, str | None]:
    """Every picture of the auditor dashboard for one ``reporting.Report``; each one
    rendered once per input (``_kept``)."""
    version = report.filter.model_version
    ai, ai_name = report.ai_performance, report.ai_name
    marks = [(f"{ai_name} at {version.threshold:.2f}", ai)] if version is not None else []
    what_if = report.what_if
    if what_if is not None:
        marks.append((f"what-if {what_if.threshold:.2f}", what_if.performance))
    return {
        "roc_plot": _kept(roc_plot, report.roc, report.reader_points, marks, ai_name),
        "confusion_plot": _kept(confusion_plot, report.performances),
        "threshold_plot": _kept(
            threshold_plot,
            report.thresholds,
            version.threshold if version is not None else 0.5,
            what_if.threshold if what_if is not None else None,
        ),
        "trend_plot": _kept(trend_plot, report.trend),
    }


def _kept(plot: Callable[..., str | None], *inputs: Any) -> str | None:
    """``plot(*inputs)``, kept for ``REPORT_CACHE_SECONDS`` under a digest of its inputs: a
    recomputed report whose figures did not move draws the same picture, and matplotlib's
    rendering is a third of a recomputed dashboard's time at a million screens."""
    from django.conf import settings
    from django.core.cache import cache

    digest = hashlib.sha256(pickle.dumps((plot.__name__, inputs), protocol=5)).hexdigest()
    key = f"plot:{digest}"
    found = cache.get(key)
    if found is None:
        found = plot(*inputs)
        cache.set(key, found or "", settings.REPORT_CACHE_SECONDS)
    return found or None
