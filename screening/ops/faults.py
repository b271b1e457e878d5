"""What a request answers when a part under the app fails: the database not answering
(503, try again) or the media storage full (507), instead of Django's bare 500.

Django hands every uncaught exception, from a view or from a middleware (the session and
token look-ups reach the database before any view), to the ``handler500`` view while the
exception is being handled, so this is the one place that sees them all. Nothing here may
touch the database: the page is rendered without the request's context processors, which
would look the user up.
"""

from __future__ import annotations

import sys
from http import HTTPStatus

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

from ..errors import StorageFull
from ..storage import NO_SPACE

# A database restart or fail-over takes seconds to a minute: clients come back after this.
RETRY_AFTER_SECONDS = 30
DATABASE_DOWN = (
    "The database is not answering. Nothing you saved has been lost; try again in a minute."
)
STORAGE_FULL = (
    "The image storage is full, so nothing from this request was stored. "
    "Ask an administrator to free space, then send it again."
)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a fault of the database or the storage answers as itself."""
    error = sys.exc_info()[1]
    if isinstance(error, (OperationalError, InterfaceError)):
        response = _answer(
            request, HTTPStatus.SERVICE_UNAVAILABLE, "database_unavailable", DATABASE_DOWN
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if isinstance(error, StorageFull) or (isinstance(error, OSError) and error.errno in NO_SPACE):
        return _answer(request, HTTPStatus.INSUFFICIENT_STORAGE, "storage_full", STORAGE_FULL)
    return defaults.server_error(request)


def _answer(request: HttpRequest, status: HTTPStatus, code: str, message: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"detail": message, "code": code}, status=status)
    page = render_to_string("fault.html", {"title": status.phrase, "message": message})
    return HttpResponse(page, status=status)


def _wants_json(request: HttpRequest) -> bool:
    """API and DICOMweb clients parse JSON; a browser asking for a page gets one."""
    if request.path_info.startswith(("/api/", "/dicomweb/")):
        return True
    accept = request.headers.get("Accept", "")
    return "json" in accept and "text/html" not in accept
