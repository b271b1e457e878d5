"""DICOMweb: STOW-RS so a PACS or modality can push studies, QIDO-RS to find them again.

The same upload action as the page and the REST API stands behind STOW-RS, so the same
checks, de-identification and all-or-nothing rule apply: a request is stored whole, or
refused whole with a failure per instance. Failures name an instance by its position in
the request ("part 3"), never by its original SOP Instance UID: the original identifiers
are not echoed, logged or shown anywhere. Stored instances are answered with their
*remapped* UIDs, the ones the SR and Secondary Capture exports reference.
"""

from __future__ import annotations

import datetime as dt
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Count, Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import actions, events
from ..choices import Role
from ..models import Study
from ..roles import api_role
from ..views.manage import request_too_large

DICOM_MEDIA_TYPE = "application/dicom"
QIDO_LIMIT = 100

# PS3.18 / PS3.4 Annex GG failure reasons, from the upload action's reason codes.
FAILURE_REASONS = {
    "duplicate": 0x0111,  # Duplicate SOP Instance
    "not_mammography": 0x0122,  # Referenced SOP Class not supported
    "no_pixel_data": 0x0122,
    "too_large": 0xA700,  # Refused: out of resources
    "too_many_pixels": 0xA700,
}
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110


class DicomJSONRenderer(JSONRenderer):
    """DICOM JSON (PS3.18 F.2): the only media type DICOMweb clients parse."""

    media_type = "application/dicom+json"
    format = "dicom+json"


class MultipartError(Exception):
    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.message, self.status = message, status


def parse_multipart_related(content_type: str, body: bytes) -> list[bytes]:
    """The parts of a ``multipart/related; type="application/dicom"`` body (RFC 2387)."""
    media_type, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        name, _, value = item.strip().partition("=")
        if name:
            params[name.strip().lower()] = value.strip().strip('"')
    if media_type.strip().lower() != "multipart/related":
        raise MultipartError(
            'STOW-RS takes multipart/related; type="application/dicom".',
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        )
    if params.get("type", DICOM_MEDIA_TYPE).lower() != DICOM_MEDIA_TYPE:
        raise MultipartError(
            f"Part type {params['type']} is not supported; send application/dicom.",
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        )
    boundary = params.get("boundary", "")
    if not boundary:
        raise MultipartError("The multipart/related content type names no boundary.")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise MultipartError("The multipart body is malformed or cut short.")
    parts = []
    for chunk in chunks[1:-1]:
        head, separator, content = chunk.partition(b"\r\n\r\n")
        if not separator:
            raise MultipartError("A part of the multipart body has no header block.")
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                part_type = value.split(";")[0].strip().lower()
                if part_type != DICOM_MEDIA_TYPE:
                    raise MultipartError(
                        f"A part is {part_type}; STOW-RS here takes application/dicom only.",
                        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                    )
        parts.append(content)
    if not parts:
        raise MultipartError("The multipart body holds no instances.")
    return parts


