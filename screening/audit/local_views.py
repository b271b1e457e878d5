"""The auditor's local validation page (one model version on this site's screens), and the
two-person switch that lets a version order the worklist on those figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from .. import errors
from ..choices import Role
from ..models import ModelVersion
from ..roles import AuthenticatedHttpRequest, role_required
from . import local_validation, reporting, triage_switch
from .forms import ScreenFilterForm


def _chosen(request: HttpRequest, versions: list[ModelVersion]) -> ModelVersion | None:
    """The version the picker names, else the dashboard's default, else the newest."""
    asked = request.GET.get("version", "")
    if asked:
        found = [v for v in versions if str(v.pk) == asked]
        if not found:
            raise Http404("No such model version with results.")
        return found[0]
    default = reporting.default_version()
    return default if default is not None else (versions[0] if versions else None)


@require_GET
@role_required(Role.AUDITOR)
def local_validation_page(request: HttpRequest) -> HttpResponse:
    versions = local_validation.versions_with_results()
    version = _chosen(request, versions)
    refresh = request.GET.get("refresh") == "1"
    bootstrap = True if request.GET.get("bootstrap") == "1" else None
    form = ScreenFilterForm(request.GET or None)
    about = form.chosen()
    report = (
        local_validation.local_report(version, refresh, bootstrap, about)
        if version is not None
        else None
    )
    context = {
        "versions": versions,
        "version": version,
        "form": form,
        "about": str(about),
        "filter_query": "&" + urlencode({k: v for k, v in asdict(about).items() if v})
        if str(about)
        else "",
        "report": report,
        "cache_minutes": settings.REPORT_CACHE_SECONDS // 60,
        "listed": local_validation.LISTED,
    }
    return render(request, "screening/audit_local.html", context)


def _switched(
    request: AuthenticatedHttpRequest, verb: Callable[[], object], done: str
) -> HttpResponse:
    """Run one switch verb; its refusal, or what it did, is shown on the models page."""
    try:
        verb()
    except errors.DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, done)
    return redirect("model-versions")


@require_POST
@role_required(Role.ADMIN)
def triage_propose(request: AuthenticatedHttpRequest, version_id: int) -> HttpResponse:
    """An admin proposes switching a version on for triage on its local figures."""
    return _switched(
        request,
        lambda: triage_switch.propose(request.user, version_id),
        "Proposed: an auditor must confirm before the version orders the worklist.",
    )


@require_POST
@role_required(Role.AUDITOR)
def triage_confirm(request: AuthenticatedHttpRequest, proposal_id: int) -> HttpResponse:
    """An auditor (not the proposer) confirms: the version orders the worklist from now."""
    return _switched(
        request,
        lambda: triage_switch.confirm(request.user, proposal_id),
        "Confirmed: the version now orders the worklist on its local evidence.",
    )


@require_POST
@role_required(Role.ADMIN, Role.AUDITOR)
def triage_off(request: AuthenticatedHttpRequest, version_id: int) -> HttpResponse:
    """Either role switches it off in one step, at once."""
    return _switched(
        request,
        lambda: triage_switch.switch_off(request.user, version_id),
        "Switched off: the worklist no longer follows its score.",
    )
