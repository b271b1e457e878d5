"""Shared fixtures: users per role, an isolated media folder, API clients."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from mammo_portal.celery import app as celery_app
from screening.choices import Role

from .factories import UserFactory

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MAMMO_SHARED_DIR", REPO.parent / "shared"))

# A real Orthanc PACS (``orthanc_factory``) for the interop tests.
pytest_plugins = ["tests.orthanc", "tests.workers"]


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def identity_mode(settings):
    """Tests run in research mode (de-identification), whatever IDENTITY_MODE the machine
    sets; MAMMO_TEST_IDENTITY_MODE=clinical runs the intake suites in clinical mode too.
    Privacy tests pin research with ``research_mode`` whatever this says."""
    settings.IDENTITY_MODE = os.environ.get("MAMMO_TEST_IDENTITY_MODE", "research")
    return settings.IDENTITY_MODE


@pytest.fixture
def research_mode(settings, identity_mode):
    """Pins research mode: every privacy test runs de-identifying."""
    settings.IDENTITY_MODE = "research"


@pytest.fixture(autouse=True)
def fresh_cache():
    """Cached figures from one test must never answer another."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def radiologist(db):
    return UserFactory(role=Role.RADIOLOGIST, username="rad1")


@pytest.fixture
def radiologist2(db):
    return UserFactory(role=Role.RADIOLOGIST, username="rad2")


@pytest.fixture
def admin_user(db):
    return UserFactory(role=Role.ADMIN, username="admin1")


@pytest.fixture
def auditor(db):
    return UserFactory(role=Role.AUDITOR, username="aud1")


@pytest.fixture
def roleless(db):
    return UserFactory(role=None, username="nobody")


@pytest.fixture
def api():
    return APIClient()


def login(client, user):
    client.force_login(user)
    return client


def requires_postgres():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (row locks, concurrent transactions); set DATABASE_URL")


@pytest.fixture
def role_groups(db):
    return {g.name: g for g in Group.objects.filter(name__in=Role.values)}


@pytest.fixture
def point_app_at(monkeypatch) -> Iterator[Callable[[str, dict], None]]:
    """Make this test process publish to the worker's broker, and restore the app after.

    Celery reads ``CELERY_BROKER_URL`` from the environment before its own settings, so the
    variable (set by CI for the machine's Redis) is replaced too.
    """
    saved = (celery_app.conf.broker_url, celery_app.conf.broker_transport_options)

    def point(broker_url: str, options: dict) -> None:
        monkeypatch.setenv("CELERY_BROKER_URL", broker_url)
        celery_app.conf.broker_url = broker_url
        celery_app.conf.broker_transport_options = options
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    yield point
    celery_app.conf.broker_url, celery_app.conf.broker_transport_options = saved
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
