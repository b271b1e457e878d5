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
import re
import sys
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypedDict

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.wsgi import LimitedStream
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import events
from ..choices import IdentityMode, Role
from ..http import request_too_large
from ..imaging.dicom import PART10_MAGIC, is_part10
from ..intake import actions as intake_actions
from ..models import Study
from ..roles import AuthenticatedRequest, api_role
from .dicom_json import DICOM_MEDIA_TYPE, DicomJSONRenderer, refusals_as_sent

QIDO_LIMIT = 100  # results per page, whatever limit asks for
QIDO_MAX_NUMBER = 999_999_999  # limit and offset: far past any archive, inside SQL's bigint
QIDO_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
WHOLE_NUMBER = {"type": "integer", "minimum": 0, "maximum": QIDO_MAX_NUMBER}
# A DICOM date (DA) the calendar holds, as a pattern JSON Schema and Python read alike: a
# year from 0001, the month's days, 29 February in leap years only.
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)(?:0[1-9]|[12][0-9]|30)|02(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_DAY = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)0229"
DICOM_DATE = f"(?:{_YEAR}{_MONTH_DAY}|{_LEAP_DAY})"
# QIDO's StudyDate: a date, or a range open at either end (PS3.18 8.3.4.6.1); empty: any.
STUDY_DATE = f"^(?:{DICOM_DATE}|{DICOM_DATE}-|-{DICOM_DATE}|{DICOM_DATE}-{DICOM_DATE})?$"
NO_NUL = {"type": "string", "pattern": "^[^\\x00]*$"}

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class _InstanceCount(TypedDict):
        instances: int

    # A study as the search returns it: with its number of instances.
    CountedStudy = WithAnnotations[Study, _InstanceCount]


PREAMBLE = bytes(128)
READ_BYTES = 1024 * 1024
CHUNK_LINE_BYTES = 4096  # a chunk-size line with its extensions, or a trailer field
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
MAX_TRAILER_FIELDS = 32
CHUNKED_MALFORMED = "The chunked request body is malformed or cut short."

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


class MultipartError(Exception):
    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.message, self.status = message, status


def parse_multipart_related(content_type: str, body: bytes | bytearray) -> list[bytes]:
    """The parts of a ``multipart/related; type="application/dicom"`` body (RFC 2387).

    Each part is sliced out once and the body is never copied whole: a study is hundreds
    of megabytes.
    """
    boundary = _boundary(content_type)
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    if body.startswith(delimiter[2:]):
        start = len(delimiter) - 2
    else:
        found = body.find(delimiter)
        start = found + len(delimiter) if found >= 0 else -1
    parts: list[bytes] = []
    while start >= 0 and not body.startswith(b"--", start):
        end = body.find(delimiter, start)
        if end < 0:
            break
        parts.append(_part_content(body, start, end))
        start = end + len(delimiter)
    if start < 0 or not body.startswith(b"--", start):
        raise MultipartError("The multipart body is malformed or cut short.")
    if not parts:
        raise MultipartError("The multipart body holds no instances.")
    return parts


def _boundary(content_type: str) -> str:
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
    return boundary


def _part_content(body: bytes | bytearray, start: int, end: int) -> bytes:
    """The content of the part between ``start`` (after its delimiter) and ``end``."""
    separator = body.find(b"\r\n\r\n", start, end)
    if separator < 0:
        raise MultipartError("A part of the multipart body has no header block.")
    for line in body[start:separator].decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            part_type = value.split(";")[0].strip().lower()
            if part_type != DICOM_MEDIA_TYPE:
                raise MultipartError(
                    f"A part is {part_type}; STOW-RS here takes application/dicom only.",
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                )
    with memoryview(body) as view:
        return part10(bytes(view[separator + 4 : end]))


def part10(content: bytes) -> bytes:
    """A part as a Part 10 file: its 128-byte preamble and ``DICM`` put back if missing.

    A part of type application/dicom is DICOM by its media type, and clients writing a
    dataset built in memory (dicomweb-client through ``pydicom.dcmwrite``) leave out the
    preamble: such a part starts with the ``DICM`` prefix or straight with the file meta
    group (0002,xxxx) in explicit VR little endian. Anything else is left for the upload
    checks to refuse.
    """
    if is_part10(content):
        return content
    if content.startswith(PART10_MAGIC):
        return PREAMBLE + content
    if content[:2] == b"\x02\x00" and content[4:6].isalpha():
        return PREAMBLE + PART10_MAGIC + content
    return content


