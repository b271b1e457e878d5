"""The export pages (a study's AI result as a DICOM SR, a heatmap as a DICOM SC, a closed
case's readers' report as a DICOM SR) and the admins' PACS send status."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from .. import errors
from ..choices import Role
from ..http import dicom_download
from ..models import Case
from ..roles import CLINICAL_VIEWERS, AuthenticatedHttpRequest, role_required
from . import actions as interop_actions
from . import pacs_delivery


@require_GET
@role_required(*CLINICAL_VIEWERS)
def study_ai_report(request: AuthenticatedHttpRequest, study_id: int) -> HttpResponse:
    """The study's AI result as a DICOM SR; same roles as viewing the case."""
    try:
        export = interop_actions.export_study_report(request.user, study_id)
    except errors.DomainError as error:
        return HttpResponse(error.message, status=error.status, content_type="text/plain")
    return dicom_download(export)


@require_GET
@role_required(*CLINICAL_VIEWERS)
def heatmap_dicom(request: AuthenticatedHttpRequest, result_id: int) -> HttpResponse:
    """One image's heatmap overlay as a DICOM Secondary Capture."""
    try:
        export = interop_actions.export_heatmap_capture(request.user, result_id)
    except errors.DomainError as error:
        return HttpResponse(error.message, status=error.status, content_type="text/plain")
    return dicom_download(export)


@require_GET
@role_required(*CLINICAL_VIEWERS)
def case_read_report(request: AuthenticatedHttpRequest, case_id: int) -> HttpResponse:
    """A closed case's readers' report as a DICOM SR; who may is the pathway's rule."""
    try:
        export = interop_actions.export_read_report(request.user, case_id)
    except errors.DomainError as error:
        return HttpResponse(error.message, status=error.status, content_type="text/plain")
    return dicom_download(export)


@require_GET
@role_required(Role.ADMIN)
def pacs_deliveries(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Admins' overview: the configured PACS destinations and every result not yet
    acknowledged, oldest first, each linked to its case's send status."""
    context = {
        "destinations": pacs_delivery.destinations(),
        "outstanding": pacs_delivery.outstanding(),
        "totals": pacs_delivery.totals(),
    }
    return render(request, "screening/pacs_deliveries.html", context)


@require_GET
@role_required(Role.ADMIN)
def case_pacs_deliveries(request: AuthenticatedHttpRequest, case_id: int) -> HttpResponse:
    """One case's send status: each object, each destination, how far it got and why not."""
    case = get_object_or_404(Case, pk=case_id)
    context = {
        "case": case,
        "deliveries": pacs_delivery.case_deliveries(case),
        "note": pacs_delivery.case_send_note(case),
    }
    return render(request, "screening/case_pacs_deliveries.html", context)


@require_POST
@role_required(Role.ADMIN)
def send_delivery_now(
    request: AuthenticatedHttpRequest, case_id: int, delivery_id: int
) -> HttpResponse:
    """ "Send again now" on a retrying delivery: its next attempt now, never a second copy."""
    try:
        interop_actions.send_delivery_now(request.user, case_id, delivery_id)
    except errors.DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "The next attempt was brought forward: it is sent now.")
    return redirect("case-pacs-deliveries", case_id=case_id)
