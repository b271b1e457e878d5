"""The admins' view of the AI queue: waiting, running, failed, throughput, workers."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.contrib import messages
from django.db.models import Avg, Count, FloatField, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from ... import errors
from ...choices import AIStatus, Role
from ...models import AIResult, ModelVersion
from ...roles import AuthenticatedHttpRequest, role_required
from .. import actions as ai_actions
from .. import workers

log = logging.getLogger(__name__)


@require_GET
@role_required(Role.ADMIN)
def queue(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    per_image = AIResult.for_images.all()
    counts = per_image.aggregate(
        **{status: Count("pk", filter=Q(status=status)) for status in AIStatus.values},
        last_hour=Count(
            "pk", filter=Q(status=AIStatus.DONE, finished_at__gte=now - timedelta(hours=1))
        ),
        last_5_min=Count(
            "pk", filter=Q(status=AIStatus.DONE, finished_at__gte=now - timedelta(minutes=5))
        ),
    )
    versions = ModelVersion.objects.annotate(
        **{
            status: Count(
                "results",
                filter=Q(results__status=status) & AIResult.for_images.condition("results__"),
            )
            for status in AIStatus.values
        }
    ).order_by("-is_active", "-created_at")
    recent = per_image.filter(status=AIStatus.DONE, finished_at__gte=now - timedelta(hours=1))
    context = {
        "counts": counts,
        "versions": versions,
        "oldest_waiting": per_image.filter(status=AIStatus.QUEUED).order_by("queued_at").first(),
        "failed": per_image.filter(status=AIStatus.FAILED)
        .select_related("model_version")
        .order_by("-finished_at")[:50],
        "seconds_per_image": recent.aggregate(avg=Avg(Cast(KT("timings__predict"), FloatField())))[
            "avg"
        ],
        "workers": workers.alive(),
    }
    return render(request, "screening/queue.html", context)


@require_POST
@role_required(Role.ADMIN)
def retry(request: AuthenticatedHttpRequest, result_id: int) -> HttpResponse:
    try:
        ai_actions.retry_ai_result(request.user, result_id)
    except errors.DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"AI result {result_id} queued again.")
    return redirect("ai-queue")
