"""Celery tasks of the audit capability: thin wrappers over its verbs."""

from __future__ import annotations

from celery import shared_task

from . import drift


@shared_task(name="screening.drift_sweep", acks_late=True)
def drift_sweep_task() -> int:
    """Raise drift alerts even when no auditor opens the page (idempotent)."""
    return drift.sweep()
