"""The auditor's drift page: is each model version still scoring films as it did?

Read-only but for the alerts: computing the page raises any drift alert not yet written
(``drift.drift_report(raise_new=True)``, idempotent), so an auditor who looks sees every drifted week at
once, audited, without waiting for the periodic sweep that raises them when nobody looks.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ..choices import AgeBand, Density, DriftGroupBy, Role
from ..models import Image, ModelVersion
from ..roles import role_required
from . import drift


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


@require_GET
@role_required(Role.AUDITOR)
def drift_page(request: HttpRequest) -> HttpResponse:
    form = DriftFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_bound and form.is_valid() else {}
    version = data.get("model_version") or drift.monitored_versions().first()
    flt = form.chosen()
    group_by = data.get("group_by") or DriftGroupBy.MANUFACTURER
    report = drift.drift_report(version, group_by, flt, raise_new=True)
    context = {
        "form": form,
        "report": report,
        "group_label": DriftGroupBy(group_by).label,
        "psi_alert": settings.DRIFT_PSI_ALERT,
        "ks_p": settings.DRIFT_KS_P,
        "min_films": settings.DRIFT_MIN_FILMS,
    }
    return render(request, "screening/audit_drift.html", context)
