"""Endpoints for orchestrators and scrapers: no login, no session, no patient data.

Which check failed and why, and every figure, are for the operations token (``token.py``).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from . import health, metrics
from .token import presents_ops_token

log = logging.getLogger(__name__)


@login_not_required
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers: touches nothing else, so a restart is never caused by a peer."""
    return JsonResponse({"status": "ok"})


@login_not_required
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Every check, or those named by ``?check=`` (a load balancer may want only its own);
    the checks' answers only to the operations token, the status code to anyone."""
    names = request.GET.getlist("check") or list(health.CHECKS)
    if set(names) - set(health.CHECKS):
        return JsonResponse({"error": f"checks are {', '.join(health.CHECKS)}"}, status=400)
    results = health.run(names)
    ready = all(result.ok for result in results.values())
    if not ready:
        failed = {name: r.reason for name, r in results.items() if not r.ok}
        log.warning("Not ready: %s", "; ".join(f"{n}: {r}" for n, r in failed.items()))
    body: dict[str, object] = {"status": "ok" if ready else "failed"}
    if presents_ops_token(request):
        body["checks"] = {name: result.as_dict() for name, result in results.items()}
    return JsonResponse(body, status=200 if ready else 503)


@login_not_required
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not presents_ops_token(request):
        return HttpResponse(
            "Forbidden: scrape with Authorization: Bearer <METRICS_TOKEN>.\n",
            status=403,
            content_type="text/plain",
        )
    body, content_type = metrics.exposition(request.headers.get("Accept"))
    return HttpResponse(body, content_type=content_type)


FAVICON = settings.BASE_DIR / "static" / "favicon.ico"


@login_not_required
@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """The small icon browsers ask for at ``/favicon.ico`` on every page (a 404 otherwise,
    logged each time)."""
    response = HttpResponse(FAVICON.read_bytes(), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response
