"""The AI's files shown on a case: a heatmap, only where the version's evidence allows."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET

from ... import errors
from ...http import private_file
from ...roles import CLINICAL_VIEWERS, role_required
from .. import queries as ai_queries


@require_GET
@role_required(*CLINICAL_VIEWERS)
def heatmap_file(request: HttpRequest, result_id: int) -> FileResponse:
    try:
        return private_file(ai_queries.shown_heatmap(result_id).heatmap)
    except errors.NotFound as error:
        raise Http404(error.message) from None
