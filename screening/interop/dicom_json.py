"""What DICOMweb's endpoints (``dicomweb``: STOW-RS and QIDO-RS; ``wado``: WADO-RS) share:
the DICOM media type, the DICOM JSON renderer and their refusals as the schema states them."""

from __future__ import annotations

from http import HTTPStatus

from drf_spectacular.utils import OpenApiResponse
from rest_framework.renderers import JSONRenderer

from ..api.serializers import ErrorSerializer

DICOM_MEDIA_TYPE = "application/dicom"


class DicomJSONRenderer(JSONRenderer):
    """DICOM JSON (PS3.18 F.2): the only media type DICOMweb clients parse."""

    media_type = "application/dicom+json"
    format = "dicom+json"


def refusals_as_sent(*statuses: int) -> dict:
    """Refusals as this view sends them: ``{"detail": …}``, as DICOM JSON or plain JSON
    (whichever the client accepts)."""
    return {code: OpenApiResponse(ErrorSerializer, HTTPStatus(code).phrase) for code in statuses}