def _read_body(request: Request) -> bytes:
    """Read the body ourselves: Django's DATA_UPLOAD_MAX_MEMORY_SIZE would refuse a study."""
    limit = settings.UPLOAD_MAX_REQUEST_BYTES
    raw = request._request
    chunks, size = [], 0
    while True:
        chunk = raw.read(1024 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise MultipartError(
                f"The request is larger than the {limit // (1024 * 1024)} MB limit.",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _stored(accepted: actions.UploadAccepted) -> dict[str, Any]:
    from ..models import Image

    images = Image.objects.filter(pk__in=[r.image_id for r in accepted.results])
    return {
        "00081199": _element(
            "SQ",
            *[
                {
                    "00081150": _element("UI", image.sop_class_uid),
                    "00081155": _element("UI", image.sop_instance_uid),
                }
                for image in images.order_by("pk")
            ],
        )
    }


def _failed(results: list[actions.FileResult]) -> dict[str, Any]:
    items = []
    for result in results:
        reason = FAILURE_REASONS.get(result.code)
        if reason is None:
            reason = PROCESSING_FAILURE if result.code == "not_stored" else CANNOT_UNDERSTAND
        items.append(
            {
                "00081197": _element("US", reason),
                # Error Comment: the position, not the original UID (never echoed).
                "00000902": _element("LO", f"part {result.position + 1}: {result.message}"[:64]),
            }
        )
    return {"00081198": _element("SQ", *items)}


class StudiesView(APIView):
    """``/dicomweb/studies``: POST is STOW-RS (admins), GET is QIDO-RS (admins, auditors)."""

    renderer_classes = [DicomJSONRenderer, JSONRenderer]

    def get_permissions(self):  # type: ignore[no-untyped-def]
        if self.request.method == "POST":
            return [api_role(Role.ADMIN)()]
        return [api_role(Role.ADMIN, Role.AUDITOR)()]

    @extend_schema(
        request={'multipart/related; type="application/dicom"': OpenApiTypes.BINARY},
        responses={(200, "application/dicom+json"): OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        too_big = request_too_large(request._request)
        try:
            if too_big:
                raise MultipartError(too_big, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            parts = parse_multipart_related(
                request.META.get("CONTENT_TYPE", ""), _read_body(request)
            )
        except MultipartError as error:
            events.upload_rejected(
                request.user, [{"position": -1, "code": "stow_request", "status": error.status}]
            )
            return Response({"detail": error.message}, status=error.status)
        files = [
            SimpleUploadedFile(f"part {i + 1}", part, content_type=DICOM_MEDIA_TYPE)
            for i, part in enumerate(parts)
        ]
        try:
            accepted = actions.upload_study(
                request.user, actions.StudySpec(accession_number="", dicom_only=True), files
            )
        except actions.UploadRefused as refusal:
            response = Response(_failed(refusal.results), status=refusal.status)
            # Error Comment is an LO (64 characters): the whole reason goes in a Warning
            # header, as PS3.18 8.4.4 allows.
            text = refusal.message.replace('"', "'").encode("latin-1", "replace").decode("latin-1")
            response["Warning"] = f'299 mammo-portal "{" ".join(text.split())[:2000]}"'
            return response
        return Response(_stored(accepted), status=HTTPStatus.OK)

    @extend_schema(
        parameters=[
            OpenApiParameter("StudyInstanceUID", str),
            OpenApiParameter("PatientID", str, description="The pseudonym"),
            OpenApiParameter("StudyDate", str, description="YYYYMMDD or YYYYMMDD-YYYYMMDD"),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
        ],
        responses={(200, "application/dicom+json"): OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        try:
            studies = _search(request.query_params)
            limit = min(int(request.query_params.get("limit", QIDO_LIMIT)), QIDO_LIMIT)
            offset = max(int(request.query_params.get("offset", 0)), 0)
        except ValueError as error:
            return Response({"detail": str(error)}, status=HTTPStatus.BAD_REQUEST)
        page = list(studies[offset : offset + limit])
        return Response([_study_json(study) for study in page])


def _search(params: Any) -> QuerySet[Study]:
    studies = (
        Study.objects.filter(~Q(study_instance_uid=""))
        .select_related("case__patient")
        .annotate(instances=Count("images"))
        .order_by("-study_date", "pk")
    )
    if params.get("StudyInstanceUID"):
        studies = studies.filter(study_instance_uid__in=params["StudyInstanceUID"].split(","))
    if params.get("PatientID"):
        studies = studies.filter(case__patient__pseudonym=params["PatientID"])
    value = params.get("StudyDate", "")
    if value:
        start, end = value.split("-", 1) if "-" in value else (value, value)
        if start:
            studies = studies.filter(study_date__gte=_qido_date(start))
        if end:
            studies = studies.filter(study_date__lte=_qido_date(end))
    return studies


def _qido_date(value: str) -> dt.date:
    try:
        return dt.datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"StudyDate {value!r} is not YYYYMMDD.") from None


def _study_json(study: Study) -> dict[str, Any]:
    """The study-level attributes of PS3.18 Table 10.6.3-3 this archive holds."""
    return {
        "00080020": _element("DA", study.study_date.strftime("%Y%m%d")),
        "00080061": _element("CS", study.modality),
        "00100020": _element("LO", study.case.patient.pseudonym),
        "0020000D": _element("UI", study.study_instance_uid),
        "00201208": _element("IS", study.instances),
    }
