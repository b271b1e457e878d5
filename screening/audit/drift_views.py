"""The auditor's drift page: is each model version still scoring films as it did?

Read-only but for the alerts: computing the page raises any drift alert not yet written
(``drift.drift_report(raise_new=True)``, idempotent), so an auditor who looks sees every drifted week at
once, audited, without waiting for the periodic sweep that raises them when nobody looks.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ..choices import DriftGroupBy, Role
from ..roles import role_required
from . import drift
from .forms import DriftFilterForm


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
