"""The policy simulator's page and CSV: the recorded cohort replayed under each reading policy.

Read-only: the only row either writes is the audit event of an export. Auditors and admins
(who choose the site's policy) may look; the figures are counts over screens, naming no
case and no reader.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .. import events
from ..choices import ReadingPolicy, Role
from ..http import csv_response
from ..models import ModelVersion
from ..roles import role_required
from . import exports, local_validation, plots, report_data, reporting, simulation

SIMULATION_VIEWERS = (Role.AUDITOR, Role.ADMIN)
CUT_WIDGET = forms.NumberInput(attrs={"step": "any", "min": "0", "max": "1"})


class SimulationForm(forms.Form):
    """Which version's scores, which screens, and the two cuts; empty: the defaults."""

    version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), required=False)
    date_from = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Received from"
    )
    date_to = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="to"
    )
    high = forms.FloatField(
        min_value=0, max_value=1, required=False, label="AI high at or above", widget=CUT_WIDGET
    )
    normal = forms.FloatField(
        min_value=0, max_value=1, required=False, label="AI normal below", widget=CUT_WIDGET
    )

    def __init__(self, versions: list[ModelVersion], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = ModelVersion.objects.filter(  # type: ignore[attr-defined]
            pk__in=[v.pk for v in versions]
        ).order_by("-is_active", "-created_at")
        self.fields["version"].empty_label = None  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Choice:
    version: ModelVersion | None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    high: float = 0.5
    normal: float = 0.25

    def as_detail(self) -> dict[str, Any]:
        """For the export's audit event: ids, dates and cuts only."""
        return {
            "model_version_id": self.version.pk if self.version else None,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "high": self.high,
            "normal": self.normal,
        }


def _choice(request: HttpRequest) -> tuple[SimulationForm, Choice]:
    """The form and what it asks for; an invalid field falls back to its default."""
    versions = local_validation.versions_with_results()
    form = SimulationForm(versions, request.GET or None)
    data = form.cleaned_data if form.is_bound and form.is_valid() else {}
    version = (
        data.get("version") or reporting.default_version() or (versions[0] if versions else None)
    )
    if version is None:
        return form, Choice(None)
    bands = version.evidence.get("bands") if isinstance(version.evidence, dict) else None
    high, normal = simulation.default_cuts(version.threshold, bands)
    return form, Choice(
        version,
        data.get("date_from"),
        data.get("date_to"),
        high if data.get("high") is None else data["high"],
        normal if data.get("normal") is None else data["normal"],
    )


def _simulated(choice: Choice) -> simulation.Simulation | None:
    if choice.version is None:
        return None
    cohort = report_data.replay_cohort(choice.version, choice.date_from, choice.date_to)
    return simulation.simulate(cohort, choice.high, choice.normal)


@require_GET
@role_required(*SIMULATION_VIEWERS)
def simulate_page(request: HttpRequest) -> HttpResponse:
    form, choice = _choice(request)
    result = _simulated(choice)
    plot = plots.simulation_plot(result) if result is not None and len(result.cohort) else None
    context = {
        "form": form,
        "choice": choice,
        "simulation": result,
        "ai_name": reporting.ai_name(choice.version),
        "plot": plot,
        "policies": ReadingPolicy,
        "query": request.GET.urlencode(),
    }
    return render(request, "screening/audit_simulate.html", context)


@require_GET
@role_required(*SIMULATION_VIEWERS)
def export_simulation(request: HttpRequest) -> HttpResponse:
    """Every policy at the chosen cuts and over the sweep, as CSV; itself an audit event."""
    form, choice = _choice(request)
    if form.errors:
        message = "Not exported: " + " ".join(str(e) for es in form.errors.values() for e in es)
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    result = _simulated(choice)
    content = exports.simulation_table(result)
    events.exported(request.user, "simulation", len(content[1]), choice.as_detail())
    return csv_response("simulation", exports.to_csv(content))
