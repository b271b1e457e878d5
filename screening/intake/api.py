"""The upload endpoint: the same verb and refusals as the upload page."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from .. import events
from ..api.serializers import REFUSALS, UPLOAD_REFUSAL, UploadResultSerializer, refusals
from ..choices import Role
from ..http import request_too_large
from ..roles import AuthenticatedRequest, api_role
from . import actions as intake_actions
from . import serializers as s


@extend_schema_view(
    create=extend_schema(
        responses={
            201: UploadResultSerializer,
            400: OpenApiResponse(UPLOAD_REFUSAL, "Refused: the report per file, or the fields."),
            **refusals(),
            404: OpenApiResponse(UploadResultSerializer, "No such study to add to."),
            409: OpenApiResponse(UploadResultSerializer, "A file or the study is stored already."),
            413: REFUSALS[413],
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
            "prior": accepted.study.is_prior,
            "files": [r.as_dict() for r in accepted.results],
        }
        return Response(body, status=status.HTTP_201_CREATED)
