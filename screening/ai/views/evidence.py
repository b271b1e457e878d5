"""The AI's files shown on a case: a heatmap, only where the version's evidence allows."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET

from ... import errors
from ...choices import Role
from ...http import private_file
from ...roles import CLINICAL_VIEWERS, has_role, role_required
from .. import queries as ai_queries


@require_GET
@role_required(*CLINICAL_VIEWERS)
def heatmap_file(request: HttpRequest, result_id: int) -> FileResponse:
    try:
        shown = ai_queries.shown_heatmap(result_id, auditor=has_role(request.user, Role.AUDITOR))
        return private_file(shown.heatmap)
    except errors.NotFound as error:
        raise Http404(error.message) from None
