"""/healthz and /readyz: no login, no data; readiness names the check that failed to whoever
presents the operations token (``METRICS_TOKEN``), and only ready or not to anyone else."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import time

import pytest
from django.db import OperationalError
from django.urls import reverse

from screening.ops import health
from tests.factories import ModelVersionFactory

CHECKS = {"database", "broker", "storage", "inference_workers", "model_artifact"}
TOKEN = "a-long-operations-token"


@pytest.fixture(autouse=True)
def ops_token(settings):
    settings.METRICS_TOKEN = TOKEN


@pytest.fixture
def filesystem_broker(point_app_at, tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    point_app_at("filesystem://", {"data_folder_in": str(folder), "data_folder_out": str(folder)})
    return folder


def artifact(folder, model: bytes = b"weights") -> str:
    """A model folder as ml.artifacts writes it (manifest naming the file's sha256)."""
    folder.mkdir()
    (folder / "model.keras").write_bytes(model)
    sha256 = hashlib.sha256(model).hexdigest()
    manifest = {
        "architecture": "custom_cnn",
        "version": "ops-test",
        "target": "abnormal",
        "input_size": 299,
        "threshold": 0.5,
        "metrics": {},
        "sha256": sha256,
        "preprocessing": {},
        "training_data": {},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return sha256


@pytest.fixture
def active_artifact(db, tmp_path):
    folder = tmp_path / "model"
    checksum = artifact(folder)
    return ModelVersionFactory(artifact_path=str(folder), checksum=checksum, is_active=True)


@pytest.fixture
def ready(filesystem_broker, active_artifact):
    """Everything a readiness probe asks for is in place."""
    return active_artifact


def readyz(client, query: str = ""):
    response = client.get(reverse("readyz") + query, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return response, response.json()


def assert_only_failing(body: dict, *failing: str) -> None:
    assert {n for n, c in body["checks"].items() if c["status"] == "failed"} == set(failing)


def test_healthz_answers_ok_without_touching_the_database(client):
    """No db fixture: pytest-django refuses any query, so one would fail this test."""
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_probes_answer_an_address_that_sign_ins_have_locked_out(client, settings, db):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(3):
        client.post(reverse("login"), {"username": "a", "password": "x"}, REMOTE_ADDR="10.0.0.5")
    assert (
        client.post(
            reverse("login"), {"username": "a", "password": "b"}, REMOTE_ADDR="10.0.0.5"
        ).status_code
        == 429
    )
    assert client.get(reverse("healthz"), REMOTE_ADDR="10.0.0.5").status_code == 200
    assert client.get(reverse("readyz"), REMOTE_ADDR="10.0.0.5").status_code in (200, 503)


def test_readyz_is_200_when_every_check_passes(client, ready):
    response, body = readyz(client)
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    assert_only_failing(body)


def test_on_the_filesystem_broker_workers_are_not_checkable_but_not_failed(client, ready):
    _, body = readyz(client)
    assert body["checks"]["inference_workers"] == {
        "status": "ok",
        "note": "not checkable on this broker (no broadcast)",
    }


def test_a_database_that_does_not_answer_fails_readiness(client, ready, monkeypatch):
    class Down:
        def cursor(self):
            raise OperationalError("connection to server at db:5432 failed")

    monkeypatch.setattr(health, "connection", Down())
    response, body = readyz(client)
    assert response.status_code == 503
    assert body["checks"]["database"] == {
        "status": "failed",
        "reason": "the database did not answer (OperationalError)",
    }
    assert body["checks"]["model_artifact"]["reason"] == "not checked: database failed"


def test_a_broker_on_a_closed_port_fails_readiness_quickly(client, ready, point_app_at):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    point_app_at(f"redis://127.0.0.1:{port}/0", {})
    start = time.monotonic()
    response, body = readyz(client)
    assert time.monotonic() - start < 5
    assert response.status_code == 503
    assert_only_failing(body, "broker", "inference_workers")
    assert body["checks"]["inference_workers"]["reason"] == "not checked: broker failed"


def test_a_broker_folder_that_cannot_be_written_fails_readiness(
    client, ready, point_app_at, tmp_path
):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    point_app_at("filesystem://", {"data_folder_in": str(blocker / "queue")})
    response, body = readyz(client)
    assert response.status_code == 503
    assert_only_failing(body, "broker", "inference_workers")


def test_media_storage_that_cannot_be_written_fails_readiness(client, ready, settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be made under a file, even by root
    settings.MEDIA_ROOT = blocker / "media"
    response, body = readyz(client)
    assert response.status_code == 503
    assert_only_failing(body, "storage")
    assert body["checks"]["storage"]["reason"].startswith("media storage is not writable")


def test_the_storage_check_leaves_no_file_behind(client, ready, settings):
    readyz(client)
    assert list(settings.MEDIA_ROOT.iterdir()) == []


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")
def test_redis_without_a_worker_answering_fails_readiness(
    client, active_artifact, point_app_at, tmp_path
):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) and time.monotonic() < deadline:
            time.sleep(0.05)
        point_app_at(f"redis://127.0.0.1:{port}/0", {})
        response, body = readyz(client)
    finally:
        server.terminate()
        server.wait(10)
    assert response.status_code == 503
    assert_only_failing(body, "inference_workers")
    assert body["checks"]["inference_workers"]["reason"] == "no worker answered a ping"


def test_no_active_model_fails_readiness(client, filesystem_broker, db):
    ModelVersionFactory(is_active=False)
    response, body = readyz(client)
    assert response.status_code == 503
    assert body["checks"]["model_artifact"]["reason"] == "no model version is active"


def test_a_missing_artifact_fails_readiness(client, ready, tmp_path):
    shutil.rmtree(tmp_path / "model")
    response, body = readyz(client)
    assert response.status_code == 503
    assert_only_failing(body, "model_artifact")
    assert body["checks"]["model_artifact"]["reason"] == (
        "the active model's artifact folder is missing"
    )


def test_an_artifact_that_is_not_the_registered_one_fails_readiness(client, ready):
    ready.checksum = "0" * 64
    ready.save()
    response, body = readyz(client)
    assert response.status_code == 503
    assert "does not match the registered checksum" in body["checks"]["model_artifact"]["reason"]


def test_a_missing_model_file_fails_readiness(client, ready, tmp_path):
    (tmp_path / "model" / "model.keras").unlink()
    response, body = readyz(client)
    assert response.status_code == 503
    assert body["checks"]["model_artifact"]["reason"] == (
        "the active model's file is not readable (FileNotFoundError)"
    )


def test_readiness_answers_name_no_path_host_or_id(client, ready, settings, tmp_path, point_app_at):
    (tmp_path / "model" / "model.keras").unlink()
    (tmp_path / "a-file").write_text("")
    settings.MEDIA_ROOT = tmp_path / "a-file" / "media"
    point_app_at("redis://127.0.0.1:1/0", {})
    response, _ = readyz(client)
    assert response.status_code == 503
    assert not re.search(r"[/\\\d]|127|redis", response.content.decode())


def test_readyz_runs_only_the_checks_asked_for(client, ready, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "model" / "model.keras" / "media"  # storage would fail
    response, body = readyz(client, "?check=database&check=model_artifact")
    assert response.status_code == 200
    assert set(body["checks"]) == {"database", "model_artifact"}


def test_readyz_refuses_an_unknown_check(client, ready):
    response = client.get(reverse("readyz"), {"check": "everything"})
    assert response.status_code == 400


def test_without_the_token_readiness_says_only_ready_or_not(client, ready, settings, tmp_path):
    """A probe needs the status code; which part failed, and why, is for the operator."""
    assert client.get(reverse("readyz")).json() == {"status": "ok"}
    shutil.rmtree(tmp_path / "model")
    for credentials in ({}, {"HTTP_AUTHORIZATION": "Bearer a-guess"}, {"REMOTE_ADDR": "::1"}):
        response = client.get(reverse("readyz"), **credentials)
        assert response.status_code == 503
        assert response.json() == {"status": "failed"}


def test_without_a_configured_token_nobody_sees_the_checks(client, ready, settings):
    settings.METRICS_TOKEN = None
    for header in ("Bearer ", "Bearer None", ""):
        response = client.get(reverse("readyz"), HTTP_AUTHORIZATION=header)
        assert response.json() == {"status": "ok"}
