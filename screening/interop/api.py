"""The export endpoints (a study's AI result as a DICOM SR, a heatmap as a DICOM SC, a closed
case's readers' report as a DICOM SR) and a case's PACS send status."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import errors
from ..api.common import BinaryDownloadView, error_response
from ..api.serializers import refusals
from ..choices import Role
from ..http import dicom_download
from ..models import Case
from ..roles import AuthenticatedRequest, api_role
from . import actions as interop_actions
from . import pacs_delivery
from . import serializers as s


class StudyAIReportView(BinaryDownloadView):
    """The study's AI result as a DICOM Structured Report (case and image scores, model)."""

    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(
        responses={(200, "application/dicom"): OpenApiTypes.BINARY, **refusals(404, 409)}
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
        responses={(200, "application/dicom"): OpenApiTypes.BINARY, **refusals(404, 409)}
    )
    def get(self, request: AuthenticatedRequest, pk: int) -> HttpResponse:
        try:
            return dicom_download(interop_actions.export_heatmap_capture(request.user, pk))
        except errors.DomainError as error:
            return error_response(error)


class CaseReadReportView(BinaryDownloadView):
    """A closed case's final report as a DICOM SR: per breast BI-RADS, density, findings,
    the decision, each read and its reader, the arbitration. Only for the case's readers
    and auditors, and never while the case is open (409), so blind reading holds."""

    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(
        responses={(200, "application/dicom"): OpenApiTypes.BINARY, **refusals(403, 404, 409)}
    )
    def get(self, request: AuthenticatedRequest, pk: int) -> HttpResponse:
        try:
            return dicom_download(interop_actions.export_read_report(request.user, pk))
        except errors.DomainError as error:
            return error_response(error)


class CaseSendStatusView(APIView):
    """A case's results on their way to the PACS: each object and destination, its status
    (pending, sending, failed and retrying, sent, withheld in research mode), attempts and
    last error. Admins only, as the page."""

    permission_classes = [api_role(Role.ADMIN)]

    @extend_schema(responses={200: s.CaseSendStatusSerializer, **refusals(404)})
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        case = get_object_or_404(Case, pk=pk)
        status = {
            "case": case.pk,
            "note": pacs_delivery.case_send_note(case),
            "deliveries": pacs_delivery.case_deliveries(case),
        }
        return Response(s.CaseSendStatusSerializer(status).data)
