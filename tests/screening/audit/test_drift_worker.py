"""The beat sweep raises drift alerts in a real Celery worker, once, however often it runs."""

from __future__ import annotations

import os
import re

import pytest

from screening.choices import AuditAction
from screening.models import AuditEvent, DriftAlert
from tests.conftest import requires_postgres
from tests.screening.audit.test_drift import shifted_and_steady, version  # noqa: F401
from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
SWEPT = re.compile(rb"Task screening\.drift_sweep\[[^\]]+\] succeeded")


def test_the_beat_sweep_writes_each_alert_once(tmp_path, version):  # noqa: F811
    requires_postgres()  # the worker process must see the test's database
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        pytest.skip("needs a Redis broker for the worker; set CELERY_BROKER_URL=redis://…")
    shifted_and_steady(version)
    worker = Worker(
        broker,
        tmp_path,
        tmp_path / "worker.log",
        {"DRIFT_SWEEP_SECONDS": "1", "AI_SWEEP_SECONDS": "3600"},
        queues="default",
        beat_schedule=tmp_path / "beat-schedule",
    )
    try:
        wait_for(lambda: DriftAlert.objects.count() == 3, 90, "the sweep to raise the alerts")
        swept = lambda: len(SWEPT.findall(worker.log.read_bytes()))  # noqa: E731
        wait_for(lambda: swept() >= 3, 60, "two more sweeps")
    finally:
        worker.stop()
    assert DriftAlert.objects.count() == 3
    assert AuditEvent.objects.filter(action=AuditAction.DRIFT_ALERT).count() == 3
