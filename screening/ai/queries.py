"""What a reader may see of a case's AI: per-image results, live states, shown heatmaps;
and, for admins and auditors, who registered each model version."""

from __future__ import annotations

from collections.abc import Iterable

from ..choices import AIStatus, AuditAction
from ..errors import NotFound
from ..models import AIResult, AuditEvent, Case, ModelVersion


def case_ai_results(case: Case) -> dict[int, AIResult]:
    """The shown model version's finished result for each image of the case."""
    if case.ai_result is None:
        return {}
    results = AIResult.for_images.filter(
        case=case,
        model_version_id=case.ai_result.model_version_id,
        status=AIStatus.DONE,
    ).select_related("model_version", "image")
    return {r.image_id: r for r in results if r.image_id is not None}


def case_ai_states(cases: list[Case]) -> dict[int, str]:
    """What a reader sees of each case's AI, in one query for a whole page of cases.

    The shown result's status (done or failed) when there is one; otherwise the work in
    flight for its images (running before queued); otherwise "pending": no job yet.
    """
    waiting = [c.pk for c in cases if c.ai_result_id is None]
    in_flight: dict[int, set[str]] = {pk: set() for pk in waiting}
    if waiting:
        rows = AIResult.for_images.filter(
            case_id__in=waiting,
            status__in=[AIStatus.QUEUED, AIStatus.RUNNING],
        ).values_list("case_id", "status")
        for case_id, status in rows.distinct():
            in_flight[case_id].add(status)
    states = {}
    for case in cases:
        if case.ai_result is not None:
            states[case.pk] = case.ai_result.status
        elif AIStatus.RUNNING in in_flight[case.pk]:
            states[case.pk] = AIStatus.RUNNING.value
        elif AIStatus.QUEUED in in_flight[case.pk]:
            states[case.pk] = AIStatus.QUEUED.value
        else:
            states[case.pk] = "pending"
    return states


def shown_heatmap(result_id: int) -> AIResult:
    """The result whose heatmap may be shown: stored, and its version's heatmaps passed
    the randomisation test (ml.evidence); NotFound says why not."""
    result = AIResult.objects.select_related("model_version").filter(pk=result_id).first()
    if result is None or not result.heatmap:
        raise NotFound("No heatmap for this result.")
    if not result.shows_heatmap:
        raise NotFound(heatmap_hidden(result))
    return result


def heatmap_hidden(result: AIResult) -> str:
    return f"Heatmaps of this version are hidden: {result.model_version.heatmap_reason}"


def registrations(versions: Iterable[ModelVersion]) -> dict[int, AuditEvent]:
    """Each version's first registration event (who brought it, when, which checksum)."""
    events = AuditEvent.objects.filter(
        action=AuditAction.MODEL_REGISTERED,
        object_type=ModelVersion._meta.model_name,
        object_id__in=[str(v.pk) for v in versions],
    ).order_by("-pk")
    return {int(event.object_id): event for event in events}  # the earliest wins
