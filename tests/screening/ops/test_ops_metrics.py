"""/metrics: Prometheus text from the database and the request histogram, for scrapers only."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from screening.choices import AIStatus, CaseStatus
from screening.models import AIResult
from tests.factories import CaseFactory, ModelVersionFactory, case_with_images

REPO = Path(__file__).resolve().parents[3]
TOKEN = "a-long-scrape-token"


@pytest.fixture(autouse=True)
def scrape_token(settings):
    settings.METRICS_TOKEN = TOKEN


def scrape(client, **extra) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **extra)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def version(db):
    return ModelVersionFactory(architecture="custom_cnn", version="9.9")


def results(version, status: str, count: int, **fields) -> list[AIResult]:
    """``count`` image results in ``status``, then ``fields`` written as stored (auto times too)."""
    case = case_with_images(images=count)
    made = [
        AIResult.objects.create(image=image, case=case, model_version=version, status=status)
        for image in case.studies.get().images.all()
    ]
    AIResult.objects.filter(pk__in=[r.pk for r in made]).update(**fields)
    return made


def test_metrics_answer_in_prometheus_text_with_every_family(client, db):
    client.get(reverse("healthz"))
    names = {name for name, _ in scrape(client)}
    for expected in (
        "mammo_http_request_duration_seconds_bucket",
        "mammo_database_up",
        "mammo_ai_queue_depth",
        "mammo_ai_queue_oldest_seconds",
        "mammo_ai_failed_results",
        "mammo_ai_failed_last_hour",
        "mammo_cases_open",
        "mammo_cases_open_oldest_seconds",
    ):
        assert expected in names


def test_queue_depth_and_oldest_age_come_from_the_results(client, version):
    now = timezone.now()
    results(version, AIStatus.QUEUED, 2, queued_at=now - timedelta(minutes=10))
    results(version, AIStatus.RUNNING, 1, started_at=now - timedelta(minutes=3))
    results(version, AIStatus.DONE, 1)
    samples = scrape(client)
    depth = "mammo_ai_queue_depth"
    assert value(samples, depth, queue="inference", status="queued") == 2
    assert value(samples, depth, queue="inference", status="running") == 1
    oldest = "mammo_ai_queue_oldest_seconds"
    assert 600 <= value(samples, oldest, queue="inference", status="queued") < 660
    assert 180 <= value(samples, oldest, queue="inference", status="running") < 240


def test_stage_durations_are_those_of_the_last_hour_per_model_version(client, version):
    now = timezone.now()
    for predict in (0.2, 0.4, 1.0):
        results(
            version,
            AIStatus.DONE,
            1,
            timings={"decode": 0.1, "predict": predict, "patches": 25},
            started_at=now - timedelta(seconds=3),
            finished_at=now,
        )
    results(
        version, AIStatus.DONE, 1, timings={"predict": 50.0}, finished_at=now - timedelta(hours=2)
    )
    samples = scrape(client)
    stage = "mammo_ai_stage_seconds_last_hour"
    label = "custom_cnn:9.9"
    assert value(samples, stage, stage="predict", model_version=label, quantile="1.0") == 1.0
    assert value(samples, stage, stage="predict", model_version=label, quantile="0.5") == 0.4
    assert value(samples, stage, stage="job", model_version=label, quantile="0.5") == 3.0
    assert not any(dict(labels).get("stage") == "patches" for _, labels in samples)
    finished = "mammo_ai_results_finished_last_hour"
    assert value(samples, finished, model_version=label, status="done") == 3


def test_failures_are_counted_by_reason(client, version):
    now = timezone.now()
    for error in (
        "Model artifact unusable: no manifest",
        "The stored image file is missing.",
        "The stored image file is missing.",
        "Gave up after 3 attempts: the worker stopped each time.",
        "Something nobody foresaw",
    ):
        results(version, AIStatus.FAILED, 1, error=error, finished_at=now)
    results(
        version,
        AIStatus.FAILED,
        1,
        error="Inference error: X",
        finished_at=now - timedelta(hours=3),
    )
    samples = scrape(client)
    failed = "mammo_ai_failed_results"
    assert value(samples, failed, reason="artifact") == 1
    assert value(samples, failed, reason="image_missing") == 2
    assert value(samples, failed, reason="gave_up") == 1
    assert value(samples, failed, reason="other") == 1
    assert value(samples, failed, reason="inference_error") == 1
    assert value(samples, "mammo_ai_failed_last_hour", reason="inference_error") == 0
    assert value(samples, "mammo_ai_failed_last_hour", reason="image_missing") == 2


def test_open_cases_are_counted_by_status(client, db):
    for status in (CaseStatus.READY, CaseStatus.READY, CaseStatus.ARBITRATION, CaseStatus.CLOSED):
        CaseFactory(status=status)
    samples = scrape(client)
    assert value(samples, "mammo_cases_open", status="ready") == 2
    assert value(samples, "mammo_cases_open", status="arbitration") == 1
    assert value(samples, "mammo_cases_open", status="first_read_done") == 0
    assert not any(dict(labels).get("status") == "closed" for _, labels in samples)


def test_request_latency_is_labelled_by_view_name_never_by_path(client, radiologist):
    case = case_with_images(images=1)
    client.force_login(radiologist)
    client.get(reverse("case-detail", args=[case.pk]) + "?accession=ACC123")
    client.get("/no/such/page/")
    samples = scrape(client)
    count = "mammo_http_request_duration_seconds_count"
    assert value(samples, count, view="case-detail", method="GET", status="2xx") >= 1
    assert value(samples, count, view="unresolved", method="GET", status="4xx") >= 1
    labels = {v for _, pairs in samples for _, v in pairs}
    assert not any("/" in v or "ACC123" in v for v in labels)


def test_metrics_are_refused_without_the_token_even_from_loopback(client, db):
    """A reverse proxy on the same host makes every visitor arrive from loopback."""
    for address in ("127.0.0.1", "::1", "10.1.2.3"):
        response = client.get(reverse("metrics"), REMOTE_ADDR=address)
        assert response.status_code == 403
        assert b"mammo_" not in response.content


def test_metrics_are_refused_a_wrong_token(client, db):
    for header in ("Bearer guess", f"Bearer {TOKEN}x", f"Token {TOKEN}", TOKEN, "Bearer "):
        response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=header)
        assert response.status_code == 403, header


def test_metrics_answer_the_bearer_token_from_anywhere(client, db):
    response = client.get(
        reverse("metrics"), REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    assert response.status_code == 200


def test_without_a_configured_token_nobody_may_scrape(client, db, settings):
    settings.METRICS_TOKEN = None
    for header in ("", "Bearer ", "Bearer None"):
        response = client.get(
            reverse("metrics"), REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION=header
        )
        assert response.status_code == 403
    assert b"METRICS_TOKEN" in response.content


def test_the_token_is_read_from_a_file(tmp_path):
    secret = tmp_path / "metrics_token"
    secret.write_text("from-a-file-token\n")
    env = {
        **os.environ,
        "METRICS_TOKEN_FILE": str(secret),
        "DJANGO_SETTINGS_MODULE": "mammo_portal.settings",
        "DEBUG": "1",
    }
    code = "import django; django.setup(); from django.conf import settings; print(settings.METRICS_TOKEN)"
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, timeout=120, text=True
    )
    assert child.stdout.strip() == "from-a-file-token", child.stderr[-2000:]


CHILD = """
import django
django.setup()
from django.test import Client
assert Client().get("/healthz", HTTP_HOST="localhost").status_code == 200
"""


def test_in_multiprocess_mode_a_scrape_counts_every_process_requests(
    client, db, tmp_path, monkeypatch
):
    """Gunicorn's workers each answer some requests; whichever answers the scrape counts all."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "DJANGO_SETTINGS_MODULE": "mammo_portal.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
    }
    for _ in range(2):
        child = subprocess.run(
            [sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True, timeout=120
        )
        assert child.returncode == 0, child.stderr[-2000:]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    samples = scrape(client)
    count = "mammo_http_request_duration_seconds_count"
    assert value(samples, count, view="healthz", method="GET", status="2xx") == 2
    assert value(samples, "mammo_database_up") == 1
