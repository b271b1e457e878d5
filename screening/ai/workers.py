"""What the Celery workers say about themselves: their heartbeat rows, and what they
answer over the broker's control channel.

The queue page counts fresh heartbeats (every broker has them); the sweep uses the answers as heartbeats: a running
result whose job no live worker holds belonged to a worker that is gone.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from ..models import WorkerHeartbeat

log = logging.getLogger(__name__)


def alive() -> list[str]:
    """Names of workers whose heartbeat is fresh (seen within two intervals), any broker."""
    since = timezone.now() - timedelta(seconds=2 * settings.AI_WORKER_HEARTBEAT_SECONDS)
    names = WorkerHeartbeat.objects.filter(seen_at__gte=since).values_list("name", flat=True)
    return sorted(names)


def online(timeout: float = 0.5) -> list[str] | None:
    """Names of workers answering a ping; None when the broker cannot broadcast."""
    from mammo_portal.celery import app

    if filesystem_broker():
        return None
    try:
        replies = app.control.inspect(timeout=timeout).ping() or {}
    except Exception:  # a broker that is down
        log.info("Worker ping unavailable: the broker did not answer")
        return None
    return sorted(replies)


def running_task_ids(timeout: float | None = None) -> set[str] | None:
    """The ids of the jobs live workers are running now (every worker that answered).

    None when nobody can be asked (a broker without broadcast, or one that is down): the
    caller then cannot tell a dead worker from a silent one and must not act on it.
    """
    from mammo_portal.celery import app

    if filesystem_broker():
        return None
    try:
        replies = app.control.inspect(timeout=timeout or settings.AI_WORKER_REPLY_SECONDS).active()
    except Exception:
        log.info("Worker heartbeat unavailable: the broker did not answer")
        return None
    return {task["id"] for tasks in (replies or {}).values() for task in tasks}


def queued_jobs(task_name: str, queue: str) -> set[tuple[Any, ...]] | None:
    """The arguments of every ``task_name`` message the broker holds now: waiting in
    ``queue`` or handed to a worker and not yet acknowledged.

    A Redis without persistence that restarts forgets its messages, while the rows they
    were to score stay queued with a dispatch time: the sweep compares the two and sends
    again what the broker lost. None when the broker cannot be read (it is down, or it is
    not Redis): the caller then knows nothing and must not act.
    """
    from mammo_portal.celery import app

    if filesystem_broker():
        return None
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=0, timeout=settings.AI_WORKER_REPLY_SECONDS)
            if conn.transport.driver_type != "redis":
                return None
            channel = conn.default_channel
            client = channel.client
            keys = {channel._q_for_pri(queue, step) for step in channel.priority_steps}
            waiting = [raw for key in keys for raw in client.lrange(key, 0, -1)]
            delivered = [json.loads(raw)[0] for raw in client.hvals(channel.unacked_key)]
    except Exception:
        log.info("Broker queue unavailable: lost messages are not looked for this time")
        return None
    messages = [json.loads(raw) for raw in waiting] + delivered
    return {args for m in messages if (args := _task_args(m, task_name)) is not None}


def _task_args(message: dict[str, Any], task_name: str) -> tuple[Any, ...] | None:
    """A Celery (protocol 2) message's positional arguments, if it is a ``task_name`` job."""
    if (message.get("headers") or {}).get("task") != task_name:
        return None
    try:
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        return tuple(json.loads(body)[0])
    except (KeyError, ValueError, TypeError, IndexError):
        return None


def filesystem_broker() -> bool:
    """The embedded default broker: a folder, with no broadcast exchange to ask workers on."""
    from mammo_portal.celery import app

    return str(app.conf.broker_url or "").startswith("filesystem")
