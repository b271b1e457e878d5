"""Faults answer clearly: a database that does not answer is a 503 that says nothing was
lost (JSON with Retry-After for the API, a page in the site's style for people).

The database is really unreachable: the request's connection points at a port nothing
listens on, so the session, token and view queries fail as they do in an outage.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus

from django.db import connections
from django.db.utils import load_backend
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

NOTHING_LOST = "Nothing you saved has been lost"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # released on close: nothing listens there


@contextmanager
def database_down() -> Iterator[None]:
    """This thread's default connection goes to a PostgreSQL port that nobody answers."""
    working = connections["default"]
    down = {
        **working.settings_dict,
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "mammo_unreachable",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": str(closed_port()),
        "OPTIONS": {"connect_timeout": 2},
        "CONN_MAX_AGE": 0,
    }
    connections["default"] = load_backend(down["ENGINE"]).DatabaseWrapper(down, "default")
    try:
        yield
    finally:
        connections["default"].close()
        connections["default"] = working


def test_a_page_answers_a_styled_503_that_says_nothing_was_lost(radiologist):  # type: ignore[no-untyped-def]
    client = Client(raise_request_exception=False)
    client.force_login(radiologist)  # while the database still answers
    with database_down():
        response = client.get("/worklist/")
    body = response.content.decode()
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) > 0
    assert NOTHING_LOST in body
    assert "css/app.css" in body and 'class="topbar"' in body  # the site's style
    assert "Server Error" not in body


def test_the_api_answers_json_503_with_retry_after(db):  # type: ignore[no-untyped-def]
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    with database_down():
        response = api.get("/api/cases/")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response["Content-Type"].startswith("application/json")
    assert int(response["Retry-After"]) > 0
    assert NOTHING_LOST in response.json()["detail"]
    assert response.json()["code"] == "database_unavailable"


def test_an_api_write_answers_json_503_too(admin_user):  # type: ignore[no-untyped-def]
    api = APIClient(raise_request_exception=False)
    api.force_login(admin_user)
    with database_down():
        response = api.post("/api/outcomes/", {"accession_number": "A-1"}, format="json")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "database_unavailable"


def test_a_token_request_answers_json_503(radiologist):  # type: ignore[no-untyped-def]
    key = Token.objects.create(user=radiologist).key
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/cases/").status_code == HTTPStatus.OK  # the same request, database up
    with database_down():
        response = api.get("/api/cases/")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "database_unavailable"
