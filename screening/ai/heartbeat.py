"""The worker's heartbeat: a row it touches every few seconds while it runs.

Started by the worker's own ready signal in its main process, so it beats with any broker
(the filesystem broker cannot relay a ping) and without beat; a clean shutdown removes the
row at once, a killed worker's row simply stops being fresh.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from ..models import WorkerHeartbeat

log = logging.getLogger(__name__)


class Heartbeat:
    """Touches this worker's row every ``AI_WORKER_HEARTBEAT_SECONDS`` on its own thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started_at = timezone.now()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def beat(self) -> None:
        WorkerHeartbeat.objects.update_or_create(
            name=self.name,
            defaults={"seen_at": timezone.now(), "started_at": self.started_at},
        )

    def run(self) -> None:
        while not self.stopped.is_set():
            close_old_connections()
            try:
                self.beat()
            except DatabaseError:  # the database is away: the next beat tries again
                log.warning("Worker heartbeat not written: the database did not answer")
                connection.close()
            self.stopped.wait(settings.AI_WORKER_HEARTBEAT_SECONDS)
        connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(settings.AI_WORKER_HEARTBEAT_SECONDS)
        try:
            WorkerHeartbeat.objects.filter(name=self.name).delete()
        except DatabaseError:
            log.warning("Worker heartbeat not removed: it expires on its own")


_running: dict[str, Heartbeat] = {}


@worker_ready.connect
def start_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    heartbeat = Heartbeat(str(getattr(sender, "hostname", None) or "worker"))
    _running[heartbeat.name] = heartbeat
    heartbeat.start()


@worker_shutdown.connect
def stop_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    while _running:
        _running.popitem()[1].stop()
