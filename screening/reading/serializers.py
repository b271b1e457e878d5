"""The reading endpoints' serializers: the worklist and case, reads and their findings and
marks, unaided opinions and the site's reading policy."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import pathway
from ..ai.serializers import NOT_SHOWN_REASON, AIResultSerializer, not_shown_reason
from ..api.serializers import QueryInteger
from ..choices import (
    AIReveal,
    BiRads,
    Breast,
    CaseRoute,
    CaseStatus,
    Decision,
    Density,
    FindingDepth,
    FindingSite,
    FindingType,
    MarkShape,
    ReadingPolicy,
    ReadKind,
    RiskBand,
)
from ..intake.serializers import StudySerializer
from ..models import (
    Case,
    Finding,
    Read,
    SitePolicy,
    UnaidedOpinion,
)
from .actions import ReadInput
from .assessment import FindingInput, Mark
from .worklist_pages import CURSOR_PATTERN


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
