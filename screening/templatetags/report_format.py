"""How the auditor pages print figures: percentages with their intervals, dashes for none."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from ..audit.stats import Interval, Proportion

register = template.Library()
NONE = "—"


@register.filter
def pct(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{100 * value:.{digits}f} %"


@register.filter
def num(value: float | None, digits: int = 2) -> str:
    return NONE if value is None else f"{value:.{digits}f}"


@register.filter
def ci(interval: Interval | None, as_percent: bool = True) -> str:
    """'(12.3–45.6 %)' or '(0.41–0.77)'; nothing when no interval exists."""
    if interval is None:
        return ""
    if as_percent:
        return f"({100 * interval.low:.1f}–{100 * interval.high:.1f} %)"
    return f"({interval.low:.2f}–{interval.high:.2f})"


@register.filter
def proportion(value: Proportion) -> str:
    """'84.0 % (70.1–92.4 %) 42/50', the fraction shown so small numbers are not hidden."""
    if value.value is None:
        return NONE
    return format_html(
        '{} <span class="small">{}<br>{}/{}</span>',
        pct(value.value),
        ci(value.ci),
        value.successes,
        value.n,
    )


@register.filter
def decision(value: bool | None) -> str:
    return NONE if value is None else ("Recall" if value else "No recall")


@register.filter
def pvalue(value: float | None) -> str:
    """'p = 0.031', 'p < 0.001', or a dash where no test was made."""
    if value is None:
        return NONE
    return f"p = {value:.3f}" if value >= 0.001 else "p < 0.001"


@register.filter
def readable_detail(detail: object) -> str:
    """An audit event's detail as an auditor reads it: "reason: stable · films: 4", nested
    values as "ai.score: 0.9", lists comma-separated; never a Python dict's repr. Keys in
    alphabetical order: PostgreSQL's jsonb keeps no order of its own to follow."""
    if not isinstance(detail, dict):
        return "" if detail in (None, "") else str(detail)
    return " · ".join(f"{key}: {value}" for key, value in _flat(detail, ""))


def _flat(detail: dict, prefix: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in sorted(detail.items(), key=lambda item: str(item[0])):
        name = f"{prefix}{str(key).replace('_', ' ')}"
        if isinstance(value, dict):
            pairs += _flat(value, f"{name}.") if value else [(name, NONE)]
        elif isinstance(value, list | tuple):
            pairs.append((name, ", ".join(map(_word, value)) or NONE))
        else:
            pairs.append((name, _word(value)))
    return pairs


def _word(value: object) -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return readable_detail(value)
    return str(value)
