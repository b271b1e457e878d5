from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from ..choices import (
    RANKING_BANDS,
    AIReveal,
    AIStatus,
    BiRads,
    Breast,
    CaseRoute,
    CaseStatus,
    Decision,
    DeliveredObject,
    DeliveryStatus,
    Density,
    FindingDepth,
    FindingSite,
    FindingType,
    MarkShape,
    Modality,
    Outcome,
    OutcomeSource,
    ReadingPolicy,
    ReadKind,
    RiskBand,
)
from ..models import (
    AIResult,
    Case,
    Finding,
    Image,
    ModelVersion,
    PacsDelivery,
    Read,
    SitePolicy,
    Study,
    UnaidedOpinion,
)
from ..reading import pathway
from ..reading.actions import ReadInput
from ..reading.assessment import FindingInput, Mark
from ..reading.worklist_pages import CURSOR_PATTERN

# Text as the schema states it, in patterns JSON Schema (ECMA) and Python read alike: no
# NUL (DRF refuses it: PostgreSQL cannot store it); SOME_TEXT also holds a visible character.
ANY_TEXT = r"^[^\x00]*$"
SOME_TEXT = r"^[^\x00]*[^\x00\t\n\v\f\r ][^\x00]*$"


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


class MarkSerializer(serializers.Serializer):
    """Where a finding is marked: one of the case's films and the shape's points in that
    film's pixel coordinates, (0, 0) its top left corner (``choices.MarkShape``)."""

    image = serializers.IntegerField(min_value=1, help_text="The film's id (one of the case's).")
    shape = serializers.ChoiceField(
        choices=MarkShape.choices,
        help_text="point: 1 point; arrow: 2 (tail, head); ellipse: 4 (one axis's ends, "
        "then the other's).",
    )
    points = serializers.ListField(
        child=serializers.ListField(
            child=serializers.FloatField(), min_length=2, max_length=2, help_text="[x, y]"
        ),
        min_length=1,
        max_length=4,
    )

    def to_mark(self, data: dict) -> Mark:
        return Mark(data["image"], data["shape"], tuple((x, y) for x, y in data["points"]))


class FindingSerializer(serializers.ModelSerializer):
    mark = serializers.SerializerMethodField()

    class Meta:
        model = Finding
        fields = ["breast", "finding", "site", "depth", "mark"]

    @extend_schema_field(MarkSerializer(allow_null=True))
    def get_mark(self, finding: Finding) -> dict | None:
        if finding.image_id is None:
            return None
        return {
            "image": finding.image_id,
            "shape": finding.mark_shape,
            "points": finding.mark_points,
        }


class ReadSerializer(serializers.ModelSerializer):
    reader: serializers.StringRelatedField[Any] = serializers.StringRelatedField()
    findings = FindingSerializer(many=True, read_only=True)

    class Meta:
        model = Read
        fields = [
            "id",
            "kind",
            "reader",
            "decision",
            "birads",
            "birads_right",
            "birads_left",
            "density",
            "findings",
            "agrees_with_ai",
            "reason",
            "seconds_taken",
            "created_at",
        ]


class CaseSummarySerializer(serializers.ModelSerializer):
    """A case on the worklist. ``ai_score`` and ``risk_band`` are null where the shown
    result's version is not validated for triage; ``not_shown_reason`` says so."""

    patient: serializers.StringRelatedField[Any] = serializers.StringRelatedField()
    ai_score = serializers.SerializerMethodField()
    risk_band = serializers.SerializerMethodField()
    not_shown_reason = serializers.SerializerMethodField()
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = [
            "id",
            "patient",
            "status",
            "ai_score",
            "risk_band",
            "not_shown_reason",
            "ai_orders_worklist",
            "model_version",
            "received_at",
            "is_synthetic",
        ]

    ai_orders_worklist = serializers.BooleanField(read_only=True)

    def get_model_version(self, case: Case) -> str | None:
        return str(case.ai_result.model_version) if case.ai_result is not None else None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_ai_score(self, case: Case) -> float | None:
        return None if self._not_shown(case) else case.ai_score

    @extend_schema_field(
        serializers.ChoiceField(
            choices=[b for b in RiskBand.values if b != RiskBand.UNVALIDATED], allow_null=True
        )
    )
    def get_risk_band(self, case: Case) -> str | None:
        return None if self._not_shown(case) else case.risk_band

    @extend_schema_field(NOT_SHOWN_REASON)
    def get_not_shown_reason(self, case: Case) -> str | None:
        return not_shown_reason(case.ai_result.model_version if case.ai_result else None)

    def _not_shown(self, case: Case) -> bool:
        """Unvalidated version, or hidden from this reader until their unaided opinion."""
        result = case.ai_result
        context = getattr(self, "context", {})
        hidden = bool(context.get("ai_hidden")) or (
            bool(context.get("worklist"))
            and case.policy is not None
            and case.policy.ai_reveal == AIReveal.SEQUENTIAL
        )
        return hidden or (result is not None and not result.model_version.validated_for_triage)


