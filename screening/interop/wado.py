"""DICOMweb WADO-RS retrieve (PS3.18 10.4): the stored, de-identified DICOM of a study.

Study, series and instance retrieve answer ``multipart/related; type="application/dicom"``;
metadata answers DICOM JSON without the pixel data; frames answer the pixel data of a frame
in the syntax the server picks for a client that takes any (``transfer-syntax=*``): a film
stored native goes as its JPEG-LS lossless frame (``screening.imaging.lossless``, checked bit
for bit; ``settings.DICOMWEB_LOSSLESS_FRAMES``), a film stored compressed as it lies; for a
client that asks for ``application/octet-stream`` without naming a syntax, the frame goes
decoded to Explicit VR Little Endian (the PS3.18 default); as one ``multipart/related`` part, or as the bare single-part payload
(PS3.18 8.7.3.5) to a client whose Accept names no multipart type: the case viewer asks
so, which spares the browser a byte-by-byte search of a 27 MB frame for the boundary. The case page's viewer loads its films through these endpoints, and
any DICOMweb client (OHIF, ``dicomweb-client``) can.

Who may retrieve, and what is audited, is the same as viewing a case: radiologists,
arbitrators and auditors; a study, series, instance or metadata retrieve is a
"case opened" audit event (``via="wado-rs"``), once per viewing: not again where the same
user's opening of the case was recorded in the last ten minutes, as the case page records
it before its viewer asks (``events.case_opened_over_dicomweb``). A frame is bare pixel bytes a client can
only use with the metadata it was audited for, so frames are role-checked but not audited
one by one (the viewer fetches one per film).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import errors
from ..choices import Role
from ..imaging.lossless import JPEG_LS_LOSSLESS
from ..roles import AuthenticatedRequest, api_role
from . import actions
from .dicom_json import DICOM_MEDIA_TYPE, DicomJSONRenderer, refusals_as_sent

WADO_ROLES = (Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)
# Frame numbers from 1, comma-separated (PS3.18 10.4.1.1.5), as the schema states them.
FRAME_LIST = "^0*[1-9][0-9]*(?:,0*[1-9][0-9]*)*$"
NO_STORE = "private, no-store"
OCTET_STREAM = "application/octet-stream"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
# Compressed frames travel as the media type PS3.18 Table 8.7.3-2 names for their syntax.
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


class OwnNegotiation(BaseContentNegotiation):
    """Accept is negotiated by each view: DRF's negotiation knows only the JSON renderers
    and would refuse a client asking for multipart DICOM."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> Any:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: Any = None
    ) -> Any:
        renderer = list(renderers)[0]
        return renderer, renderer.media_type


class WadoSchema(AutoSchema):
    """Operation ids of their own: QIDO-RS's GET /dicomweb/studies would share one."""

    def get_operation_id(self) -> str:
        return f"wado_{super().get_operation_id()}"


class WadoView(APIView):
    schema = WadoSchema()
    renderer_classes = [DicomJSONRenderer, JSONRenderer]
    content_negotiation_class = OwnNegotiation
    permission_classes = [api_role(*WADO_ROLES)]

    def refused(self, error: errors.DomainError) -> Response:
        return Response({"detail": error.message}, status=error.status)


class RetrieveView(WadoView):
    """Study, series or instance: every stored instance below the level, one part each."""

    @extend_schema(
        responses={
            (200, 'multipart/related; type="application/dicom"'): OpenApiResponse(
                OpenApiTypes.BINARY, "The instances, one Part 10 file per part."
            ),
            **refusals_as_sent(401, 403, 404, 406),
        }
    )
    def get(
        self, request: AuthenticatedRequest, study: str, series: str = "", instance: str = ""
    ) -> Any:
        if not accepts(request, "multipart/related", DICOM_MEDIA_TYPE):
            return not_acceptable(f'multipart/related; type="{DICOM_MEDIA_TYPE}"')
        try:
            instances = actions.wado_retrieve(request.user, study, series, instance)
        except errors.DomainError as error:
            return self.refused(error)
        boundary = secrets.token_hex(16)
        response = StreamingHttpResponse(
            _parts(((DICOM_MEDIA_TYPE, i.content()) for i in instances), boundary),
            content_type=f'multipart/related; type="{DICOM_MEDIA_TYPE}"; boundary={boundary}',
        )
        response["Cache-Control"] = NO_STORE
        return response


class MetadataView(WadoView):
    """Study, series or instance metadata: DICOM JSON, one object per instance."""

    @extend_schema(
        responses={
            200: OpenApiResponse(
                {"type": "array", "items": {"type": "object"}},
                "One DICOM JSON object per instance, without its pixel data.",
            ),
            **refusals_as_sent(401, 403, 404),
        }
    )
    def get(
        self, request: AuthenticatedRequest, study: str, series: str = "", instance: str = ""
    ) -> Any:
        try:
            instances = actions.wado_retrieve(request.user, study, series, instance)
        except errors.DomainError as error:
            return self.refused(error)
        response = Response([i.metadata() for i in instances])
        response["Cache-Control"] = NO_STORE
        return response


