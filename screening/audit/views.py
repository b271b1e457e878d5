"""Auditor pages: the performance dashboard, discordant cases, the audit trail, CSV exports.

Read-only by construction: every view is GET; the only row any of them writes is the
audit event that records an export.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .. import events
from ..choices import Role
from ..http import csv_download, csv_response, paginate
from ..models import RAW_SCORE_LABEL, AuditEvent, ModelVersion
from ..roles import role_required
from . import automation_bias, exports, plots, reporting
from .forms import AuditTrailFilterForm, ReportFilterForm

AUDIT_VIEWERS = (Role.AUDITOR, Role.ADMIN)


def _report_filter(request: HttpRequest) -> tuple[ReportFilterForm, reporting.ReportFilter, dict]:
    form = ReportFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_bound and form.is_valid() else {}
    reader = data.get("reader")
    flt = reporting.ReportFilter(
        model_version=data.get("model_version") or reporting.default_version(),
        reader_id=reader.pk if reader else None,
        date_from=data.get("date_from"),
        date_to=data.get("date_to"),
        band=data.get("band", ""),
        density=data.get("density", ""),
    )
    return form, flt, data


def _query(request: HttpRequest) -> str:
    """The filters, for links that keep them (export, drill-down), without page or refresh."""
    params = request.GET.copy()
    params.pop("page", None)
    params.pop("refresh", None)
    params.pop("bootstrap", None)
    return params.urlencode()


def _ai_labels(version: ModelVersion | None) -> dict[str, str]:
    """How the pages name the AI and its score: an unvalidated model's, for research."""
    return {"ai_name": reporting.ai_name(version), "raw_score_label": RAW_SCORE_LABEL}


@require_GET
@role_required(Role.AUDITOR)
def dashboard(request: HttpRequest) -> HttpResponse:
    form, flt, data = _report_filter(request)
    refresh = request.GET.get("refresh") == "1"
    # The AUC's interval by the bootstrap whatever it costs, when the auditor asks for it.
    bootstrap = True if request.GET.get("bootstrap") == "1" else None
    report = reporting.dashboard_report(flt, data.get("threshold"), refresh, bootstrap)
    context: dict[str, Any] = {
        "form": form,
        "report": report,
        "ai_performance": report.ai_performance,
        **_ai_labels(flt.model_version),
        "version": flt.model_version,
        "versions": report.versions,
        "query": _query(request),
        "cache_minutes": settings.REPORT_CACHE_SECONDS // 60,
        **plots.report_plots(report),
        "automation_bias": automation_bias.figures(),
    }
    return render(request, "screening/audit_dashboard.html", context)


@require_GET
@role_required(Role.AUDITOR)
def discordant(request: HttpRequest) -> HttpResponse:
    form, flt, data = _report_filter(request)
    found = reporting.discordant_ids(flt, data.get("direction", ""))
    page = paginate(request, found)
    page.object_list = list(reporting.rows_of(flt, list(page.object_list)))
    context = {
        "form": form,
        **_ai_labels(flt.model_version),
        "version": flt.model_version,
        "page": page,
        "count": len(found),
        "query": _query(request),
    }
    return render(request, "screening/audit_discordant.html", context)


@require_GET
@role_required(Role.AUDITOR)
def export_report(request: HttpRequest, table: str) -> HttpResponseBase:
    """A table of the dashboard, or the case rows behind it, as CSV; itself an audit event."""
    form, flt, data = _report_filter(request)
    if form.errors:
        return _filter_refused(form)
    if table in ("cases", "discordant"):  # the rows alone: no figures to compute
        direction = data.get("direction", "") if table == "discordant" else None
        with exports.collection_paused():
            cases = reporting.case_list(flt, direction)
        events.exported(request.user, table, len(cases.data), flt.as_detail())
        return csv_download(table, StreamingHttpResponse(exports.case_csv(cases)))
    if table not in exports.REPORT_TABLES:
        raise Http404("No such table.")
    content = exports.REPORT_TABLES[table](
        reporting.build_report(flt, what_if=data.get("threshold"))
    )
    events.exported(request.user, table, len(content[1]), flt.as_detail())
    return csv_response(table, exports.to_csv(content))


def _audit_events(request: HttpRequest) -> tuple[AuditTrailFilterForm, QuerySet[AuditEvent], dict]:
    form = AuditTrailFilterForm(request.GET or None)
    found = AuditEvent.objects.select_related("actor")
    data = form.cleaned_data if form.is_bound and form.is_valid() else {}
    if data.get("actor"):
        found = found.filter(actor=data["actor"])
    if data.get("action"):
        found = found.filter(action=data["action"])
    if data.get("case"):
        case = data["case"]
        found = found.filter(Q(object_type="case", object_id=str(case)) | Q(detail__case_id=case))
    if data.get("date_from"):
        found = found.filter(created_at__date__gte=data["date_from"])
    if data.get("date_to"):
        found = found.filter(created_at__date__lte=data["date_to"])
    return form, found, data


@require_GET
@role_required(*AUDIT_VIEWERS)
def audit_trail(request: HttpRequest) -> HttpResponse:
    form, found, _ = _audit_events(request)
    context = {"form": form, "page": paginate(request, found, 100), "query": _query(request)}
    return render(request, "screening/audit_trail.html", context)


@require_GET
@role_required(*AUDIT_VIEWERS)
def export_audit_trail(request: HttpRequest) -> HttpResponse:
    form, found, data = _audit_events(request)
    if form.errors:
        return _filter_refused(form)
    content = exports.audit_table(found)
    filters = {k: str(getattr(v, "pk", v)) for k, v in data.items() if v}
    events.exported(request.user, "audit_trail", len(content[1]), filters)
    return csv_response("audit-trail", exports.to_csv(content))


def _filter_refused(form: ReportFilterForm | AuditTrailFilterForm) -> HttpResponse:
    """A 400 naming what is wrong: the pages show the whole table beside the error, but a
    file has nowhere to say its filter was dropped, so it would pass for the selection."""
    problems = []
    for name, errors in form.errors.get_json_data().items():
        words = " ".join(error["message"] for error in errors)
        problems.append(words if name == "__all__" else f"{name}: {words}")
    message = (
        f"Not exported: the filter was refused ({'; '.join(problems)}). "
        "Correct it and export again."
    )
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
