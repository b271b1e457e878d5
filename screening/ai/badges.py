"""The AI badge a case shows (worklist row, case page): one rule, computed once per case.

Kept in Python rather than template conditionals so a worklist page renders 50 rows
without 50 nested includes, and so every page words the same state the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..choices import AIStatus
from ..models import Case
from ..text import neutralise_bidi


@dataclass(frozen=True)
class Badge:
    css: str
    text: str
    title: str = ""


WAITING = {
    "running": Badge("band-pending band-live", "AI running…"),
    "queued": Badge("band-pending", "AI queued"),
}
PENDING = Badge("band-pending", "AI pending")


NOT_VALIDATED_TEXT = "AI not validated"


def ai_badge(case: Case, state: str = "pending") -> Badge:
    """Failed, waiting (``state`` from ``queries.case_ai_states``), or the score: as a
    ranking with its band where the version is validated for triage; otherwise no score at
    all, only that the version is not validated (``ModelVersion.not_shown_reason``)."""
    result = case.ai_result
    if result is not None and result.status == AIStatus.FAILED:
        return Badge("band-failed", "AI failed", neutralise_bidi(result.error))
    if result is None or case.ai_score is None:
        return WAITING.get(state, PENDING)
    version = result.model_version
    if not version.validated_for_triage:
        return Badge("band-unvalidated", NOT_VALIDATED_TEXT, version.not_shown_reason)
    exam = result.exam_score
    score = f"{exam}/10" if exam is not None else f"{case.ai_score:.2f}"
    band = case.risk_band
    return Badge(f"band-{band}", f"{score} · {band.capitalize()}", case.band_description)
