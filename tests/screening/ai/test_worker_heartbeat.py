"""A real Celery worker on the embedded filesystem broker (which cannot relay a ping)
writes a heartbeat, and the AI queue page counts it: one worker online while it runs, none
once its heartbeat has expired after it died, none at once after a clean stop."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from django.urls import reverse

from screening.models import WorkerHeartbeat
from tests.conftest import login
from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
BEAT_SECONDS = 1


@pytest.fixture
def filesystem_worker(tmp_path, settings, point_app_at):
    settings.AI_WORKER_HEARTBEAT_SECONDS = BEAT_SECONDS
    folder = tmp_path / "broker"
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True)
    point_app_at("filesystem://", {"data_folder_in": str(folder / "queue")})

    def start(name: str) -> Worker:
        env = {"CELERY_BROKER_DIR": str(folder), "AI_WORKER_HEARTBEAT_SECONDS": str(BEAT_SECONDS)}
        return Worker("filesystem://", tmp_path, tmp_path / f"{name}.log", env)

    return start


def workers_online(client) -> str:
    page = client.get(reverse("ai-queue")).content.decode()
    stat = re.search(r'id="workers-online">(.*?)<small>', page, re.S)
    assert stat, page
    return " ".join(re.sub(r"<[^>]+>", " ", stat.group(1)).split())


def test_a_live_worker_is_counted_and_a_dead_one_expires(filesystem_worker, client, admin_user):
    login(client, admin_user)
    assert workers_online(client) == "0 workers online"
    worker = filesystem_worker("beating")
    try:
        wait_for(lambda: workers_online(client) == "1 worker online", 30, "the first heartbeat")
        seen = WorkerHeartbeat.objects.get().seen_at
        wait_for(lambda: WorkerHeartbeat.objects.get().seen_at > seen, 10, "a second heartbeat")
    finally:
        worker.kill_all()  # no shutdown signal: the row stays and must expire by itself
    died = time.monotonic()
    wait_for(lambda: workers_online(client) == "0 workers online", 10, "the heartbeat to expire")
    assert time.monotonic() - died <= 2 * BEAT_SECONDS + 2
    assert WorkerHeartbeat.objects.count() == 1  # gone from the page by age, not by deletion


def test_a_worker_stopped_cleanly_leaves_at_once(filesystem_worker, client, admin_user):
    login(client, admin_user)
    worker = filesystem_worker("leaving")
    wait_for(lambda: workers_online(client) == "1 worker online", 30, "the first heartbeat")
    worker.stop()
    assert WorkerHeartbeat.objects.count() == 0, Path(worker.log).read_text()[-2000:]
    assert workers_online(client) == "0 workers online"
