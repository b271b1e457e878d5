"""The reading endpoints: the worklist (keyset pages), case detail, reads and image files;
the same verbs and role rules as the reading pages."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import BasePagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from .. import errors, events
from ..ai import queries as ai_queries
from ..api.common import BinaryDownloadView, error_response, path_id
from ..api.serializers import refusals
from ..choices import RANKING_BANDS, Role
from ..http import private_file
from ..models import Case, Image, SitePolicy, UnaidedOpinion
from ..roles import AuthenticatedRequest, api_role
from . import actions as reading_actions
from . import queries as reading_queries
from . import serializers as s
from . import worklist_pages
from .worklist_pages import BadCursor

CASE_QUERYSET = Case.objects.select_related("patient", "ai_result__model_version")


class WorklistPagination(BasePagination):
    """A keyset page of the worklist (``worklist_pages``): ``next`` starts where
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
        responses={200: s.CaseSummarySerializer(many=True), **refusals(400, 404)},
    )
    def list(self, request: AuthenticatedRequest) -> Response:
        query = s.WorklistQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = dict(query.validated_data)
        off = reading_queries.band_filter_off()
        if off and params.get("band") in RANKING_BANDS:
            return Response(
                {"detail": f"The risk filter is off. {off}"}, status=HTTPStatus.BAD_REQUEST
            )
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
        data = s.CaseSummarySerializer(page.object_list, many=True, context={"worklist": True}).data
        return self.get_paginated_response(data)

    @extend_schema(responses={200: s.CaseDetailSerializer, **refusals(404)})
    def retrieve(self, request: AuthenticatedRequest, pk: str) -> Response:
        case = get_object_or_404(CASE_QUERYSET, pk=path_id(pk, "case"))
        events.case_opened(request.user, case, via="api")
        hidden = reading_queries.ai_hidden_from(request.user, case)
        context = {
            "request": request,
            "ai_results": {} if hidden else ai_queries.case_ai_results(case),
            "ai_hidden": hidden,
            "visible_reads": reading_queries.visible_reads(request.user, case),
        }
        return Response(s.CaseDetailSerializer(case, context=context).data)

    @extend_schema(
        request=s.ReadCreateSerializer,
        responses={
            201: s.ReadSerializer,
            202: s.UnaidedOpinionSerializer,
            **refusals(400, 404, 409),
        },
    )
    @action(detail=True, methods=["post"])
    def reads(self, request: AuthenticatedRequest, pk: str) -> Response:
        case_id = path_id(pk, "case")
        serializer = s.ReadCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            read = reading_actions.submit_read(request.user, case_id, serializer.read_input())
        except errors.DomainError as error:
            return error_response(error)
        if isinstance(read, UnaidedOpinion):  # held: the AI is shown, the final read follows
            return Response(s.UnaidedOpinionSerializer(read).data, status=HTTPStatus.ACCEPTED)
        return Response(s.ReadSerializer(read).data, status=status.HTTP_201_CREATED)


class PolicyViewSet(viewsets.GenericViewSet):
    """The site's reading policy, every version: read by every role that reads or audits;
    a new version set by an admin (``reading.actions.set_policy``)."""

    serializer_class = s.SitePolicySerializer
    queryset = SitePolicy.objects.select_related("set_by")
    pagination_class = None
    # JSON only: a form's empty field would fall back to its default (DRF's HTML-input rule),
    # so "ai_reveal=" would set concurrent reveal silently instead of being refused.
    parser_classes = [JSONParser]

    def get_permissions(self):
        if self.action == "create":
            return [api_role(Role.ADMIN)()]
        return [api_role(Role.ADMIN, Role.AUDITOR, Role.RADIOLOGIST, Role.ARBITRATOR)()]

    @extend_schema(responses={200: s.SitePolicySerializer(many=True), **refusals()})
    def list(self, request: AuthenticatedRequest) -> Response:
        return Response(s.SitePolicySerializer(reading_queries.policies(), many=True).data)

    @extend_schema(
        request=s.SitePolicySerializer,
        responses={201: s.SitePolicySerializer, **refusals(400, 415)},
    )
    def create(self, request: AuthenticatedRequest) -> Response:
        given = s.SitePolicySerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            chosen = reading_actions.set_policy(request.user, **given.validated_data)
        except errors.DomainError as error:
            return error_response(error)
        return Response(s.SitePolicySerializer(chosen).data, status=status.HTTP_201_CREATED)


class ImageFileView(BinaryDownloadView):
    """The stored file as uploaded, for API clients holding a token (pages use the session
    twin): PNG or JPEG, or for a DICOM image the de-identified DICOM file."""

    permission_classes = [api_role(Role.RADIOLOGIST, Role.ARBITRATOR, Role.AUDITOR)]

    @extend_schema(
        responses={
            (200, "image/png"): OpenApiTypes.BINARY,
            (200, "image/jpeg"): OpenApiTypes.BINARY,
            (200, "application/dicom"): OpenApiTypes.BINARY,
            **refusals(404),
        }
    )
    def get(self, request: Request, pk: int) -> FileResponse:
        return private_file(get_object_or_404(Image, pk=pk).file)
