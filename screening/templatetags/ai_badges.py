"""``{% ai_badge case as badge %}``: the badge of ``screening.ai.badges`` in a template."""

from __future__ import annotations

from django import template

from ..ai.badges import Badge
from ..ai.badges import ai_badge as badge_for
from ..models import Case

register = template.Library()


@register.simple_tag
def ai_badge(case: Case) -> Badge:
    return badge_for(case, getattr(case, "ai_state", "pending"))
