"""The AI endpoints: model versions (list, activate, silent trial, an auditor's scores) and
heatmap files as the evidence and the case allow."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import QuerySet
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from .. import errors
from ..api.common import BinaryDownloadView, error_response, path_id
from ..api.serializers import refusals
from ..choices import Role
from ..http import private_file
from ..models import AIResult, ModelVersion
from ..roles import AuthenticatedRequest, api_role, has_role
from . import actions as ai_actions
from . import queries as ai_queries
from . import serializers as s


class HeatmapFileView(BinaryDownloadView):
    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY, **refusals(404)})
    def get(self, request: Request, pk: int) -> FileResponse:
        try:
            auditor = has_role(request.user, Role.AUDITOR)
            return private_file(ai_queries.shown_heatmap(pk, auditor=auditor).heatmap)
        except errors.NotFound as error:
            raise Http404(error.message) from None


@extend_schema_view(
    list=extend_schema(responses={200: s.ModelVersionSerializer(many=True), **refusals(400, 404)})
)
class ModelVersionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    queryset = ModelVersion.objects.order_by("-is_active", "-created_at")
    serializer_class = s.ModelVersionSerializer

    def get_permissions(self):
        if self.action in ("activate", "start_silent_trial", "stop_silent_trial"):
            return [api_role(Role.ADMIN)()]
        return [api_role(Role.ADMIN, Role.AUDITOR)()]

    @extend_schema(request=None, responses={200: s.ModelVersionSerializer, **refusals(404)})
    @action(detail=True, methods=["post"])
    def activate(self, request: AuthenticatedRequest, pk: str) -> Response:
        version_id = path_id(pk, "model version")
        try:
            version = ai_actions.activate_model_version(request.user, version_id)
        except errors.DomainError as error:
            return error_response(error)
        return Response(s.ModelVersionSerializer(version).data)

    @extend_schema(request=None, responses={200: s.ModelVersionSerializer, **refusals(404, 409)})
    @action(detail=True, methods=["post"], url_path="start-silent-trial")
    def start_silent_trial(self, request: AuthenticatedRequest, pk: str) -> Response:
        """Score every new study with this version, for auditors only."""
        return self._change(ai_actions.start_silent_trial, request, pk)

    @extend_schema(request=None, responses={200: s.ModelVersionSerializer, **refusals(404, 409)})
    @action(detail=True, methods=["post"], url_path="stop-silent-trial")
    def stop_silent_trial(self, request: AuthenticatedRequest, pk: str) -> Response:
        """Stop at once: nothing more is queued for it; its results stay for auditors."""
        return self._change(ai_actions.stop_silent_trial, request, pk)

    def _change(self, verb: Callable, request: AuthenticatedRequest, pk: str) -> Response:
        try:
            version = verb(request.user, path_id(pk, "model version"))
        except errors.DomainError as error:
            return error_response(error)
        return Response(s.ModelVersionSerializer(version).data)


@extend_schema_view(
    get=extend_schema(responses={200: s.TrialScoreSerializer(many=True), **refusals(404)})
)
class VersionScoresView(generics.ListAPIView):
    """One version's case scores, newest first: auditors only, a silent trial's too."""

    permission_classes = [api_role(Role.AUDITOR)]
    serializer_class = s.TrialScoreSerializer

    def get_queryset(self) -> QuerySet[AIResult]:
        version = get_object_or_404(ModelVersion, pk=self.kwargs["pk"])
        return ai_queries.version_case_scores(version)
