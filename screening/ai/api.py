"""The AI endpoints: model versions (list, activate) and heatmap files as the evidence allows."""

from __future__ import annotations

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from .. import errors
from ..api import serializers as s
from ..api.common import BinaryDownloadView, error_response, path_id
from ..choices import Role
from ..http import private_file
from ..models import ModelVersion
from ..roles import AuthenticatedRequest, api_role
from . import actions as ai_actions
from . import queries as ai_queries


class HeatmapFileView(BinaryDownloadView):
    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY, **s.refusals(404)})
    def get(self, request: Request, pk: int) -> FileResponse:
        try:
            return private_file(ai_queries.shown_heatmap(pk).heatmap)
        except errors.NotFound as error:
            raise Http404(error.message) from None


@extend_schema_view(
    list=extend_schema(responses={200: s.ModelVersionSerializer(many=True), **s.refusals(400, 404)})
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
        version_id = path_id(pk, "model version")
        try:
            version = ai_actions.activate_model_version(request.user, version_id)
        except errors.DomainError as error:
            return error_response(error)
        return Response(s.ModelVersionSerializer(version).data)
