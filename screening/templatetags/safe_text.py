"""The ``bidi_safe`` filter: free text on the pages with its bidirectional controls shown
as visible markers, never obeyed (``screening.text``)."""

from __future__ import annotations

from typing import Any

from django import template

from ..text import neutralise_bidi

register = template.Library()


@register.filter(is_safe=True)
def bidi_safe(value: Any) -> Any:
    """For free text in templates; the markers are plain ASCII, so escaping is unchanged."""
    if value is None or isinstance(value, int | float):
        return value
    return neutralise_bidi(str(value))