def _read_body(request: HttpRequest) -> bytearray:
    """Read the body ourselves: Django's DATA_UPLOAD_MAX_MEMORY_SIZE would refuse a study.

    Clients send a large study with chunked transfer encoding and no Content-Length
    (dicomweb-client above 1 MB), which Django reads as an empty body. A server that
    de-chunks says so with ``wsgi.input_terminated`` (gunicorn, uWSGI, mod_wsgi, waitress):
    its input is read to the end. Django's runserver and live server do not de-chunk:
    their input is the raw connection, decoded here. Never more than the request limit.
    """
    limit = settings.UPLOAD_MAX_REQUEST_BYTES
    meta = request.META
    coding = meta.get("HTTP_TRANSFER_ENCODING", "").strip().lower()
    if not coding:
        return _read_to_end(request.read, limit)  # Django's stream stops at Content-Length
    if coding != "chunked":
        raise MultipartError(
            "Only the chunked transfer encoding is supported.", HTTPStatus.NOT_IMPLEMENTED
        )
    if meta.get("CONTENT_LENGTH"):
        # RFC 9112 6.1: a request with both is a smuggling attempt or a broken client.
        raise MultipartError("A request cannot have both Content-Length and Transfer-Encoding.")
    stream = meta["wsgi.input"]
    if meta.get("wsgi.input_terminated"):
        return _read_to_end(stream.read, limit)
    if isinstance(stream, LimitedStream) and stream.limit == 0:
        return _read_dev_server_chunked(stream, limit)
    raise MultipartError(
        "This server cannot read a chunked body; send a Content-Length.",
        HTTPStatus.LENGTH_REQUIRED,
    )


def _read_to_end(read: Callable[[int], bytes], limit: int) -> bytearray:
    body = bytearray()
    while chunk := read(READ_BYTES):
        if len(body) + len(chunk) > limit:
            raise _too_large(limit)
        body += chunk
    return body


def _read_dev_server_chunked(stream: LimitedStream, limit: int) -> bytearray:
    """Decode the raw chunked body behind runserver's input, capped at a length of 0.

    The cap is lifted while the chunks are decoded, then set to exactly what was read,
    so the server's drain of unread input at the end of the request returns at once.
    """
    consumed = 0

    def counted(read: Callable[[int], bytes]) -> Callable[[int], bytes]:
        def read_counted(size: int) -> bytes:
            nonlocal consumed
            data = read(size)
            consumed += len(data)
            return data

        return read_counted

    stream.limit = sys.maxsize
    try:
        return decode_chunked(counted(stream.read), counted(stream.readline), limit)
    finally:
        stream.limit = consumed


def decode_chunked(
    read: Callable[[int], bytes], readline: Callable[[int], bytes], limit: int
) -> bytearray:
    """The payload of a chunked body (RFC 9112 7.1), refused before it passes ``limit``.

    Chunk extensions and trailer fields are read and ignored; lines must end in CRLF.
    """
    body = bytearray()
    while size := _chunk_size(readline(CHUNK_LINE_BYTES + 1)):
        if len(body) + size > limit:
            raise _too_large(limit)
        _read_exactly(read, size, body)
        if _read_exactly(read, 2, bytearray()) != b"\r\n":
            raise MultipartError(CHUNKED_MALFORMED)
    for _ in range(MAX_TRAILER_FIELDS + 1):
        line = readline(CHUNK_LINE_BYTES + 1)
        if not line.endswith(b"\r\n"):
            raise MultipartError(CHUNKED_MALFORMED)
        if line == b"\r\n":
            return body
    raise MultipartError(CHUNKED_MALFORMED)


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip(b" \t\r\n")
    if not line.endswith(b"\r\n") or not CHUNK_SIZE.fullmatch(size):
        raise MultipartError(CHUNKED_MALFORMED)
    return int(size, 16)


def _read_exactly(read: Callable[[int], bytes], size: int, into: bytearray) -> bytearray:
    while size:
        data = read(min(size, READ_BYTES))
        if not data:
            raise MultipartError(CHUNKED_MALFORMED)
        into += data
        size -= len(data)
    return into


def _too_large(limit: int) -> MultipartError:
    return MultipartError(
        f"The request is larger than the {limit // (1024 * 1024)} MB limit.",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    )


def _element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _stored(accepted: intake_actions.UploadAccepted) -> dict[str, Any]:
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


