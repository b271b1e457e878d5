"""What every capability's REST endpoints share: domain errors as responses, ids from the
path, downloads that ignore ``Accept``, the schema's own negotiation, and a JSON 404 for
unknown paths."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import errors
from ..http import object_id


def error_response(error: errors.DomainError) -> Response:
    return Response({"detail": error.message}, status=error.status)


def path_id(pk: str, noun: str) -> int:
    """The id in the path as the integer the database holds: anything else is a 404 that
    says why, never a query (or a 500) with text where a number belongs."""
    found = object_id(pk)
    if found is None:
        raise NotFound(f"No such {noun}: ids are whole numbers from 1.")
    return found


@extend_schema(exclude=True)
class UnknownEndpointView(APIView):
    """Any other path under ``/api/``: a JSON 404 an API client can parse, where Django would
    answer its HTML page (a negative id, a path with a typo)."""

    def not_found(self, request: Request, *args: object, **kwargs: object) -> Response:
        raise NotFound("No such endpoint or object: ids are whole numbers from 1.")

    get = post = put = patch = delete = not_found


class BinaryDownloadView(APIView):
    """A file download. The body is the file whatever the ``Accept`` header asks for, and a
    refusal is JSON: content negotiation never turns a download into a 406."""

    def perform_content_negotiation(self, request: Request, force: bool = False):
        return super().perform_content_negotiation(request, force=True)


class SchemaNegotiation(DefaultContentNegotiation):
    """The schema document's ``?format=json`` or ``yaml``, else Accept: the one view that
    keeps the parameter (``URL_FORMAT_OVERRIDE`` is off), and an unknown value is no 404."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: Any = None
    ) -> Any:
        renderers = list(renderers)
        wanted = request.query_params.get("format")
        for renderer in renderers:
            if wanted and renderer.format == wanted:
                return renderer, renderer.media_type
        return super().select_renderer(request, renderers)
