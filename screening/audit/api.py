"""The outcomes endpoint: a screen's biopsy or follow-up result, by accession number."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import errors
from ..api.common import error_response
from ..api.serializers import refusals
from ..choices import Role
from ..roles import AuthenticatedRequest, api_role
from . import actions as audit_actions
from . import serializers as s


class OutcomeView(APIView):
    """A hospital system (pathology, follow-up registry) reports a screen's outcome."""

    permission_classes = [api_role(Role.ADMIN)]

    @extend_schema(
        request=s.OutcomeSerializer, responses={200: s.OutcomeSerializer, **refusals(400, 404)}
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
            return error_response(error)
        return Response(serializer.data)
