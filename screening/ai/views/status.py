"""Small JSON views the pages poll, so AI progress shows without a manual reload."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from ...choices import Role
from ...http import object_id
from ...models import Case
from ...roles import role_required
from .. import queries as ai_queries


@require_GET
@role_required(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)
def case_ai_status(request: HttpRequest, case_id: int) -> JsonResponse:
    case = get_object_or_404(Case.objects.select_related("ai_result"), pk=case_id)
    images = ai_queries.readers_image_results().filter(case=case)
    if case.ai_result is not None:
        images = images.filter(model_version_id=case.ai_result.model_version_id)
    return JsonResponse(
        {
            "case": case.pk,
            "status": case.status,
            "ai_status": ai_queries.case_ai_states([case])[case.pk],
            "images": {str(r.image_id): r.status for r in images.only("image_id", "status")},
        }
    )


@require_GET
@role_required(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)
def worklist_ai_status(request: HttpRequest) -> JsonResponse:
    """Status and AI state of the cases on the reader's current page (ids in the query)."""
    given = [i for i in request.GET.get("ids", "").split(",") if i][:200]
    found = [object_id(i.strip()) for i in given]
    ids = [i for i in found if i is not None]
    if len(ids) != len(found):
        return JsonResponse({"error": "ids must be whole numbers from 1"}, status=400)
    cases = list(Case.objects.filter(pk__in=ids).select_related("ai_result"))
    states = ai_queries.case_ai_states(cases)
    return JsonResponse({str(c.pk): f"{c.status}:{states[c.pk]}" for c in cases})