class CaseDetailSerializer(CaseSummarySerializer):
    """A case as one person may see it: ``visible_reads`` in the context (the pathway's
    blind-reading rule) are the only reads serialised."""

    studies = serializers.SerializerMethodField()
    reads = serializers.SerializerMethodField()
    final_decision = serializers.SerializerMethodField()
    read_kind_expected = serializers.SerializerMethodField()
    case_ai_result = serializers.SerializerMethodField()
    policy = serializers.SerializerMethodField()
    route = serializers.SerializerMethodField()
    ai_hidden = serializers.SerializerMethodField()

    class Meta(CaseSummarySerializer.Meta):
        fields = [
            *CaseSummarySerializer.Meta.fields,
            "policy",
            "route",
            "ai_hidden",
            "final_decision",
            "closed_at",
            "read_kind_expected",
            "case_ai_result",
            "studies",
            "reads",
        ]

    @extend_schema_field(ReadSerializer(many=True))
    def get_reads(self, case: Case) -> list[dict]:
        return list(ReadSerializer(self.context["visible_reads"], many=True).data)

    @extend_schema_field(serializers.ChoiceField(choices=Decision.choices, allow_blank=True))
    def get_final_decision(self, case: Case) -> str:
        return case.final_decision

    @extend_schema_field(serializers.ChoiceField(choices=ReadKind.choices, allow_null=True))
    def get_read_kind_expected(self, case: Case) -> str | None:
        """The read the case waits for: what a client states as ``kind`` when reading."""
        return pathway.expected_kind(case.status)

    @extend_schema_field(StudySerializer(many=True))
    def get_studies(self, case: Case) -> list[dict]:
        studies = case.studies.prefetch_related("images")
        return list(StudySerializer(studies, many=True, context=self.context).data)

    @extend_schema_field(AIResultSerializer(allow_null=True))
    def get_case_ai_result(self, case: Case) -> dict | None:
        if self.context.get("ai_hidden") or not case.ai_result_id:
            return None
        return AIResultSerializer(case.ai_result).data

    @extend_schema_field(serializers.ChoiceField(choices=ReadingPolicy.choices))
    def get_policy(self, case: Case) -> str:
        """The site policy the case arrived under (standard for cases from before them)."""
        return case.policy.policy if case.policy else ReadingPolicy.STANDARD

    @extend_schema_field(serializers.ChoiceField(choices=CaseRoute.choices, allow_null=True))
    def get_route(self, case: Case) -> str | None:
        """Double, single or AI as second reader; null while undecided or while the AI
        is hidden from this reader (the route would tell its band)."""
        return None if self.context.get("ai_hidden") or not case.route else case.route

    @extend_schema_field(serializers.BooleanField())
    def get_ai_hidden(self, case: Case) -> bool:
        """Sequential reveal: the AI is withheld until this reader's unaided opinion."""
        return bool(self.context.get("ai_hidden"))


class UnaidedOpinionSerializer(serializers.ModelSerializer):
    """A read held as the reader's unaided opinion: the AI is now shown to them, and their
    next read of this kind is their final one (a change needs a reason)."""

    prompt = serializers.SerializerMethodField()

    class Meta:
        model = UnaidedOpinion
        fields = ["id", "kind", "trigger", "decision", "birads", "prompt", "created_at"]

    def get_prompt(self, opinion: UnaidedOpinion) -> str:
        return pathway.revision_prompt(opinion.trigger)


class SitePolicySerializer(serializers.ModelSerializer):
    set_by: serializers.StringRelatedField[Any] = serializers.StringRelatedField()
    starts_at = serializers.DateTimeField(required=False)

    class Meta:
        model = SitePolicy
        fields = ["id", "policy", "single_read_normal", "ai_reveal", "set_by", "starts_at"]
        read_only_fields = ["id", "set_by"]


class FindingInputSerializer(serializers.Serializer):
    breast = serializers.ChoiceField(choices=Breast.choices)
    finding = serializers.ChoiceField(choices=FindingType.choices)
    site = serializers.ChoiceField(choices=FindingSite.choices)
    depth = serializers.ChoiceField(choices=FindingDepth.choices, required=False, default="")
    mark = MarkSerializer(
        required=False,
        allow_null=True,
        default=None,
        help_text="Optional: where the finding is marked on one of the case's films.",
    )


# The read payload's version. Version 1 (``decision`` and one ``birads`` for the whole case,
# no density) is refused for new reads; reads stored under it stay as they were given.
READ_PAYLOAD_VERSION = 2
NEEDED_FOR_A_READ = (
    "Required for every new read (read payload version 2): a BI-RADS category for each "
    "breast and the density. A whole-case birads alone (version 1) is no longer taken."
)


