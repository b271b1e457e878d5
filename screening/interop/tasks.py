"""Celery tasks of the interop capability: thin wrappers over its verbs, taking primary keys."""

from __future__ import annotations

from celery import shared_task

from . import actions, pacs_delivery


@shared_task(name=pacs_delivery.DELIVER_TASK, acks_late=True)
def deliver_to_pacs_task(delivery_id: int) -> str:
    """One attempt; a failure is retried by the sweep once the row's backoff is over (the
    row, not the message, holds the schedule, so a lost message loses nothing)."""
    return actions.deliver(delivery_id)


@shared_task(name="screening.pacs_sweep", acks_late=True)
def pacs_sweep_task() -> int:
    return actions.send_due_deliveries()
