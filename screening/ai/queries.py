"""What a reader may see of a case's AI: per-image results, live states, shown heatmaps;
and, for admins and auditors, who registered each model version.

Readers see one version's results on a case: the one its ``ai_result`` points at. A
version in silent trial never becomes that (``inference.aggregate_case``), and its work in
flight and its heatmap files are kept from readers here.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from ..choices import AIStatus, AuditAction, SilentTrial
from ..errors import NotFound
from ..models import AIResult, AuditEvent, Case, ModelVersion
from ..pathway import CaseAI


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


def overlay_drawable(results: Iterable[AIResult]) -> bool:
    """Whether anything of the AI may be drawn on these films (a heatmap or region marks the
    version's evidence lets readers see): the viewer offers its overlay controls only then."""
    return any(result.shows_heatmap or result.shown_marks for result in results)


def ai_awaited(case: Case) -> bool:
    """Whether the case's AI may still arrive in place (live.js polls while it may): the
    viewer keeps room for the overlay controls, so films do not move when it comes."""
    return case.ai_result is None or case.ai_result.status not in (AIStatus.DONE, AIStatus.FAILED)


def case_ai_states(cases: list[Case]) -> dict[int, str]:
    """What a reader sees of each case's AI, in one query for a whole page of cases.

    The shown result's status (done or failed) when there is one; otherwise the work in
    flight for its images (running before queued); otherwise "pending": no job yet.
    """
    waiting = [c.pk for c in cases if c.ai_result_id is None]
    in_flight: dict[int, set[str]] = {pk: set() for pk in waiting}
    if waiting:
        rows = (
            readers_image_results()
            .filter(
                case_id__in=waiting,
                status__in=[AIStatus.QUEUED, AIStatus.RUNNING],
            )
            .values_list("case_id", "status")
        )
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


def readers_image_results() -> QuerySet[AIResult]:
    """Per-image results of versions whose work readers may follow (not a silent trial's)."""
    return AIResult.for_images.filter(model_version__silent_trial=SilentTrial.NONE)


def shown_to_readers(result: AIResult) -> bool:
    """Whether a result is of the version the case shows readers (its ``ai_result``'s)."""
    shown = result.case.ai_result
    return shown is not None and shown.model_version_id == result.model_version_id


def shown_heatmap(result_id: int, auditor: bool = False) -> AIResult:
    """The result whose heatmap may be shown: stored, of the version the case shows (an
    auditor may see any version's, a silent trial's too), and its version's heatmaps passed
    the randomisation test (ml.evidence); NotFound says why not."""
    result = (
        AIResult.objects.select_related("model_version", "case__ai_result")
        .filter(pk=result_id)
        .first()
    )
    if result is None or not result.heatmap or not (auditor or shown_to_readers(result)):
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


def version_case_scores(version: ModelVersion) -> QuerySet[AIResult]:
    """Every case-level result of one version, newest first: what an auditor compares a
    silent trial on. Never for a reader's surface."""
    return AIResult.for_cases.filter(model_version=version).order_by("-finished_at", "-pk")


def case_ai(case: Case) -> CaseAI | None:
    """What a reading policy may know of the case's shown AI (None: no finished result).

    Usable only from the active version validated for triage: a policy never routes or
    prompts a read on the word of a version not trusted to order the worklist.
    """
    result = case.ai_result
    if result is None or result.status != AIStatus.DONE or result.probability is None:
        return None
    version = result.model_version
    return CaseAI(
        usable=version.is_active and version.validated_for_triage,
        band=case.risk_band,
        recall=case.ai_recommends_recall,
        validated_bands=bool((version.evidence or {}).get("bands")),
    )