def _needed(choices: list[tuple[Any, str]], **kwargs: Any) -> serializers.ChoiceField:
    """A field every new read must carry, its refusal saying why."""
    messages: dict[str, Any] = dict.fromkeys(("required", "null", "blank"), NEEDED_FOR_A_READ)
    return serializers.ChoiceField(choices=choices, error_messages=messages, **kwargs)


class ReadCreateSerializer(serializers.Serializer):
    """A read (payload version 2). Say which read it is (``kind``, or the ``expected_status``
    you saw); give ``birads_right``, ``birads_left``, ``density`` and, for breasts whose
    category needs one, ``findings``. ``decision`` and ``birads`` follow from the categories:
    either, if sent, must match them. A version 1 payload (``decision`` and a whole-case
    ``birads`` without the per-breast categories and density) is refused with a 400 naming
    each missing field.
    """

    payload_version = serializers.ChoiceField(
        choices=[(READ_PAYLOAD_VERSION, str(READ_PAYLOAD_VERSION))],
        required=False,
        default=READ_PAYLOAD_VERSION,
        error_messages={
            "invalid_choice": f"Read payload version {{input}} is not taken: new reads are "
            f"version {READ_PAYLOAD_VERSION} (birads_right, birads_left and density required)."
        },
        help_text="The read payload's version; only version 2 is taken for new reads.",
    )
    kind = serializers.ChoiceField(choices=ReadKind.choices, required=False, allow_blank=True)
    decision = serializers.ChoiceField(
        choices=Decision.choices,
        required=False,
        allow_blank=True,
        help_text="Optional: must match what the categories mean.",
    )
    birads = serializers.ChoiceField(
        choices=BiRads.choices,
        required=False,
        allow_null=True,
        help_text="Optional: the case's category, its most concerning breast's.",
    )
    birads_right = _needed(BiRads.choices)
    birads_left = _needed(BiRads.choices)
    density = _needed(Density.choices, help_text="ACR a to d")
    findings = FindingInputSerializer(many=True, required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
    seconds_taken = serializers.IntegerField(required=False, min_value=0, allow_null=True)
    expected_status = serializers.ChoiceField(
        choices=CaseStatus.choices, required=False, allow_blank=True, default=""
    )

    def read_input(self) -> ReadInput:
        data = dict(self.validated_data)
        data.pop("payload_version")
        findings = tuple(
            FindingInput(**{**f, "mark": f["mark"] and MarkSerializer().to_mark(f["mark"])})
            for f in data.pop("findings", [])
        )
        return ReadInput(**data, findings=findings)


class OutcomeSerializer(serializers.Serializer):
    accession_number = serializers.RegexField(
        SOME_TEXT, max_length=64, trim_whitespace=False, help_text="The screen's accession number"
    )
    outcome = serializers.ChoiceField(choices=Outcome.choices)
    # A declared field: the serializer's metaclass moves it out of Field.source, which it shadows.
    source = serializers.ChoiceField(choices=OutcomeSource.choices)  # type: ignore[assignment]


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


class WorklistQuerySerializer(serializers.Serializer):
    """The worklist's filters: a value outside the vocabulary is a 400, never a query."""

    status = serializers.ChoiceField(
        choices=CaseStatus.choices,
        required=False,
        allow_blank=True,
        help_text="Only cases in this status",
    )
    band = serializers.ChoiceField(
        choices=RiskBand.choices,
        required=False,
        allow_blank=True,
        help_text="Only cases in this risk band. High, intermediate and low are refused "
        "(400, saying why) while the active AI version is not validated for triage.",
    )
    after = serializers.RegexField(
        rf"^({CURSOR_PATTERN})?$",
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="The page after this position: the ``next`` link's value",
        error_messages={"invalid": "Not a worklist position; start again from the first page."},
    )
    page = QueryInteger(
        required=False,
        min_value=1,
        max_value=100_000,
        help_text="Page number (an OFFSET walk, kept for old clients; follow ``next`` instead)",
    )


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


class PacsDeliverySerializer(serializers.ModelSerializer):
    """One object of a closed case on its way to one PACS destination."""

    object = serializers.ChoiceField(source="kind", choices=DeliveredObject.choices)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)

    class Meta:
        model = PacsDelivery
        fields = [
            "object",
            "destination",
            "status",
            "attempts",
            "last_error",
            "sop_instance_uid",
            "next_attempt_at",
            "acknowledged_at",
        ]


class CaseSendStatusSerializer(serializers.Serializer):
    """A case's send status: its deliveries, or why it has none (``note``)."""

    case = serializers.IntegerField()
    note = serializers.CharField()
    deliveries = PacsDeliverySerializer(many=True)
