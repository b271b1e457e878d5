"""REST API: the same verbs and the same role rules as the pages."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import actions, events
from ..choices import Role
from ..models import AIResult, Case, Image, ModelVersion
from ..roles import api_role
from ..views.manage import request_too_large
from ..views.pages import dicom_download, private_file
from . import serializers as s

CASE_QUERYSET = Case.objects.select_related("patient", "ai_result__model_version")


def _error(error: actions.DomainError) -> Response:
    return Response({"detail": error.message}, status=error.status)


class CaseViewSet(viewsets.GenericViewSet):
    """Worklist-ordered cases for radiologists; case detail for radiologists and auditors."""

    queryset = CASE_QUERYSET

    def get_permissions(self):  # type: ignore[no-untyped-def]
        if self.action == "retrieve":
            return [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)()]
        return [api_role(Role.RADIOLOGIST, Role.ARBITRATOR)()]

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
        if self.action == "retrieve":
            return s.CaseDetailSerializer
        if self.action == "reads":
            return s.ReadCreateSerializer
        return s.CaseSummarySerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="Only cases in this status"),
            OpenApiParameter("band", str, description="Only cases in this risk band"),
        ]
    )
    def list(self, request: Request) -> Response:
        flt = actions.WorklistFilter(
            status=request.query_params.get("status", ""), band=request.query_params.get("band", "")
        )
        page = self.paginate_queryset(actions.worklist(request.user, flt))
        return self.get_paginated_response(s.CaseSummarySerializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        case = get_object_or_404(CASE_QUERYSET, pk=pk)
        events.case_opened(request.user, case, via="api")
        context = {
            "request": request,
            "ai_results": actions.case_ai_results(case),
            "visible_reads": actions.visible_reads(request.user, case),
        }
        return Response(s.CaseDetailSerializer(case, context=context).data)

    @extend_schema(request=s.ReadCreateSerializer, responses={201: s.ReadSerializer})
    @action(detail=True, methods=["post"])
    def reads(self, request: Request, pk: str) -> Response:
        serializer = s.ReadCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            read = actions.submit_read(request.user, int(pk), serializer.read_input())
        except actions.DomainError as error:
            return _error(error)
        return Response(s.ReadSerializer(read).data, status=status.HTTP_201_CREATED)


class StudyUploadViewSet(viewsets.GenericViewSet):
    """Upload images into a new or an existing study: all files are stored, or none."""

    permission_classes = [api_role(Role.ADMIN)]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = s.StudyUploadSerializer

    @extend_schema(
        request={"multipart/form-data": s.StudyUploadRequestSerializer},
        responses={
            201: s.UploadResultSerializer,
            400: s.UploadResultSerializer,
            404: s.UploadResultSerializer,
            409: s.UploadResultSerializer,
            413: s.UploadResultSerializer,
        },
    )
    def create(self, request: Request) -> Response:
        too_big = request_too_large(request._request)
        if too_big:
            return Response(
                {"detail": too_big, "study_id": None, "case_id": None, "files": []},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        meta = s.StudyUploadSerializer(data=request.data)
        meta.is_valid(raise_exception=True)
        spec = actions.StudySpec(**meta.validated_data)
        try:
            accepted = actions.upload_study(request.user, spec, request.FILES.getlist("files"))
        except actions.UploadRefused as refusal:
            body = {
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

    @extend_schema(request=s.OutcomeSerializer, responses={200: s.OutcomeSerializer})
    def post(self, request: Request) -> Response:
        serializer = s.OutcomeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            actions.record_outcome(
                request.user, data["accession_number"], data["outcome"], data["source"]
            )
        except actions.DomainError as error:
            return _error(error)
        return Response(serializer.data)


class ImageFileView(APIView):
    """The stored image, for API clients holding a token (pages use the session twin)."""

    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int) -> FileResponse:
        return private_file(get_object_or_404(Image, pk=pk).file)


class HeatmapFileView(APIView):
    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int) -> FileResponse:
        result = get_object_or_404(AIResult, pk=pk)
        if not result.heatmap:
            raise Http404("No heatmap for this result.")
        return private_file(result.heatmap)


class StudyAIReportView(APIView):
    """The study's AI result as a DICOM Structured Report (case and image scores, model)."""

    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(responses={(200, "application/dicom"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int) -> HttpResponse:
        try:
            return dicom_download(actions.export_study_report(request.user, pk))
        except actions.DomainError as error:
            return _error(error)


class HeatmapDicomView(APIView):
    """One image's heatmap overlay as a DICOM Secondary Capture."""

    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(responses={(200, "application/dicom"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int) -> HttpResponse:
        try:
            return dicom_download(actions.export_heatmap_capture(request.user, pk))
        except actions.DomainError as error:
            return _error(error)


class ModelVersionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    queryset = ModelVersion.objects.order_by("-is_active", "-created_at")
    serializer_class = s.ModelVersionSerializer

    def get_permissions(self):  # type: ignore[no-untyped-def]
        if self.action == "activate":
            return [api_role(Role.ADMIN)()]
        return [api_role(Role.ADMIN, Role.AUDITOR)()]

    @extend_schema(request=None, responses={200: s.ModelVersionSerializer})
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str) -> Response:
        try:
            version = actions.activate_model_version(request.user, int(pk))
        except actions.DomainError as error:
            return _error(error)
        return Response(s.ModelVersionSerializer(version).data)
