"""Settings come from the environment; production settings pass Django's deploy checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 60 + "-production-like-secret-key-for-the-check",
    "ALLOWED_HOSTS": "mammo.example.org",
    "DATABASE_URL": "sqlite:////tmp/mammo-deploy-check.sqlite3",
}


def child_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without the test run's settings, plus ``env``."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    return {**clean, **env}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_variables():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_secret_key_is_required_when_debug_is_off(tmp_path):
    # An empty var folder: a local install's var/secret_key would otherwise be found.
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    env["MAMMO_VAR_DIR"] = str(tmp_path)
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


WRITER = """
import sys, django
django.setup()
from django.db import transaction
from screening.models import Patient
tag = sys.argv[1]
for i in range(150):
    with transaction.atomic():  # read, then write: the pattern of every domain verb
        Patient.objects.filter(pseudonym__startswith=tag).count()
        Patient.objects.create(pseudonym=f"{tag}-{i}")
"""


def test_the_embedded_database_takes_writes_from_two_processes_at_once(tmp_path):
    """scripts/run's web process and worker write the same SQLite file; neither may fail."""
    env = {"DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    assert manage("migrate", "--no-input", env=env).returncode == 0
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, tag],
            cwd=REPO,
            env=child_env({**env, "DJANGO_SETTINGS_MODULE": "mammo_portal.settings"}),
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("web", "worker")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err[-2000:]
    count = manage(
        "shell",
        "-c",
        "from screening.models import Patient; print(Patient.objects.count())",
        env=env,
    )
    assert count.stdout.strip().splitlines()[-1] == "300"


def test_management_commands_find_the_local_key_that_scripts_run_keeps(tmp_path):
    """The README's import command, run by hand after scripts/run, crashed on SECRET_KEY."""
    (tmp_path / "secret_key").write_text("k" * 50 + "\n")
    env = {"DEBUG": "0", "MAMMO_VAR_DIR": str(tmp_path)}
    result = manage("import_studies", "--help", env=env)
    assert result.returncode == 0, result.stderr
    assert "import_studies" in result.stdout


def test_without_any_key_the_error_says_how_to_get_one(tmp_path):
    result = manage("check", env={"DEBUG": "0", "MAMMO_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "run scripts/run once" in result.stderr


def test_a_gate_setting_looser_than_the_floor_refuses_to_start():
    env = {**PRODUCTION, "AI_TRIAGE_MIN_AUC": "0.6", "AI_HEATMAP_MIN_SEEDS": "3"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "AI_TRIAGE_MIN_AUC=0.6 is looser than 0.75" in result.stderr
    assert "AI_HEATMAP_MIN_SEEDS=3 is looser than 10" in result.stderr


def test_a_stricter_gate_setting_is_taken():
    env = {**PRODUCTION, "AI_TRIAGE_MIN_AUC": "0.85", "AI_GATE_MAX_P": "0.01"}
    code = (
        "from django.conf import settings; g = settings.AI_GATES; print(g.triage_min_auc, g.max_p)"
    )
    result = manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == ["0.85", "0.01"]


def test_an_unknown_identity_mode_refuses_to_start():
    result = manage("check", env={**PRODUCTION, "IDENTITY_MODE": "anonymous"})
    assert result.returncode != 0
    assert "IDENTITY_MODE must be research or clinical" in result.stderr


def test_the_identity_mode_is_research_unless_the_install_says_clinical():
    code = "from django.conf import settings; print(settings.IDENTITY_MODE)"
    for env, expected in (({}, "research"), ({"IDENTITY_MODE": "Clinical"}, "clinical")):
        result = manage("shell", "-c", code, env={**PRODUCTION, **env})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == expected
