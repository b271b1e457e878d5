"""Prometheus metrics: request latency per view, and the AI pipeline and reading backlog as
the database sees them.

Request latency is a histogram each web process keeps; with several processes (gunicorn)
set ``PROMETHEUS_MULTIPROC_DIR`` and every process writes its samples there, so whichever
process answers a scrape reports all of them. Queue, failure and backlog figures are read
from the database at scrape time (the source of truth), correct from any process.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any

import numpy as np
from django.db import DatabaseError
from django.db.models import Count, Min, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from ..choices import OUTSTANDING_DELIVERIES, READABLE_STATUSES, AIStatus, DeliveryStatus
from ..models import AIResult, Case, PacsDelivery
from .logs import method_of, view_name

REQUEST_SECONDS = Histogram(
    "mammo_http_request_duration_seconds",
    "Time to answer a request, by view (the URL pattern's name, never the path).",
    ["view", "method", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)
# The DICOM node is a process of its own: its counts reach /metrics through the shared
# PROMETHEUS_MULTIPROC_DIR (scripts/run and compose.yaml give web and node the same one).
DICOM_ASSOCIATIONS = Counter(
    "mammo_dicom_associations",
    "DICOM associations asked of the node, by outcome (accepted, rejected).",
    ["outcome"],
)
DICOM_REFUSALS = Counter(
    "mammo_dicom_association_refusals",
    "DICOM associations the node refused, by reason (choices.AssociationRefusal: not_allowed, "
    "called_ae, busy: at DICOM_NODE_MAX_ASSOCIATIONS).",
    ["reason"],
)
DICOM_INSTANCES = Counter(
    "mammo_dicom_instances",
    "Instances received by C-STORE, by outcome (received, refused).",
    ["outcome"],
)
DICOM_STUDIES = Counter(
    "mammo_dicom_studies",
    "Studies the node filed when an association ended, by outcome "
    "(stored, already_stored, refused, unfiled: kept on disk after a fault of ours).",
    ["outcome"],
)
PACS_SEND_ATTEMPTS = Counter(
    "mammo_pacs_send_attempts",
    "Attempts to send a closed case's result to a PACS, by destination and outcome "
    "(sent: acknowledged; failed: retried with backoff).",
    ["destination", "outcome"],
)
AI_QUEUE = "inference"  # every AIResult is a job of the inference queue
WINDOW = timedelta(hours=1)
QUANTILES = (0.5, 0.95, 1.0)
# Timings entries that are counts, not seconds.
NOT_SECONDS = frozenset({"batch_images", "patches"})
# A failed result's error text, by the words that say why (messages of screening.ai.inference
# and screening.intake's film checks); the first match names the reason.
FAILURE_REASONS = (
    ("artifact", ("model artifact", "registered checksum")),
    ("gave_up", ("gave up after",)),
    ("inference_error", ("inference error",)),
    ("image_missing", ("file is missing",)),
    ("image_undecodable", ("cannot be decoded", "truncated or corrupt")),
    ("image_too_small", ("too small to score",)),
    ("image_blank", ("blank", "grey levels")),
)


class RequestMetricsMiddleware:
    """Second in MIDDLEWARE: times everything but the request-id bookkeeping."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        status = f"{response.status_code // 100}xx"
        REQUEST_SECONDS.labels(view_name(request), method_of(request), status).observe(
            time.perf_counter() - start
        )
        return response


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The scrape's body and content type (text format, or OpenMetrics if asked for)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class _ThisProcess:
    """The default registry: this process's request histogram, process and GC figures."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class DatabaseCollector:
    """Read at every scrape; if the database does not answer, only ``mammo_database_up 0``."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mammo_database_up", "1 if the metrics queries answered.")
        try:
            families = [
                *_ai_queue(),
                *_ai_recent(),
                *_ai_failures(),
                *_cases_open(),
                *_pacs_deliveries(),
            ]
            up.add_metric([], 1)
        except DatabaseError:
            families = []
            up.add_metric([], 0)
        yield up
        yield from families


def _ai_queue() -> list[Metric]:
    now = timezone.now()
    depth = GaugeMetricFamily(
        "mammo_ai_queue_depth", "Image AI results waiting or running.", labels=["queue", "status"]
    )
    oldest = GaugeMetricFamily(
        "mammo_ai_queue_oldest_seconds",
        "Age of the oldest queued result (since queued) and running one (since claimed).",
        labels=["queue", "status"],
    )
    rows = AIResult.for_images.all()
    for status, since in ((AIStatus.QUEUED, "queued_at"), (AIStatus.RUNNING, "started_at")):
        figures = rows.filter(status=status).aggregate(n=Count("pk"), first=Min(since))
        age = (now - figures["first"]).total_seconds() if figures["first"] else 0.0
        depth.add_metric([AI_QUEUE, status], figures["n"])
        oldest.add_metric([AI_QUEUE, status], max(age, 0.0))
    return [depth, oldest]


