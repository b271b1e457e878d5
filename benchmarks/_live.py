"""The app on a live server for the browser benchmarks and scripts: a throw-away test
database on DATABASE_URL (default SQLite), the production static set-up (collectstatic,
WhiteNoise) and Django's threaded live server on 127.0.0.1, as benchmarks/viewer.py runs it.

    from benchmarks import _live
    _live.setup_django("reading-effort")      # before any Django import
    with _live.serving() as url: ...          # seed with the ORM, browse url with Playwright
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "bench-password-123"


def setup_django(name: str) -> None:
    """Settings for a local run (no HTTPS, quiet logs, media and static in temporary
    folders), then django.setup(). Call once, before importing anything of the app."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mammo_portal.settings")
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-not-for-production-use")
    os.environ.setdefault("SECURE_HTTPS", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix=f"{name}-media-"))
    os.environ["STATIC_ROOT"] = tempfile.mkdtemp(prefix=f"{name}-static-")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop runs in this thread
    import django

    django.setup()


@contextmanager
def serving() -> Iterator[str]:
    """A test database and the app serving it; yields the server's URL. The database is
    destroyed afterwards, whatever happened."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test.testcases import LiveServerThread
    from django.test.utils import setup_test_environment

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    if connection.vendor == "sqlite":  # a file, so the server's threads share it
        connection.settings_dict["TEST"]["NAME"] = str(Path(tempfile.mkdtemp()) / "live.sqlite3")
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    call_command("collectstatic", interactive=False, verbosity=0)
    # WhiteNoise serves static: the handler is left as it is (the stub wants a handler class,
    # Django calls it with the app)
    server = LiveServerThread("127.0.0.1", lambda app: app, port=0)  # type: ignore[arg-type]
    server.daemon = True
    try:
        server.start()
        server.is_ready.wait()
        if server.error:
            raise server.error
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.terminate()
        _destroy(connection, old_name)


def _destroy(connection, old_name: str) -> None:
    """Drop the test database once the server's request threads, which close their own
    connections as the browser's sockets close, have let go of it."""
    from django.db import OperationalError

    for _ in range(20):
        try:
            connection.creation.destroy_test_db(old_name, verbosity=0)
            return
        except OperationalError:  # still named as the test database: try again
            time.sleep(0.5)
    connection.creation.destroy_test_db(old_name, verbosity=0)


def user(username: str, role: str):
    """A user with one role and the benchmarks' password."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    person = get_user_model().objects.create_user(username, password=PASSWORD)
    person.groups.add(Group.objects.get_or_create(name=role)[0])
    return person


def sign_in(page, url: str, username: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/worklist/")