class FramesView(WadoView):
    """The pixel data of frames of one instance (only frame 1: films are single-frame)."""

    @extend_schema(
        responses={
            (200, "multipart/related"): OpenApiResponse(
                OpenApiTypes.BINARY, "The frame's pixel data, one part."
            ),
            **refusals_as_sent(400, 401, 403, 404, 406),
        },
        parameters=[
            OpenApiParameter(
                "frames",
                {"type": "string", "pattern": FRAME_LIST},
                OpenApiParameter.PATH,
                description="Frame numbers from 1, comma-separated",
            )
        ],
    )
    def get(
        self, request: AuthenticatedRequest, study: str, series: str, instance: str, frames: str
    ) -> Any:
        try:
            numbers = _frame_numbers(frames)
            found = actions.wado_retrieve(request.user, study, series, instance, audit=False)
        except errors.DomainError as error:
            return self.refused(error)
        if numbers != [1]:
            return Response(
                {"detail": "This instance has one frame: ask for frame 1."},
                status=HTTPStatus.NOT_FOUND,
            )
        native = not accepts_any_syntax(request)
        if native and not accepts(request, "multipart/related", OCTET_STREAM):
            return not_acceptable(f"multipart/related; type={OCTET_STREAM}; transfer-syntax=*")
        found_instance = found[0]
        boundary = secrets.token_hex(16)
        single = single_part(request)
        stored = found_instance.native_pixels()
        compressed = found_instance.lossless_frame() if stored and takes_lossless(request) else None
        response: Any
        if compressed:
            syntax, media = JPEG_LS_LOSSLESS, FRAME_MEDIA_TYPES[JPEG_LS_LOSSLESS]
            response = HttpResponse(
                compressed
                if single
                else b"".join(_parts([(_frame_type(media, syntax), compressed)], boundary))
            )
        elif stored:  # streamed from the file as it lies: no copy of a 27 MB frame in memory
            syntax, media = EXPLICIT_LITTLE, OCTET_STREAM
            pixels: Any = found_instance.chunks(*stored)
            response = StreamingHttpResponse(
                pixels if single else _parts([(_frame_type(media, syntax), pixels)], boundary)
            )
            if single:
                response["Content-Length"] = str(stored[1])
        else:
            syntax, data = found_instance.frame(native=native)
            media = FRAME_MEDIA_TYPES.get(syntax, OCTET_STREAM)
            response = HttpResponse(
                data if single else b"".join(_parts([(_frame_type(media, syntax), data)], boundary))
            )
        response["Content-Type"] = (
            _frame_type(media, syntax)
            if single
            else f"multipart/related; type={media}; boundary={boundary}"
        )
        response["Cache-Control"] = NO_STORE
        return response


def _frame_type(media: str, syntax: str) -> str:
    return f"{media}; transfer-syntax={syntax}"


def _parts(parts: Any, boundary: str) -> Iterator[bytes]:
    """One MIME part per (type, content); content is bytes or an iterator of chunks."""
    for media_type, content in parts:
        yield f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode()
        if isinstance(content, bytes):
            yield content
        else:
            yield from content
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _frame_numbers(text: str) -> list[int]:
    if not re.fullmatch(FRAME_LIST, text):
        raise errors.DomainError("Frame numbers are whole numbers from 1.")
    numbers = [int(n) for n in text.split(",")]
    return numbers


def _accept_ranges(request: Request) -> list[dict[str, str]]:
    """The Accept header's media ranges as {"media": …, parameter: value}."""
    ranges = []
    for item in request.META.get("HTTP_ACCEPT", "*/*").split(","):
        media, *params = [p.strip() for p in item.split(";")]
        entry = {"media": media.lower()}
        for param in params:
            name, _, value = param.partition("=")
            entry[name.strip().lower()] = value.strip().strip('"')
        ranges.append(entry)
    return ranges


def accepts(request: Request, media: str, part_type: str) -> bool:
    for entry in _accept_ranges(request):
        if entry["media"] in ("*/*", "multipart/*"):
            return True
        if entry["media"] == media and entry.get("type", part_type).lower() in ("*/*", part_type):
            return True
        if entry["media"] == part_type:  # a single-part answer's type, as some clients ask
            return True
    return False


def accepts_any_syntax(request: Request) -> bool:
    """Whether the client takes frames in the stored syntax (``transfer-syntax=*``)."""
    return any(e.get("transfer-syntax") == "*" for e in _accept_ranges(request))


def takes_lossless(request: Request) -> bool:
    """Whether a film stored native goes to this client as its JPEG-LS lossless frame: the
    client takes any syntax, and the site sends compressed frames."""
    return bool(settings.DICOMWEB_LOSSLESS_FRAMES) and accepts_any_syntax(request)


def single_part(request: Request) -> bool:
    """Whether the client asked for the bare payload: no Accept range is multipart (or any
    type), so it cannot be expecting a multipart answer (PS3.18 8.7.3.5, single part)."""
    ranges = [e["media"] for e in _accept_ranges(request)]
    return not any(m in ("*/*", "multipart/*", "multipart/related") for m in ranges)


def not_acceptable(offered: str) -> Response:
    return Response(
        {"detail": f"This resource is offered as {offered}."},
        status=HTTPStatus.NOT_ACCEPTABLE,
    )


STUDY = "studies/<str:study>"
SERIES = f"{STUDY}/series/<str:series>"
INSTANCE = f"{SERIES}/instances/<str:instance>"
urlpatterns = [
    path(STUDY, RetrieveView.as_view(), name="wado-study"),
    path(f"{STUDY}/metadata", MetadataView.as_view(), name="wado-study-metadata"),
    path(SERIES, RetrieveView.as_view(), name="wado-series"),
    path(f"{SERIES}/metadata", MetadataView.as_view(), name="wado-series-metadata"),
    path(INSTANCE, RetrieveView.as_view(), name="wado-instance"),
    path(f"{INSTANCE}/metadata", MetadataView.as_view(), name="wado-instance-metadata"),
    path(f"{INSTANCE}/frames/<str:frames>", FramesView.as_view(), name="wado-frames"),
]
