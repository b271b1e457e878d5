"""What every endpoint's schema shares: the text patterns, the documented refusals
(``refusals``) and the per-file report an upload or a request over the limit answers with.
Capabilities' serializers stand on it; it imports only the kernel."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

# Text as the schema states it, in patterns JSON Schema (ECMA) and Python read alike: no
# NUL (DRF refuses it: PostgreSQL cannot store it); SOME_TEXT also holds a visible character.
ANY_TEXT = r"^[^\x00]*$"
SOME_TEXT = r"^[^\x00]*[^\x00\t\n\v\f\r ][^\x00]*$"


class FileResultSerializer(serializers.Serializer):
    file = serializers.CharField()
    accepted = serializers.BooleanField()
    code = serializers.CharField()
    message = serializers.CharField()
    status = serializers.IntegerField()
    image_id = serializers.IntegerField(allow_null=True)


class UploadResultSerializer(serializers.Serializer):
    detail = serializers.CharField()
    study_id = serializers.IntegerField(allow_null=True)
    case_id = serializers.IntegerField(allow_null=True)
    prior = serializers.BooleanField(
        required=False, help_text="Stored as a prior study: history, with no case (case_id null)."
    )
    files = FileResultSerializer(many=True)


class QueryInteger(serializers.IntegerField):
    """A whole number from the query string, where an empty value is refused as the schema
    says (DRF's field takes ``?page=`` for no page at all)."""

    def get_value(self, dictionary: Any) -> Any:
        return dictionary.get(self.field_name, serializers.empty)


class ErrorSerializer(serializers.Serializer):
    """A refusal, in words the caller can act on."""

    detail = serializers.CharField()


# A 400 is either a refusal (``detail``) or the serializer's messages per field, which are
# lists of strings, or nested objects for nested input (``findings``).
VALIDATION_ERROR = {
    "type": "object",
    "description": "``detail`` for a refusal, else the messages per field.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": {},
}


# The upload refuses with its per-file report; its form fields refuse like any serializer.
UPLOAD_REFUSAL = {"anyOf": [{"$ref": "#/components/schemas/UploadResult"}, VALIDATION_ERROR]}


REFUSALS = {
    400: OpenApiResponse(VALIDATION_ERROR, "The request is invalid: nothing was changed."),
    401: OpenApiResponse(ErrorSerializer, "No valid token or session."),
    403: OpenApiResponse(ErrorSerializer, "Your role does not allow this."),
    404: OpenApiResponse(
        ErrorSerializer, "No such object (ids are whole numbers), or no such page."
    ),
    409: OpenApiResponse(
        ErrorSerializer, "The object is not in a state that allows this (someone acted first)."
    ),
    413: OpenApiResponse(UploadResultSerializer, "The request is larger than the upload limit."),
    415: OpenApiResponse(ErrorSerializer, "The body is not in a media type this operation takes."),
}


def refusals(*statuses: int) -> dict[int, OpenApiResponse]:
    """The documented error responses: 401 and 403 always (every endpoint has roles)."""
    return {code: REFUSALS[code] for code in sorted({401, 403, *statuses})}
