"""REST API: the same verbs and the same role rules as the pages."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import BasePagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import errors, events
from ..ai import actions as ai_actions
from ..ai import queries as ai_queries
from ..audit import actions as audit_actions
from ..choices import Role
from ..forms import object_id
from ..http import dicom_download, private_file, request_too_large
from ..intake import actions as intake_actions
from ..interop import actions as interop_actions
from ..models import Case, Image, ModelVersion
from ..reading import actions as reading_actions
from ..reading import queries as reading_queries
from ..reading import worklist_pages
from ..reading.worklist_pages import BadCursor
from ..roles import AuthenticatedRequest, api_role
from . import serializers as s

CASE_QUERYSET = Case.objects.select_related("patient", "ai_result__model_version")


def _error(error: errors.DomainError) -> Response:
    return Response({"detail": error.message}, status=error.status)


def _id(pk: str, noun: str) -> int:
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


class WorklistPagination(BasePagination):
    """A keyset page of the worklist (``screening.worklist_pages``): ``next`` starts where
    this page ends, ``first`` goes back to the top, ``count`` stops at 1,000
    (``count_capped`` then says there are more)."""

    page: worklist_pages.Page
    next_link: str | None = None
    first_link: str | None = None

    def links_from(self, request: Request, filters: dict[str, str]) -> None:
        base = request.build_absolute_uri(request.path)

        def link(**extra: str) -> str:
            query = urlencode({**filters, **extra})
            return f"{base}?{query}" if query else base

        self.next_link = link(after=self.page.next_cursor) if self.page.next_cursor else None
        self.first_link = None if self.page.is_first else link()

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "count": self.page.count,
                "count_capped": self.page.count_capped,
                "next": self.next_link,
                "first": self.first_link,
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": ["count", "count_capped", "next", "first", "results"],
            "properties": {
                "count": {"type": "integer", "maximum": worklist_pages.COUNT_CAP},
                "count_capped": {"type": "boolean"},
                "next": link,
                "first": link,
                "results": schema,
            },
        }


class CaseViewSet(viewsets.GenericViewSet):
    """Worklist-ordered cases for radiologists; case detail for radiologists and auditors."""

    queryset = CASE_QUERYSET
    pagination_class = WorklistPagination

    def get_permissions(self):
        if self.action == "retrieve":
            return [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)()]
        return [api_role(Role.RADIOLOGIST, Role.ARBITRATOR)()]

    def get_serializer_class(self):
        if self.action == "retrieve":
            return s.CaseDetailSerializer
        if self.action == "reads":
            return s.ReadCreateSerializer
        return s.CaseSummarySerializer

    @extend_schema(
        parameters=[s.WorklistQuerySerializer],
        responses={200: s.CaseSummarySerializer(many=True), **s.refusals(400, 404)},
    )
    def list(self, request: AuthenticatedRequest) -> Response:
        query = s.WorklistQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = dict(query.validated_data)
        after, number = params.pop("after", ""), params.pop("page", None)
        flt = reading_queries.WorklistFilter(**params)
        try:
            page = reading_queries.worklist_page(request.user, flt, after, str(number or ""))
        except BadCursor as error:
            return Response({"detail": str(error)}, status=HTTPStatus.BAD_REQUEST)
        paginator = self.paginator
        assert isinstance(paginator, WorklistPagination)
        paginator.page = page
        paginator.links_from(request, {k: v for k, v in params.items() if v})
        data = s.CaseSummarySerializer(page.object_list, many=True).data
        return self.get_paginated_response(data)

    @extend_schema(responses={200: s.CaseDetailSerializer, **s.refusals(404)})
    def retrieve(self, request: AuthenticatedRequest, pk: str) -> Response:
        case = get_object_or_404(CASE_QUERYSET, pk=_id(pk, "case"))
        events.case_opened(request.user, case, via="api")
        context = {
            "request": request,
            "ai_results": ai_queries.case_ai_results(case),
            "visible_reads": reading_queries.visible_reads(request.user, case),
        }
        return Response(s.CaseDetailSerializer(case, context=context).data)

    @extend_schema(
        request=s.ReadCreateSerializer,
        responses={201: s.ReadSerializer, **s.refusals(400, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def reads(self, request: AuthenticatedRequest, pk: str) -> Response:
        case_id = _id(pk, "case")
        serializer = s.ReadCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            read = reading_actions.submit_read(request.user, case_id, serializer.read_input())
        except errors.DomainError as error:
            return _error(error)
        return Response(s.ReadSerializer(read).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    create=extend_schema(
        responses={
            201: s.UploadResultSerializer,
            400: OpenApiResponse(s.UPLOAD_REFUSAL, "Refused: the report per file, or the fields."),
            **s.refusals(),
            404: OpenApiResponse(s.UploadResultSerializer, "No such study to add to."),
            409: OpenApiResponse(
                s.UploadResultSerializer, "A file or the study is stored already."
            ),
            413: s.REFUSALS[413],
        }
    )
)
class StudyUploadViewSet(viewsets.GenericViewSet):
    """Upload images into a new or an existing study: all files are stored, or none."""

    permission_classes = [api_role(Role.ADMIN)]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = s.StudyUploadSerializer

    @extend_schema(request={"multipart/form-data": s.StudyUploadRequestSerializer})
    def create(self, request: AuthenticatedRequest) -> Response:
        too_big = request_too_large(request._request)
        if too_big:
            events.upload_request_refused(
                request.user, "request_too_large", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
            )
            return Response(
                {"detail": too_big, "study_id": None, "case_id": None, "files": []},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        meta = s.StudyUploadSerializer(data=request.data)
        if not meta.is_valid():
            events.upload_request_refused(
                request.user, "invalid_fields", status.HTTP_400_BAD_REQUEST, list(meta.errors)
            )
            meta.is_valid(raise_exception=True)  # DRF's own 400 with the field errors
        spec = intake_actions.StudySpec(**meta.validated_data)
        try:
            accepted = intake_actions.upload_study(
                request.user, spec, request.FILES.getlist("files")
            )
        except intake_actions.UploadRefused as refusal:
            body: dict[str, Any] = {
                "detail": refusal.message,
                "study_id": None,
                "case_id": None,
                "files": [r.as_dict() for r in refusal.results],
            }
            return Response(body, status=refusal.status)
        body = {
            "detail": f"Stored {len(accepted.results)} image(s).",
            "study_id": accepted.study.pk,
            "case_id": accepted.study.case_id,
            "files": [r.as_dict() for r in accepted.results],
        }
        return Response(body, status=status.HTTP_201_CREATED)


class OutcomeView(APIView):
    """A hospital system (pathology, follow-up registry) reports a screen's outcome."""

    permission_classes = [api_role(Role.ADMIN)]

    @extend_schema(
        request=s.OutcomeSerializer, responses={200: s.OutcomeSerializer, **s.refusals(400, 404)}
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = s.OutcomeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            audit_actions.record_outcome(
                request.user, data["accession_number"], data["outcome"], data["source"]
            )
        except errors.DomainError as error:
            return _error(error)
        return Response(serializer.data)


class ImageFileView(BinaryDownloadView):
    """The stored file as uploaded, for API clients holding a token (pages use the session
    twin): PNG or JPEG, or for a DICOM image the de-identified DICOM file."""

    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(
        responses={
            (200, "image/png"): OpenApiTypes.BINARY,
            (200, "image/jpeg"): OpenApiTypes.BINARY,
            (200, "application/dicom"): OpenApiTypes.BINARY,
            **s.refusals(404),
        }
    )
    def get(self, request: Request, pk: int) -> FileResponse:
        return private_file(get_object_or_404(Image, pk=pk).file)


class HeatmapFileView(BinaryDownloadView):
    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY, **s.refusals(404)})
    def get(self, request: Request, pk: int) -> FileResponse:
        try:
            return private_file(ai_queries.shown_heatmap(pk).heatmap)
        except errors.NotFound as error:
            raise Http404(error.message) from None


