"""The auditor's filters: the reports' period, model version and reader; the audit trail's;
the screens a drift or local-validation page covers."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from ..choices import (
    AgeBand,
    AuditAction,
    Density,
    DriftGroupBy,
    RiskBand,
    Role,
)
from ..models import Image, ModelVersion
from . import drift


class ReportFilterForm(forms.Form):
    """The auditor's filters; an empty form means the default version and every case."""

    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.order_by("-created_at"),
        required=False,
        empty_label="Active version",
    )
    reader = forms.ModelChoiceField(
        queryset=get_user_model()
        .objects.filter(groups__name__in=[Role.RADIOLOGIST, Role.ARBITRATOR])
        .distinct()
        .order_by("username"),
        required=False,
        empty_label="Any reader",
    )
    date_from = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Received from"
    )
    date_to = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="to"
    )
    band = forms.ChoiceField(
        choices=[("", "Any risk band"), *RiskBand.choices[:3]], required=False, label="AI band"
    )
    density = forms.ChoiceField(
        choices=[("", "Any density"), *Density.choices],
        required=False,
        label="Density (ACR)",
        help_text="Cases a reader recorded with this breast density.",
    )
    threshold = forms.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        label="What-if threshold",
        widget=forms.NumberInput(attrs={"step": "0.01", "placeholder": "e.g. 0.40"}),
    )
    direction = forms.ChoiceField(
        choices=[
            ("", "Either direction"),
            ("ai_recall", "AI recall, readers no recall"),
            ("reader_recall", "Readers recall, AI no recall"),
        ],
        required=False,
    )

    def clean(self):
        super().clean()
        data = self.cleaned_data
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data


class AuditTrailFilterForm(forms.Form):
    actor = forms.ModelChoiceField(
        queryset=get_user_model().objects.order_by("username"),
        required=False,
        empty_label="Anyone",
        label="User",
    )
    action = forms.ChoiceField(choices=[("", "Any action"), *AuditAction.choices], required=False)
    case = forms.IntegerField(min_value=1, required=False, label="Case #")
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


class ScreenFilterForm(forms.Form):
    """About which screens: one density, age band or manufacturer; empty: all of them. The
    drift page and the local validation page filter alike."""

    density = forms.ChoiceField(
        choices=[("", "Any density"), *Density.choices], required=False, label="Density (ACR)"
    )
    age_band = forms.ChoiceField(
        choices=[("", "Any age"), *AgeBand.choices], required=False, label="Age band"
    )
    manufacturer = forms.ChoiceField(choices=[], required=False, label="Manufacturer")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        makers = Image.objects.order_by("manufacturer").values_list("manufacturer", flat=True)
        named = [m or drift.UNKNOWN for m in makers.distinct()]
        self.fields["manufacturer"].choices = [  # type: ignore[attr-defined]
            ("", "Any manufacturer"),
            *((m, m) for m in sorted(set(named))),
        ]

    def chosen(self) -> drift.DriftFilter:
        """The filter asked for; every screen when the form is unbound or invalid."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return drift.DriftFilter(
            density=data.get("density", ""),
            age_band=data.get("age_band", ""),
            manufacturer=data.get("manufacturer", ""),
        )


class DriftFilterForm(ScreenFilterForm):
    """Which version, grouped how, about which films; empty: the active version, all films."""

    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(), required=False, empty_label="Active version"
    )
    group_by = forms.ChoiceField(choices=DriftGroupBy.choices, required=False, label="Group by")
    field_order = ["model_version", "group_by", "density", "age_band", "manufacturer"]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model_version"].queryset = drift.monitored_versions()  # type: ignore[attr-defined]
