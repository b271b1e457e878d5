"""Log lines: JSON with the request or task id, and never a path, query string or name."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import reverse

from screening.ai.tasks import rescore_open_cases_task
from screening.ops.logs import JsonFormatter, PlainFormatter
from tests.factories import ModelVersionFactory

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the production handler writes, caught: formatted as each line is logged."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_a_request_log_line_is_json_with_the_id_its_response_carries(
    client, radiologist, json_lines
):
    client.force_login(radiologist)
    response = client.get(reverse("worklist"))
    access = [line for line in lines(json_lines) if line["logger"] == "screening.request"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == response["X-Request-ID"]
    assert {"time", "level", "logger", "message"} <= set(line)
    assert line["view"] == "worklist"
    assert line["status"] == 200
    assert line["user_id"] == radiologist.pk


def test_a_sane_incoming_request_id_is_kept(client, db, json_lines):
    response = client.get(reverse("login"), HTTP_X_REQUEST_ID="lb-1234abcd-5678")
    assert response["X-Request-ID"] == "lb-1234abcd-5678"
    assert lines(json_lines)[-1]["request_id"] == "lb-1234abcd-5678"


@pytest.mark.parametrize("header", ["short", "has space and <script>", "x" * 200, "new\nline-id"])
def test_an_odd_incoming_request_id_is_replaced(client, db, header):
    response = client.get(reverse("login"), HTTP_X_REQUEST_ID=header)
    assert response["X-Request-ID"] != header
    assert len(response["X-Request-ID"]) == 32


def test_django_request_lines_name_neither_path_nor_query_string(client, radiologist, json_lines):
    client.force_login(radiologist)
    response = client.get("/cases/987654/?accession=ACC123")
    assert response.status_code == 404
    text = json_lines.getvalue()
    assert "ACC123" not in text
    assert "/cases/" not in text
    not_found = [line for line in lines(json_lines) if line["logger"] == "django.request"]
    assert not_found[0]["message"] == "Not Found"
    assert not_found[0]["request_id"] == response["X-Request-ID"]


def test_only_database_ids_ride_along_from_extra(json_lines):
    logging.getLogger("screening.x").warning(
        "Stored", extra={"case_id": 7, "accession": "ACC123", "patient_id": "P-NAME"}
    )
    line = lines(json_lines)[-1]
    assert line["case_id"] == 7
    assert "accession" not in line
    assert "patient_id" not in line


def test_worker_lines_carry_the_task_id_and_its_primary_keys(db, json_lines):
    version = ModelVersionFactory()
    rescore_open_cases_task.apply(args=[version.pk], task_id="task-abc-123")
    line = next(li for li in lines(json_lines) if li["logger"] == "screening.ai.inference")
    assert line["task_id"] == "task-abc-123"
    assert line["task"] == "screening.rescore_open_cases"
    assert line["task_args"] == [version.pk]
    assert "request_id" not in line


def test_plain_lines_carry_the_request_id_too(client, db):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PlainFormatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger("screening.request").addHandler(handler)
    try:
        response = client.get(reverse("login"))
    finally:
        logging.getLogger("screening.request").removeHandler(handler)
    assert stream.getvalue().strip() == (
        f"INFO screening.request GET login 200 [request_id={response['X-Request-ID']}]"
    )


def test_production_settings_log_json_lines(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DEBUG", "LOG_FORMAT"}},
        "DEBUG": "0",
        "SECRET_KEY": "x" * 60,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "mammo_portal.settings",
    }
    code = "import django, logging; django.setup(); logging.getLogger('screening').warning('hi')"
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    line = json.loads(child.stderr.strip().splitlines()[-1])
    assert line["message"] == "hi"
    assert line["level"] == "WARNING"
