"""The auditor's local validation page: one model version on this site's screens."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from ..choices import Role
from ..models import ModelVersion
from ..roles import role_required
from . import local_validation, reporting


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
    report = (
        local_validation.local_report(version, refresh, bootstrap) if version is not None else None
    )
    context = {
        "versions": versions,
        "version": version,
        "report": report,
        "cache_minutes": settings.REPORT_CACHE_SECONDS // 60,
        "listed": local_validation.LISTED,
    }
    return render(request, "screening/audit_local.html", context)
