"""Celery tasks: thin wrappers taking primary keys, over ``screening.ai.inference``."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from ..errors import StorageFull
from . import (
    heartbeat,  # noqa: F401  (connects the worker's heartbeat to its signals)
    inference,
    workers,
)

# A full disk is transient too: the job is retried (with backoff) once space is freed.
TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError, StorageFull)


@shared_task(
    bind=True,
    name=inference.SCORE_STUDY_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def score_study_task(self, study_id: int, model_version_id: int) -> dict:
    outcome = inference.score_study(study_id, model_version_id, task_id=self.request.id or "")
    return outcome.__dict__


@shared_task(
    name="screening.rescore_open_cases",
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=5,
    max_retries=5,
)
def rescore_open_cases_task(model_version_id: int) -> int:
    return inference.rescore_open_cases(model_version_id)


@shared_task(name="screening.sweep", acks_late=True)
def sweep_task() -> int:
    # The broker is read before the sweep reads the rows: a message it held then and a
    # worker took since is never mistaken for one it lost.
    queue = settings.CELERY_TASK_ROUTES[inference.SCORE_STUDY_TASK]["queue"]
    in_broker = workers.queued_jobs(inference.SCORE_STUDY_TASK, queue)
    asked_at = timezone.now()
    return inference.sweep(
        running=workers.running_task_ids(), asked_at=asked_at, in_broker=in_broker
    )
