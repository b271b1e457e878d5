"""Admin pages: upload studies, see what was stored, choose the triage model."""

from __future__ import annotations

from http import HTTPStatus

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods

from .. import events
from ..choices import Role
from ..http import paginate, request_too_large
from ..models import Study
from ..roles import AuthenticatedHttpRequest, role_required
from . import actions
from .forms import UploadForm


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def upload(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "screening/upload.html", {"form": UploadForm()})
    too_big = request_too_large(request)
    if too_big:
        events.upload_request_refused(
            request.user, "request_too_large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        )
        return render(
            request,
            "screening/upload.html",
            {"form": UploadForm(), "error": too_big},
            status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        events.upload_request_refused(
            request.user, "invalid_fields", HTTPStatus.BAD_REQUEST, list(form.errors)
        )
        return render(
            request, "screening/upload.html", {"form": form}, status=HTTPStatus.BAD_REQUEST
        )
    try:
        accepted = actions.upload_study(
            request.user, spec_from(form.cleaned_data), request.FILES.getlist("files")
        )
    except actions.UploadRefused as refusal:
        context = {"form": form, "error": refusal.message, "results": refusal.results}
        return render(request, "screening/upload.html", context, status=refusal.status)
    messages.success(
        request, f"Stored {len(accepted.results)} image(s) in study {accepted.study.pk}."
    )
    context = {"form": UploadForm(), "results": accepted.results, "study": accepted.study}
    return render(request, "screening/upload.html", context, status=HTTPStatus.CREATED)


def spec_from(data: dict) -> actions.StudySpec:
    return actions.StudySpec(
        accession_number=data["accession_number"],
        new_study=data.get("target", "new") != "existing",
        patient_pseudonym=data.get("patient_pseudonym") or "",
        study_date=data.get("study_date"),
        modality=data.get("modality") or "MG",
        birth_year=data.get("birth_year"),
        prior=bool(data.get("prior")),
    )


@require_GET
@role_required(Role.ADMIN)
def study_list(request: HttpRequest) -> HttpResponse:
    studies = (
        Study.objects.select_related("case")
        .annotate(image_count=Count("images"))
        .order_by("-created_at", "-pk")
    )
    page = paginate(request, studies)
    return render(request, "screening/study_list.html", {"page": page})
