"""The AI endpoints' serializers: model versions with their gates, silent-trial scores and
AI results as the version's evidence lets them be shown."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..choices import (
    RANKING_BANDS,
)
from ..models import (
    AIResult,
    ModelVersion,
)


class GateSerializer(serializers.Serializer):
    """One evidence gate judged under this site's settings (ml.evidence)."""

    name = serializers.CharField()
    passed = serializers.BooleanField()
    rule = serializers.CharField()
    figures = serializers.CharField()
    reason = serializers.CharField()


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "architecture",
            "version",
            "checksum",
            "input_size",
            "threshold",
            "metrics",
            "evidence",
            "validated_for_triage",
            "shows_heatmaps",
            "shows_marks",
            "gates",
            "is_active",
            "created_at",
            "activated_at",
            "silent_trial",
            "silent_trial_changed_at",
        ]

    validated_for_triage = serializers.BooleanField(read_only=True)
    shows_heatmaps = serializers.BooleanField(read_only=True)
    shows_marks = serializers.BooleanField(read_only=True)
    gates = GateSerializer(many=True, read_only=True)


class TrialScoreSerializer(serializers.ModelSerializer):
    """A version's case-level result, for auditors: a silent trial's scores included."""

    class Meta:
        model = AIResult
        fields = ["id", "case", "model_version", "status", "probability", "error", "finished_at"]
        read_only_fields = fields


class RegionMarkSerializer(serializers.Serializer):
    """A suspicious region in the stored image's pixels (row, column, radius) and its score."""

    row = serializers.IntegerField()
    col = serializers.IntegerField()
    radius = serializers.IntegerField()
    score = serializers.FloatField()


NOT_SHOWN_REASON = serializers.CharField(
    allow_null=True,
    help_text="Why the score, exam score, band and probability are null although the AI "
    "ran: its version is not validated for triage (null when they are shown).",
)


def not_shown_reason(version: ModelVersion | None) -> str | None:
    return (version.not_shown_reason or None) if version is not None else None


class AIResultSerializer(serializers.ModelSerializer):
    """A result with what its version's evidence allows: the raw score, the exam score (1-10
    against the version's normal validation films) and the band only from a version
    validated for triage (else null, and ``not_shown_reason`` says why); the calibrated
    probability only where its calibration was fitted on validation films; heatmap and
    marks only where they passed their tests (else the reason they are hidden)."""

    model_version: serializers.StringRelatedField[Any] = serializers.StringRelatedField()
    probability = serializers.SerializerMethodField()
    heatmap_url = serializers.SerializerMethodField()
    exam_score = serializers.IntegerField(read_only=True, allow_null=True)
    calibrated_probability = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="Calibrated on validation films; what it is the chance of: ``target``.",
    )
    target = serializers.CharField(
        source="model_version.target",
        read_only=True,
        help_text='What the score was trained to find: "malignant", or "abnormal" '
        "(benign findings too).",
    )
    band = serializers.SerializerMethodField()
    not_shown_reason = serializers.SerializerMethodField()
    validated_for_triage = serializers.BooleanField(
        source="model_version.validated_for_triage", read_only=True
    )
    triage_evidence = serializers.CharField(source="model_version.triage_reason", read_only=True)
    marks = RegionMarkSerializer(source="shown_marks", many=True, read_only=True)
    hidden = serializers.SerializerMethodField()

    class Meta:
        model = AIResult
        fields = [
            "id",
            "model_version",
            "status",
            "probability",
            "exam_score",
            "calibrated_probability",
            "target",
            "band",
            "not_shown_reason",
            "validated_for_triage",
            "triage_evidence",
            "heatmap_url",
            "marks",
            "hidden",
            "error",
            "timings",
            "queued_at",
            "started_at",
            "finished_at",
        ]

    def get_heatmap_url(self, result: AIResult) -> str | None:
        return reverse("api-heatmap-file", args=[result.pk]) if result.shows_heatmap else None

    @extend_schema_field(
        serializers.ChoiceField(choices=["low", "intermediate", "high"], allow_null=True)
    )
    def get_band(self, result: AIResult) -> str | None:
        return result.band if result.band in RANKING_BANDS else None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_probability(self, result: AIResult) -> float | None:
        """The raw score: null from a version not validated for triage (it would rank)."""
        return result.probability if result.model_version.validated_for_triage else None

    @extend_schema_field(NOT_SHOWN_REASON)
    def get_not_shown_reason(self, result: AIResult) -> str | None:
        return not_shown_reason(result.model_version)

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_hidden(self, result: AIResult) -> dict[str, str]:
        """Why the heatmap or the marks are withheld, by part ({} when nothing is)."""
        version = result.model_version
        hidden = {}
        if result.heatmap and not version.shows_heatmaps:
            hidden["heatmap"] = version.heatmap_reason
        if result.marks and not version.shows_marks:
            hidden["marks"] = version.marks_reason
        return hidden
