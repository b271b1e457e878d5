"""scripts/run on a fresh PostgreSQL server: the database it names is created, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import requires_postgres

REPO = Path(__file__).resolve().parents[3]


def run_command(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "1"}
    return subprocess.run(
        [sys.executable, "manage.py", "database_ready"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def server_url(name: str) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"


@pytest.mark.django_db
def test_a_database_that_does_not_exist_is_created_once() -> None:
    requires_postgres()
    name = f"mammo_ready_{uuid.uuid4().hex[:12]}"
    try:
        first = run_command(server_url(name))
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == f"Created the database {name}."
        again = run_command(server_url(name))
        assert again.returncode == 0 and again.stdout.strip() == "", again.stderr
    finally:
        with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_a_server_that_does_not_answer_is_one_line_not_a_traceback() -> None:
    done = run_command("postgres://postgres@127.0.0.1:9/mammo_nowhere")
    assert done.returncode != 0
    assert "The database cannot be reached (check DATABASE_URL)" in done.stderr
    assert "Traceback" not in done.stderr
