"""The model versions page, activation (evidence first, then the switch), silent trials."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ... import errors
from ...choices import AIStatus, ProposalStatus, Role
from ...models import ModelVersion, TriageProposal
from ...roles import AuthenticatedHttpRequest, role_required
from .. import actions as ai_actions
from .. import queries as ai_queries


@require_GET
@role_required(Role.ADMIN, Role.AUDITOR)
def model_versions(request: HttpRequest) -> HttpResponse:
    """Auditors see which versions exist and which triages, read-only; admins activate
    and run silent trials. Both see what each version's manifest claims, who registered it,
    how many cases it scored, and the proposals to switch triage on by local evidence."""
    waiting = TriageProposal.objects.filter(status=ProposalStatus.PENDING)
    scored = Q(results__status=AIStatus.DONE, results__image__isnull=True)  # case results
    versions = list(
        ModelVersion.objects.annotate(cases_scored=Count("results", filter=scored))
        .order_by("-is_active", "-created_at")
        .prefetch_related(
            Prefetch("triage_proposals", waiting.select_related("proposed_by"), "pending_proposals")
        )
    )
    registered = ai_queries.registrations(versions)
    context = {
        "versions": versions,
        "claims": [(v, registered.get(v.pk)) for v in versions],
        "local_min_cancers": settings.AI_LOCAL_MIN_CANCERS,
    }
    return render(request, "screening/model_versions.html", context)


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


@require_POST
@role_required(Role.ADMIN)
def silent_trial(request: AuthenticatedHttpRequest, version_id: int, verb: str) -> HttpResponse:
    """Start or stop a version's silent trial (``verb`` from the URL: start or stop)."""
    change = ai_actions.start_silent_trial if verb == "start" else ai_actions.stop_silent_trial
    try:
        version = change(request.user, version_id)
    except errors.DomainError as error:
        messages.error(request, error.message)
        return redirect("model-versions")
    if version.in_silent_trial:
        messages.success(request, f"{version} now scores every new study silently.")
    else:
        messages.success(request, f"{version}'s silent trial is stopped.")
    return redirect("model-versions")
