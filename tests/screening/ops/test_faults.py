"""Faults answer clearly: a database that does not answer is a 503 that says nothing was
lost (JSON with Retry-After for the API, a page in the site's style for people).

The database is really unreachable: the request's connection points at a port nothing
listens on, so the session, token and view queries fail as they do in an outage.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.db.utils import load_backend
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from screening.ai import inference
from screening.errors import StorageFull
from screening.imaging import previews
from screening.models import Image, Study
from screening.ops import health
from tests.factories import ImageFactory, png_bytes

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


def test_a_page_answers_a_styled_503_that_says_nothing_was_lost(radiologist):
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


def test_the_api_answers_json_503_with_retry_after(db):
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    with database_down():
        response = api.get("/api/cases/")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response["Content-Type"].startswith("application/json")
    assert int(response["Retry-After"]) > 0
    assert NOTHING_LOST in response.json()["detail"]
    assert response.json()["code"] == "database_unavailable"


def test_an_api_write_answers_json_503_too(admin_user):
    api = APIClient(raise_request_exception=False)
    api.force_login(admin_user)
    with database_down():
        response = api.post("/api/outcomes/", {"accession_number": "A-1"}, format="json")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "database_unavailable"


def test_a_token_request_answers_json_503(radiologist):
    key = Token.objects.create(user=radiologist).key
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/cases/").status_code == HTTPStatus.OK  # the same request, database up
    with database_down():
        response = api.get("/api/cases/")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "database_unavailable"


# --- Storage full: a real 6 MB filesystem as MEDIA_ROOT, filled up to a few pages ---------


@pytest.fixture
def small_disk(settings, tmp_path) -> Iterator[Path]:
    """MEDIA_ROOT on a 6 MB tmpfs of its own (mounting needs root; skipped otherwise)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small filesystem needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode()[:200]}")
    settings.MEDIA_ROOT = mount
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Take all but ``leave`` bytes of the filesystem with one file the app did not write."""
    free = shutil.disk_usage(disk).free
    with (disk / FILLER).open("wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
        try:
            handle.write(b"\0" * (1 << 20))  # and, with leave=0, every page left
            handle.flush()
        except OSError:
            pass
    if leave == 0:
        assert shutil.disk_usage(disk).free < 4096
    else:
        with (disk / FILLER).open("r+b") as handle:
            handle.truncate(max(0, free - leave))


FILLER = "filler.bin"


def film(seed: int) -> SimpleUploadedFile:
    return SimpleUploadedFile(f"R_CC_{seed}.png", png_bytes(seed=seed, size=512))


def test_an_upload_page_on_full_storage_answers_507_and_leaves_no_file(admin_user, small_disk):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    fill(small_disk, leave=64 * 1024)
    data: dict[str, object] = {
        "target": "new",
        "accession_number": "FULL-1",
        "patient_pseudonym": "P-1",
    }
    data.update(modality="MG", files=[film(1)])
    response = client.post("/upload/", data)
    body = response.content.decode()
    assert response.status_code == HTTPStatus.INSUFFICIENT_STORAGE, body[:500]
    assert "storage is full" in body and 'class="topbar"' in body
    assert not [p for p in small_disk.rglob("*") if p.is_file() and p.name != FILLER]
    assert (Study.objects.count(), Image.objects.count()) == (0, 0)


def test_an_api_upload_of_two_films_when_only_one_fits_answers_507_json_and_keeps_neither(
    admin_user, small_disk
):
    first, second = film(2), film(3)
    assert first.size is not None
    fill(small_disk, leave=first.size + 64 * 1024)  # the first film fits, the second does not
    api = APIClient(raise_request_exception=False)
    api.force_authenticate(admin_user)
    data = {"accession_number": "FULL-2", "patient_pseudonym": "P-2", "files": [first, second]}
    response = api.post("/api/studies/", data, format="multipart")
    assert response.status_code == HTTPStatus.INSUFFICIENT_STORAGE
    assert response.json()["code"] == "storage_full"
    assert "storage is full" in response.json()["detail"]
    assert not [p for p in small_disk.rglob("*") if p.is_file() and p.name != FILLER]
    assert (Study.objects.count(), Image.objects.count()) == (0, 0)


def test_a_stow_push_on_full_storage_answers_507_json(admin_user, small_disk):
    from tests.dicom_files import dicom_bytes
    from tests.screening.interop.test_dicomweb import CONTENT_TYPE, URL, related

    fill(small_disk, leave=16 * 1024)
    api = APIClient(raise_request_exception=False)
    api.force_authenticate(admin_user)
    body = related(dicom_bytes(seed=5, size=256))
    response = api.post(URL, body, content_type=CONTENT_TYPE)
    assert response.status_code == HTTPStatus.INSUFFICIENT_STORAGE
    assert response.json()["code"] == "storage_full"
    assert not [p for p in small_disk.rglob("*") if p.is_file() and p.name != FILLER]


def test_the_readiness_probe_on_full_storage_fails_and_leaves_nothing(db, small_disk):
    fill(small_disk, leave=0)
    check = health.storage()
    assert not check.ok and "full" in check.reason
    assert not [p for p in small_disk.rglob("*") if p.name != FILLER]


def test_a_preview_that_does_not_fit_is_served_and_leaves_no_part_file(admin_user, small_disk):
    image = ImageFactory(content=png_bytes(seed=6, size=512))
    fill(small_disk, leave=0)
    assert previews.preview(image)[:2] == b"\xff\xd8"  # made in memory, served anyway
    assert not list(small_disk.glob(f"{previews.FOLDER}/*"))


def test_a_heatmap_that_does_not_fit_raises_storage_full_and_leaves_no_part_file(db, small_disk):
    fill(small_disk, leave=0)
    with pytest.raises(StorageFull):
        inference._replace_file(default_storage, "heatmaps/1/1.png", b"\x89PNG" + b"x" * 65536)
    assert not [p for p in small_disk.rglob("*") if p.is_file() and p.name != FILLER]
