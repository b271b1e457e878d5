"""What pages and the API share over HTTP: paging, private files and downloads, the request
size refusal, and refusal pages that keep the site's layout (a refused reader still has
navigation)."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from .text import neutralise_bidi

# Images and heatmaps are patient data: never kept in a browser's or a proxy's cache.
NO_STORE = "private, no-store"
# What a stored file is, by the extension the upload gave it (never the uploaded name).
MEDIA_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "dcm": "application/dicom",
}


class Download(Protocol):
    """A file made for the user to save (``interop.actions.DicomExport``)."""

    @property
    def filename(self) -> str: ...

    @property
    def content(self) -> bytes: ...


def conflict_page(
    request: HttpRequest,
    message: str,
    back_url: str,
    back_label: str,
    title: str = "Not saved",
) -> HttpResponse:
    """A 409 page for a write refused because the record changed under the user.

    The status tells clients and tests that nothing was saved, while the page explains why
    and offers one way back, instead of a bare error or a silent redirect.
    """
    context = {"title": title, "message": message, "back_url": back_url, "back_label": back_label}
    return render(request, "409.html", context, status=HTTPStatus.CONFLICT)


def paginate(
    request: HttpRequest, items: Sequence[Any] | QuerySet[Any], per_page: int = 50
) -> Page:
    """The requested page of a query set or list; out-of-range pages give the last one."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))


def private_file(field: FieldFile) -> FileResponse:
    """Stream a stored file to a checked user; media is never served publicly."""
    try:
        handle = field.open("rb")
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None
    suffix = (field.name or "").rsplit(".", 1)[-1].lower()
    response = FileResponse(
        handle, content_type=MEDIA_TYPES.get(suffix, "application/octet-stream")
    )
    response["Cache-Control"] = NO_STORE
    return response


def dicom_download(export: Download) -> HttpResponse:
    response = HttpResponse(export.content, content_type="application/dicom")
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response["Cache-Control"] = NO_STORE
    return response


def request_too_large(request: HttpRequest) -> str:
    """Refuse an oversized body from its declared length, before it is parsed."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.UPLOAD_MAX_REQUEST_BYTES:
        limit_mb = settings.UPLOAD_MAX_REQUEST_BYTES // (1024 * 1024)
        return f"The upload is larger than the {limit_mb} MB limit for one request; nothing was stored."
    return ""


# Primary keys are bigints: a number past this names no object (and SQLite cannot bind it).
MAX_ID = 2**63 - 1


def object_id(text: str) -> int | None:
    """The object id a path or query gives, or None where it names none: not a whole number
    from 1 (text, a sign, a fraction, other scripts' digits) or past the database's range."""
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_ID:
        return None
    return int(text)


CsvResponse = TypeVar("CsvResponse", HttpResponse, StreamingHttpResponse)


def csv_response(name: str, content: str) -> HttpResponse:
    """The CSV as a download; bidi controls in any cell are shown, never obeyed, as on the
    pages (a spreadsheet would otherwise reorder what the auditor reads)."""
    return csv_download(name, HttpResponse(neutralise_bidi(content)))


def csv_download(name: str, response: CsvResponse) -> CsvResponse:
    """``response`` (its CSV text already bidi-safe) as a download that no cache keeps."""
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Type"] = "text/csv; charset=utf-8"
    response["Content-Disposition"] = f'attachment; filename="mammo-{name}-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response
