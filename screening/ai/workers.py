"""What the Celery workers say about themselves, asked over the broker's control channel.

The queue page shows who answers; the sweep uses the answers as heartbeats: a running
result whose job no live worker holds belonged to a worker that is gone.
"""

from __future__ import annotations

import logging

from django.conf import settings

log = logging.getLogger(__name__)


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


def filesystem_broker() -> bool:
    """The embedded default broker: a folder, with no broadcast exchange to ask workers on."""
    from mammo_portal.celery import app

    return str(app.conf.broker_url or "").startswith("filesystem")