def _ai_recent() -> list[Metric]:
    """Results finished in the last hour: how many, and how long each stage took."""
    since = timezone.now() - WINDOW
    recent = AIResult.for_images.filter(finished_at__gte=since)
    finished = GaugeMetricFamily(
        "mammo_ai_results_finished_last_hour",
        "Image AI results finished in the last hour, by model version and outcome.",
        labels=["model_version", "status"],
    )
    counts = recent.values_list(
        "model_version__architecture", "model_version__version", "status"
    ).annotate(n=Count("pk"))
    for arch, version, status, n in counts.order_by():
        finished.add_metric([f"{arch}:{version}", status], n)
    stages = GaugeMetricFamily(
        "mammo_ai_stage_seconds_last_hour",
        "Seconds per image per pipeline stage (job: claim to result), results of the last hour.",
        labels=["stage", "model_version", "quantile"],
    )
    for (stage, version), seconds in sorted(_stage_seconds(recent).items()):
        for q, value in zip(QUANTILES, np.quantile(seconds, QUANTILES), strict=True):
            stages.add_metric([stage, version, str(q)], float(value))
    return [finished, stages]


def _stage_seconds(recent: QuerySet[AIResult]) -> dict[tuple[str, str], list[float]]:
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    done = recent.filter(status=AIStatus.DONE).values_list(
        "model_version__architecture", "model_version__version", "timings", "started_at",
        "finished_at",
    )  # fmt: skip
    for arch, version, timings, started, finished in done.iterator():
        label = f"{arch}:{version}"
        for stage, value in (timings or {}).items():
            if stage not in NOT_SECONDS and isinstance(value, int | float):
                seconds[(stage, label)].append(float(value))
        if started and finished:
            seconds[("job", label)].append((finished - started).total_seconds())
    return seconds


def failure_reason(error: str) -> str:
    text = error.lower()
    for reason, words in FAILURE_REASONS:
        if any(word in text for word in words):
            return reason
    return "other"


def _ai_failures() -> list[Metric]:
    failed = AIResult.for_images.filter(status=AIStatus.FAILED)
    since = timezone.now() - WINDOW
    families: list[Metric] = []
    for name, rows, help_text in (
        ("mammo_ai_failed_results", failed, "Failed image AI results (until retried)."),
        (
            "mammo_ai_failed_last_hour",
            failed.filter(finished_at__gte=since),
            "Image AI results that failed in the last hour.",
        ),
    ):
        by_reason: dict[str, int] = dict.fromkeys([r for r, _ in FAILURE_REASONS] + ["other"], 0)
        for error, n in rows.values_list("error").annotate(n=Count("pk")).order_by():
            by_reason[failure_reason(error)] += n
        family = GaugeMetricFamily(name, help_text + " By reason.", labels=["reason"])
        for reason, n in by_reason.items():
            family.add_metric([reason], n)
        families.append(family)
    return families


def _cases_open() -> list[Metric]:
    now = timezone.now()
    open_cases = GaugeMetricFamily(
        "mammo_cases_open", "Open cases by status (awaiting AI, or a read).", labels=["status"]
    )
    oldest = GaugeMetricFamily(
        "mammo_cases_open_oldest_seconds",
        "Age of the oldest open case in each status, since it was received.",
        labels=["status"],
    )
    figures = {
        row["status"]: row
        for row in Case.objects.filter(status__in=READABLE_STATUSES)
        .values("status")
        .annotate(n=Count("pk"), first=Min("received_at"))
        .order_by()
    }
    for status in READABLE_STATUSES:
        row: Mapping[str, Any] = figures.get(status, {"n": 0, "first": None})
        open_cases.add_metric([status], row["n"])
        age = (now - row["first"]).total_seconds() if row["first"] else 0.0
        oldest.add_metric([status], max(age, 0.0))
    return [open_cases, oldest]


def _pacs_deliveries() -> list[Metric]:
    """Results on their way back to the PACS: how many in each state per destination, and
    how long the oldest not yet acknowledged has waited (an alert: the PACS is unreachable)."""
    deliveries = GaugeMetricFamily(
        "mammo_pacs_deliveries",
        "PACS deliveries (an object of a closed case to one destination) by status.",
        labels=["destination", "status"],
    )
    counts = PacsDelivery.objects.values_list("destination", "status").annotate(n=Count("pk"))
    seen = {(destination, status): n for destination, status, n in counts.order_by()}
    for destination in sorted({destination for destination, _ in seen}):
        for status in DeliveryStatus.values:
            deliveries.add_metric([destination, status], seen.get((destination, status), 0))
    oldest = GaugeMetricFamily(
        "mammo_pacs_delivery_oldest_outstanding_seconds",
        "Age of the oldest delivery not yet acknowledged by its PACS (0 when none).",
    )
    first = PacsDelivery.objects.filter(status__in=OUTSTANDING_DELIVERIES).aggregate(
        first=Min("created_at")
    )["first"]
    oldest.add_metric([], max((timezone.now() - first).total_seconds(), 0.0) if first else 0.0)
    return [deliveries, oldest]
