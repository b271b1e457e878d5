"""Admin pages: upload studies, see what was stored, choose the triage model."""

from __future__ import annotations

from http import HTTPStatus

from django.conf import settings
from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from .. import errors, events
from ..ai import actions as ai_actions
from ..choices import Role
from ..forms import UploadForm
from ..models import ModelVersion, Study
from ..reading.views import paginate
from ..roles import AuthenticatedHttpRequest, role_required
from . import actions


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


def request_too_large(request: HttpRequest) -> str:
    """Refuse an oversized body from its declared length, before it is parsed."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.UPLOAD_MAX_REQUEST_BYTES:
        limit_mb = settings.UPLOAD_MAX_REQUEST_BYTES // (1024 * 1024)
        return f"The upload is larger than the {limit_mb} MB limit for one request; nothing was stored."
    return ""


def spec_from(data: dict) -> actions.StudySpec:
    return actions.StudySpec(
        accession_number=data["accession_number"],
        new_study=data.get("target", "new") != "existing",
        patient_pseudonym=data.get("patient_pseudonym") or "",
        study_date=data.get("study_date"),
        modality=data.get("modality") or "MG",
        birth_year=data.get("birth_year"),
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


@require_GET
@role_required(Role.ADMIN, Role.AUDITOR)
def model_versions(request: HttpRequest) -> HttpResponse:
    """Auditors see which versions exist and which triages, read-only; admins activate."""
    versions = ModelVersion.objects.order_by("-is_active", "-created_at")
    return render(request, "screening/model_versions.html", {"versions": versions})


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def activate_model(request: AuthenticatedHttpRequest, version_id: int) -> HttpResponse:
    """GET shows the version's evidence before anything changes; POST activates."""
    if request.method == "GET":
        version = get_object_or_404(ModelVersion, pk=version_id)
        return render(request, "screening/model_activate.html", {"version": version})
    try:
        version = ai_actions.activate_model_version(request.user, version_id)
    except errors.DomainError as error:
        messages.error(request, error.message)
        return redirect("model-versions")
    messages.success(request, f"{version} is now the active model.")
    return redirect("model-versions")