class StudyAIReportView(BinaryDownloadView):
    """The study's AI result as a DICOM Structured Report (case and image scores, model)."""

    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(
        responses={(200, "application/dicom"): OpenApiTypes.BINARY, **s.refusals(404, 409)}
    )
    def get(self, request: AuthenticatedRequest, pk: int) -> HttpResponse:
        try:
            return dicom_download(interop_actions.export_study_report(request.user, pk))
        except errors.DomainError as error:
            return _error(error)


class HeatmapDicomView(BinaryDownloadView):
    """One image's heatmap overlay as a DICOM Secondary Capture."""

    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(
        responses={(200, "application/dicom"): OpenApiTypes.BINARY, **s.refusals(404, 409)}
    )
    def get(self, request: AuthenticatedRequest, pk: int) -> HttpResponse:
        try:
            return dicom_download(interop_actions.export_heatmap_capture(request.user, pk))
        except errors.DomainError as error:
            return _error(error)


@extend_schema_view(
    list=extend_schema(responses={200: s.ModelVersionSerializer(many=True), **s.refusals(404)})
)
class ModelVersionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    queryset = ModelVersion.objects.order_by("-is_active", "-created_at")
    serializer_class = s.ModelVersionSerializer

    def get_permissions(self):
        if self.action == "activate":
            return [api_role(Role.ADMIN)()]
        return [api_role(Role.ADMIN, Role.AUDITOR)()]

    @extend_schema(request=None, responses={200: s.ModelVersionSerializer, **s.refusals(404)})
    @action(detail=True, methods=["post"])
    def activate(self, request: AuthenticatedRequest, pk: str) -> Response:
        version_id = _id(pk, "model version")
        try:
            version = ai_actions.activate_model_version(request.user, version_id)
        except errors.DomainError as error:
            return _error(error)
        return Response(s.ModelVersionSerializer(version).data)