def _failed(results: list[intake_actions.FileResult]) -> dict[str, Any]:
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

    def get_permissions(self):
        if self.request.method == "POST":
            return [api_role(Role.ADMIN)()]
        return [api_role(Role.ADMIN, Role.AUDITOR)()]

    @extend_schema(
        request={'multipart/related; type="application/dicom"': OpenApiTypes.BINARY},
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                "Stored (or stored before, the same bytes): ReferencedSOPSequence (0008,1199).",
            ),
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                "Refused whole: FailedSOPSequence (0008,1198), or detail for a bad body.",
            ),
            409: OpenApiResponse(
                OpenApiTypes.OBJECT,
                "A different object under a stored SOP Instance UID: FailedSOPSequence "
                "(the same object sent again is answered 200, as stored).",
            ),
            **refusals_as_sent(401, 403, 411, 413, 415, 501),
        },
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        too_big = request_too_large(request._request)
        try:
            if too_big:
                raise MultipartError(too_big, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            parts = parse_multipart_related(
                request.META.get("CONTENT_TYPE", ""), _read_body(request._request)
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
            accepted = intake_actions.upload_study(
                request.user,
                intake_actions.StudySpec(
                    accession_number="", dicom_only=True, resend_is_stored=True
                ),
                files,
            )
        except intake_actions.UploadRefused as refusal:
            response = Response(_failed(refusal.results), status=refusal.status)
            # Error Comment is an LO (64 characters): the whole reason goes in a Warning
            # header, as PS3.18 8.4.4 allows.
            text = refusal.message.replace('"', "'").encode("latin-1", "replace").decode("latin-1")
            response["Warning"] = f'299 mammo-portal "{" ".join(text.split())[:2000]}"'
            return response
        return Response(_stored(accepted), status=HTTPStatus.OK)

    @extend_schema(
        parameters=[
            OpenApiParameter("StudyInstanceUID", NO_NUL, description="UIDs, comma-separated"),
            OpenApiParameter("PatientID", NO_NUL, description="The pseudonym"),
            OpenApiParameter(
                "StudyDate",
                {"type": "string", "pattern": STUDY_DATE},
                description="YYYYMMDD, or a range: YYYYMMDD-YYYYMMDD, open at either end",
            ),
            OpenApiParameter("limit", WHOLE_NUMBER, description=f"At most {QIDO_LIMIT} a page"),
            OpenApiParameter("offset", WHOLE_NUMBER),
        ],
        responses={
            200: OpenApiResponse(
                {"type": "array", "items": {"type": "object"}},
                "The matching studies, each a DICOM JSON object.",
            ),
            **refusals_as_sent(400, 401, 403),
        },
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        try:
            _refuse_nul(params)
            studies = _search(params)
            limit = min(_whole_number(params, "limit", QIDO_LIMIT), QIDO_LIMIT)
            offset = _whole_number(params, "offset", 0)
        except ValueError as error:
            return Response({"detail": str(error)}, status=HTTPStatus.BAD_REQUEST)
        page = list(studies[offset : offset + limit])
        return Response([_study_json(study) for study in page])


def _refuse_nul(params: QueryDict) -> None:
    """PostgreSQL text cannot hold NUL: refuse it here, not with a database error."""
    for name, values in params.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            raise ValueError("A query parameter contains a NUL character.")


def _whole_number(params: QueryDict, name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if not QIDO_WHOLE_NUMBER.fullmatch(value):
        raise ValueError(f"{name} must be a whole number from 0 to {QIDO_MAX_NUMBER}.")
    return int(value)


def _search(params: Any) -> QuerySet[CountedStudy]:
    studies = (
        Study.objects.filter(~Q(study_instance_uid=""))
        .select_related("case__patient", "prior_of")
        .annotate(instances=Count("images"))
        .order_by("-study_date", "pk")
    )
    if params.get("StudyInstanceUID"):
        studies = studies.filter(study_instance_uid__in=params["StudyInstanceUID"].split(","))
    if params.get("PatientID"):
        studies = studies.filter(_patient_id_is(params["PatientID"]))
    value = params.get("StudyDate", "")
    if not re.fullmatch(STUDY_DATE, value):
        raise ValueError(f"StudyDate {value!r} is not YYYYMMDD or a range of such dates.")
    if value:
        start, end = value.split("-", 1) if "-" in value else (value, value)
        if start:
            studies = studies.filter(study_date__gte=_qido_date(start))
        if end:
            studies = studies.filter(study_date__lte=_qido_date(end))
    return studies


def _patient_id(study: Study) -> str:
    """The Patient ID the stored files carry: the hospital's own in clinical mode, the
    keyed pseudonym in research mode (the study's mode at ingest, as everywhere)."""
    if study.identity_mode == IdentityMode.CLINICAL:
        return study.patient_id
    return study.woman.pseudonym


def _patient_id_is(value: str) -> Q:
    """Studies whose answered Patient ID (``_patient_id``) is ``value``."""
    pseudonym = Q(case__patient__pseudonym=value) | Q(prior_of__pseudonym=value)
    return Q(identity_mode=IdentityMode.CLINICAL, patient_id=value) | (
        ~Q(identity_mode=IdentityMode.CLINICAL) & pseudonym
    )


def _qido_date(value: str) -> dt.date:
    try:
        return dt.datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"StudyDate {value!r} is not YYYYMMDD.") from None


def _study_json(study: CountedStudy) -> dict[str, Any]:
    """The study-level attributes of PS3.18 Table 10.6.3-3 this archive holds."""
    return {
        "00080020": _element("DA", study.study_date.strftime("%Y%m%d")),
        "00080061": _element("CS", study.modality),
        "00100020": _element("LO", _patient_id(study)),
        "0020000D": _element("UI", study.study_instance_uid),
        "00201208": _element("IS", study.instances),
    }
