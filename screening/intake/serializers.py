"""The intake endpoints' serializers: studies and their images, and the upload request."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..ai.serializers import AIResultSerializer
from ..api.serializers import ANY_TEXT
from ..choices import (
    AIStatus,
    Modality,
)
from ..models import (
    Image,
    Study,
)


class ImageSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    ai_result = serializers.SerializerMethodField()
    dicom_heatmap_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "laterality",
            "view",
            "width",
            "height",
            "bit_depth",
            "sha256",
            "url",
            "ai_result",
            "sop_instance_uid",
            "burned_in_annotation",
            "dicom_heatmap_url",
        ]

    def get_url(self, image: Image) -> str:
        return reverse("api-image-file", args=[image.pk])

    def get_dicom_heatmap_url(self, image: Image) -> str | None:
        """The heatmap as a DICOM Secondary Capture, for images that came in as DICOM."""
        result = self.context.get("ai_results", {}).get(image.pk)
        if not image.is_dicom or result is None or not result.shows_heatmap:
            return None
        return reverse("api-heatmap-dicom", args=[result.pk])

    @extend_schema_field(AIResultSerializer(allow_null=True))
    def get_ai_result(self, image: Image) -> dict | None:
        result = self.context.get("ai_results", {}).get(image.pk)
        return AIResultSerializer(result).data if result else None


class StudySerializer(serializers.ModelSerializer):
    images = ImageSerializer(many=True, read_only=True)
    dicom_report_url = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "id",
            "accession_number",
            "study_date",
            "modality",
            "source_format",
            "study_instance_uid",
            "dicom_report_url",
            "images",
        ]

    def get_dicom_report_url(self, study: Study) -> str | None:
        """The AI result as a DICOM SR, once a DICOM study's case is scored."""
        result = study.case.ai_result if study.case is not None else None
        if not study.is_dicom or result is None or result.status != AIStatus.DONE:
            return None
        return reverse("api-study-ai-report", args=[study.pk])


class StudyUploadSerializer(serializers.Serializer):
    # Required for PNG/JPEG (the upload action says so); DICOM brings its own.
    accession_number = serializers.RegexField(
        ANY_TEXT, max_length=64, required=False, allow_blank=True, default=""
    )
    new_study = serializers.BooleanField(default=True)
    patient_pseudonym = serializers.RegexField(
        ANY_TEXT, max_length=64, required=False, allow_blank=True, default=""
    )
    birth_year = serializers.IntegerField(min_value=1900, max_value=2100, required=False)
    study_date = serializers.DateField(required=False)
    modality = serializers.ChoiceField(choices=Modality.choices, default=Modality.MG)
    prior = serializers.BooleanField(
        default=False,
        help_text="Stored as history for comparison: no case, no reading task, not scored by the AI; shown beside the woman's later screens. A study dated before her newest screen is a prior even unticked.",
    )


@extend_schema_field({"type": "string", "format": "binary"})
class BinaryFile(serializers.FileField):
    """A file part of a multipart body (drf-spectacular would call it a URI)."""


class StudyUploadRequestSerializer(StudyUploadSerializer):
    """The documented request: files are checked one by one by the upload action, not here."""

    files = serializers.ListField(
        child=BinaryFile(), min_length=1, max_length=settings.UPLOAD_MAX_FILES
    )
