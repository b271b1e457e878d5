"""Reading-room pages. Each view authorises, calls one action, renders."""

from __future__ import annotations

from http import HTTPStatus

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from .. import actions, events
from ..choices import READABLE_STATUSES, BiRads, CaseStatus, Role
from ..forms import ReadForm, WorklistFilterForm, seconds_since_opened, sign_opened
from ..imaging import display_png
from ..models import AIResult, Case, Image
from ..roles import has_role, role_required

CLINICAL_VIEWERS = (Role.RADIOLOGIST, Role.AUDITOR)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if has_role(request.user, Role.RADIOLOGIST):
        return redirect("worklist")
    if has_role(request.user, Role.ADMIN):
        return redirect("upload")
    if has_role(request.user, Role.AUDITOR):
        return redirect("case-list")
    return render(request, "screening/no_role.html", status=HTTPStatus.FORBIDDEN)


@require_GET
@role_required(Role.RADIOLOGIST)
def worklist(request: HttpRequest) -> HttpResponse:
    form = WorklistFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    flt = actions.WorklistFilter(status=data.get("status", ""), band=data.get("band", ""))
    page = paginate(request, actions.worklist(request.user, flt), settings.WORKLIST_PAGE_SIZE)
    states = actions.case_ai_states(list(page.object_list))
    for case in page.object_list:
        case.ai_state = states[case.pk]
    return render(request, "screening/worklist.html", {"page": page, "form": form})


@require_GET
@role_required(Role.AUDITOR)
def case_list(request: HttpRequest) -> HttpResponse:
    form = WorklistFilterForm(request.GET or None)
    cases = Case.objects.select_related("patient", "ai_result__model_version").order_by(
        "-received_at", "-pk"
    )
    if form.is_valid() and form.cleaned_data.get("status"):
        cases = cases.filter(status=form.cleaned_data["status"])
    page = paginate(request, cases, settings.WORKLIST_PAGE_SIZE)
    return render(request, "screening/case_list.html", {"page": page, "form": form})


@require_GET
@role_required(*CLINICAL_VIEWERS)
def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _case_or_404(case_id)
    events.case_opened(request.user, case, via="page")
    return _render_case(request, case, ReadForm(initial=_read_initial(case)))


@require_POST
@role_required(Role.RADIOLOGIST)
def case_read(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _case_or_404(case_id)
    form = ReadForm(request.POST)
    if not form.is_valid():
        return _render_case(request, case, form, status=HTTPStatus.BAD_REQUEST)
    data = form.cleaned_data
    read_input = actions.ReadInput(
        decision=data["decision"],
        birads=data["birads"],
        reason=data["reason"],
        seconds_taken=seconds_since_opened(data["opened"], case.pk),
        expected_status=data["expected_status"],
    )
    try:
        actions.submit_read(request.user, case.pk, read_input)
    except actions.DomainError as error:
        form.add_error(None, error.message)
        return _render_case(request, _case_or_404(case_id), form, status=error.status)
    messages.success(request, f"Read recorded for case {case.pk}.")
    following = actions.next_case(request.user, after=case)
    if following is None:
        messages.info(request, "Your worklist is empty.")
        return redirect("worklist")
    return redirect("case-detail", case_id=following.pk)


@require_GET
@role_required(*CLINICAL_VIEWERS)
def image_file(request: HttpRequest, image_id: int) -> HttpResponse:
    image = get_object_or_404(Image, pk=image_id)
    if image.bit_depth <= 8 and not image.is_dicom:
        return private_file(image.file)
    try:
        with image.file.open("rb") as handle:
            content = display_png(handle.read())
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None
    response = HttpResponse(content, content_type="image/png")
    response["Cache-Control"] = "private, max-age=600"
    return response


@require_GET
@role_required(*CLINICAL_VIEWERS)
def heatmap_file(request: HttpRequest, result_id: int) -> FileResponse:
    result = get_object_or_404(AIResult, pk=result_id)
    if not result.heatmap:
        raise Http404("No heatmap for this result.")
    return private_file(result.heatmap)


@require_GET
@role_required(*CLINICAL_VIEWERS)
def study_ai_report(request: HttpRequest, study_id: int) -> HttpResponse:
    """The study's AI result as a DICOM SR; same roles as viewing the case."""
    try:
        export = actions.export_study_report(request.user, study_id)
    except actions.DomainError as error:
        return HttpResponse(error.message, status=error.status, content_type="text/plain")
    return dicom_download(export)


@require_GET
@role_required(*CLINICAL_VIEWERS)
def heatmap_dicom(request: HttpRequest, result_id: int) -> HttpResponse:
    """One image's heatmap overlay as a DICOM Secondary Capture."""
    try:
        export = actions.export_heatmap_capture(request.user, result_id)
    except actions.DomainError as error:
        return HttpResponse(error.message, status=error.status, content_type="text/plain")
    return dicom_download(export)


def dicom_download(export: actions.DicomExport) -> HttpResponse:
    response = HttpResponse(export.content, content_type="application/dicom")
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


def _case_or_404(case_id: int) -> Case:
    return get_object_or_404(
        Case.objects.select_related("patient", "ai_result__model_version"), pk=case_id
    )


def _read_initial(case: Case) -> dict:
    birads = BiRads.INCOMPLETE if case.ai_recommends_recall else BiRads.NEGATIVE
    return {"opened": sign_opened(case.pk), "expected_status": case.status, "birads": birads}


def _render_case(
    request: HttpRequest, case: Case, form: ReadForm, status: int = HTTPStatus.OK
) -> HttpResponse:
    results = actions.case_ai_results(case)
    images = [
        (image, results.get(image.pk))
        for image in Image.objects.filter(study__case=case).select_related("study")
    ]
    can_read = has_role(request.user, Role.RADIOLOGIST) and case.status in READABLE_STATUSES
    if can_read and case.status == CaseStatus.FIRST_READ_DONE:
        can_read = not case.reads.filter(reader=request.user).exists()
    is_radiologist = has_role(request.user, Role.RADIOLOGIST)
    context = {
        "case": case,
        "images": images,
        "next_case": actions.next_case(request.user, after=case) if is_radiologist else None,
        # Double reading is blind: reads are shown at arbitration, on closed cases and to auditors.
        "show_reads": not is_radiologist
        or case.status in (CaseStatus.ARBITRATION, CaseStatus.CLOSED),
        "studies": case.studies.all(),
        "reads": case.reads.select_related("reader"),
        "form": form,
        "can_read": can_read,
    }
    return render(request, "screening/case_detail.html", context, status=status)


def paginate(request: HttpRequest, items, per_page: int = 50):  # type: ignore[no-untyped-def]
    """The requested page of a query set or list; out-of-range pages give the last one."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))


def private_file(field) -> FileResponse:  # type: ignore[no-untyped-def]
    """Stream a stored file to a checked user; media is never served publicly."""
    try:
        handle = field.open("rb")
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None
    response = FileResponse(handle)
    response["Cache-Control"] = "private, max-age=600"
    return response
