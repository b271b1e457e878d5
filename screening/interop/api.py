"""The export endpoints: a study's AI result as a DICOM SR, a heatmap as a DICOM SC."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from .. import errors
from ..api import serializers as s
from ..api.common import BinaryDownloadView, error_response
from ..choices import Role
from ..http import dicom_download
from ..roles import AuthenticatedRequest, api_role
from . import actions as interop_actions


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
            return error_response(error)


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
            return error_response(error)
