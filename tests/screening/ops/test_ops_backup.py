"""Backups (scripts/backup.py): the database and the media store together, restored and checked.

The script runs as operators run it, in a process of its own, against this session's test
database (SQLite by default, PostgreSQL with DATABASE_URL); the rows it backs up are committed
(transactional tests). Restores go into a database made for the test: a new SQLite file, or a
new PostgreSQL database made with createdb.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from screening.models import AIResult, AuditEvent, Image
from tests.conftest import REPO
from tests.factories import case_with_images, present, read_case

SCRIPT = REPO / "scripts" / "backup.py"

pytestmark = pytest.mark.django_db(transaction=True)


def postgres() -> bool:
    return connection.vendor == "postgresql"


def database_url(name: str) -> str:
    """A URL for database ``name`` on this session's server (SQLite: a file path)."""
    if not postgres():
        return f"sqlite:///{name}"
    s = connection.settings_dict
    auth = quote(s["USER"] or "", safe="") + (
        f":{quote(s['PASSWORD'], safe='')}" if s["PASSWORD"] else ""
    )
    port = f":{s['PORT']}" if s["PORT"] else ""
    return f"postgres://{auth}@{s['HOST'] or ''}{port}/{name}"


def pg_tool(*args: str) -> None:
    s = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": s["PASSWORD"] or ""}
    target = ["-h", s["HOST"] or "", "-p", str(s["PORT"] or 5432), "-U", s["USER"] or ""]
    subprocess.run([args[0], *target, *args[1:]], env=env, check=True, capture_output=True)


def run_script(*args: str, media_root: Path) -> subprocess.CompletedProcess[str]:
    """scripts/backup.py with this session's database and the test's MEDIA_ROOT."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict["NAME"]),
        "MEDIA_ROOT": str(media_root),
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


@pytest.fixture
def fresh_database(tmp_path):
    """The URL of an empty database to restore into, dropped afterwards."""
    if not postgres():
        yield database_url(str(tmp_path / "restored.sqlite3"))
        return
    if not (shutil.which("createdb") and shutil.which("pg_restore")):
        pytest.skip("needs the PostgreSQL client tools (createdb, pg_dump, pg_restore)")
    name = f"mammo_restore_{uuid.uuid4().hex[:12]}"
    pg_tool("createdb", name)
    yield database_url(name)
    pg_tool("dropdb", "--if-exists", "--force", name)


def connect(url: str):
    """A connection to the restored database, closed when the with-block ends."""
    if postgres():
        import psycopg

        return closing(psycopg.connect(url))
    return closing(sqlite3.connect(url.removeprefix("sqlite:///")))


def table_counts(cursor) -> dict[str, int]:
    if postgres():
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    else:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    names = [row[0] for row in cursor.fetchall()]
    counts = {}
    for name in names:
        cursor.execute(f'SELECT count(*) FROM "{name}"')  # noqa: S608
        counts[name] = cursor.fetchone()[0]
    return counts


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def seeded(radiologist, radiologist2):
    """Two scored cases with images and heatmaps, one double-read (reads and audit events)."""
    first = case_with_images(images=2, score=0.7)
    second = case_with_images(images=2, score=0.2)
    read_case(radiologist, first.pk, recall=True)
    read_case(radiologist2, first.pk, recall=True)
    read_case(radiologist, second.pk, recall=False)
    assert AuditEvent.objects.exists()
    return [first, second]


def referenced_files() -> dict[str, Path]:
    media = Path(settings.MEDIA_ROOT)
    names = [present(i.file.name) for i in Image.objects.all()]
    names += [present(r.heatmap.name) for r in AIResult.objects.exclude(heatmap="")]
    return {name: media / name for name in names}


def test_backup_and_restore_into_a_fresh_database(seeded, fresh_database, tmp_path, media_root):
    archive = tmp_path / "backups" / "mammo.tar"
    made = run_script("backup", str(archive), media_root=media_root)
    assert made.returncode == 0, made.stderr
    assert "Backup written" in made.stdout

    with connection.cursor() as cursor:
        source_counts = table_counts(cursor)
    files = referenced_files()
    assert len(files) == 4 + 4  # four images, four heatmaps

    restored_media = tmp_path / "restored-media"
    done = run_script(
        "restore", str(archive), "--database-url", fresh_database,
        "--media-root", str(restored_media), media_root=media_root,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("OK")

    # Checked here independently of the script: every table's rows, every file's bytes.
    with connect(fresh_database) as restored:
        assert table_counts(restored.cursor()) == source_counts
    assert source_counts["screening_auditevent"] > 0 and source_counts["screening_read"] == 3
    for image in Image.objects.all():
        assert sha256(restored_media / image.file.name) == image.sha256
    for name, source in files.items():
        assert sha256(restored_media / name) == sha256(source)
    restored = {p.relative_to(restored_media).as_posix() for p in restored_media.rglob("*")}
    assert {n for n in restored if (restored_media / n).is_file()} == set(files)

    if postgres():
        # The restored audit trail is still append-only: the trigger came back with the rows.
        import psycopg

        with connect(fresh_database) as restored, pytest.raises(psycopg.Error, match="append-only"):
            restored.execute("DELETE FROM screening_auditevent")

    # A restore never lands on a database that holds something, unless forced.
    again = run_script(
        "restore", str(archive), "--database-url", fresh_database,
        "--media-root", str(restored_media), media_root=media_root,
    )  # fmt: skip
    assert again.returncode == 1
    assert "is not empty" in again.stderr
    forced = run_script(
        "restore", str(archive), "--database-url", fresh_database,
        "--media-root", str(restored_media), "--force", media_root=media_root,
    )  # fmt: skip
    assert forced.returncode == 0, forced.stdout + forced.stderr


def test_manifest_lists_counts_checksums_and_migrations(seeded, tmp_path, media_root):
    archive = tmp_path / "backup-dir"
    made = run_script("backup", str(archive), media_root=media_root)
    assert made.returncode == 0, made.stderr
    manifest = json.loads((archive / "manifest.json").read_text())

    with connection.cursor() as cursor:
        assert manifest["database"]["tables"] == table_counts(cursor)
    assert manifest["database"]["vendor"] == ("postgresql" if postgres() else "sqlite")
    files = referenced_files()
    assert set(manifest["media"]["files"]) == set(files)
    for name, source in files.items():
        assert manifest["media"]["files"][name]["sha256"] == sha256(source)
        assert sha256(archive / "media" / name) == sha256(source)
    assert "0002_roles_and_append_only_audit" in manifest["app"]["migrations"]["screening"]
    if postgres():
        assert (
            "screening_auditevent.screening_auditevent_no_change"
            in manifest["database"]["triggers"]
        )
    assert manifest["snapshot_at"] and manifest["finished_at"]


def test_corrupted_media_file_fails_the_restore_and_names_the_file(
    seeded, fresh_database, tmp_path, media_root
):
    archive = tmp_path / "backup-dir"
    assert run_script("backup", str(archive), media_root=media_root).returncode == 0
    image = Image.objects.first()
    assert image is not None and image.file.name is not None
    name = image.file.name
    stored = archive / "media" / name
    content = bytearray(stored.read_bytes())
    content[len(content) // 2] ^= 0xFF  # one flipped byte, the same size
    stored.chmod(0o600)
    stored.write_bytes(bytes(content))

    checked = run_script("verify", str(archive), media_root=media_root)
    assert checked.returncode == 1
    assert name in checked.stderr

    restored_media = tmp_path / "restored-media"
    done = run_script(
        "restore", str(archive), "--database-url", fresh_database,
        "--media-root", str(restored_media), media_root=media_root,
    )  # fmt: skip
    assert done.returncode == 1
    assert name in done.stderr and "corrupted" in done.stderr
    # Refused before anything was touched: the target database and media stay empty.
    with connect(fresh_database) as restored:
        assert table_counts(restored.cursor()) == {}
    assert not restored_media.exists() or not any(restored_media.rglob("*"))


def test_backup_refuses_when_a_referenced_file_is_missing(seeded, tmp_path, media_root):
    result = AIResult.objects.exclude(heatmap="").first()
    assert result is not None and result.heatmap.name is not None
    heatmap = result.heatmap.name
    (Path(settings.MEDIA_ROOT) / heatmap).unlink()
    archive = tmp_path / "backups" / "mammo.tar.gz"
    made = run_script("backup", str(archive), media_root=media_root)
    assert made.returncode == 1
    assert heatmap in made.stderr and "missing" in made.stderr
    assert list(archive.parent.iterdir()) == []  # no archive, no partial one left behind


def test_a_backup_holds_no_name_from_png_or_jpeg_metadata(admin_user, tmp_path, media_root):
    """The stored file is what a backup copies: pixels only (issue 22, finding 3)."""
    import tarfile

    from rest_framework.test import APIClient

    from tests.screening.imaging.test_pixels_only import NAME, jpeg_with, png_with

    api = APIClient()
    api.force_authenticate(admin_user)
    files = [
        SimpleUploadedFile("L_CC.png", png_with("tEXt", seed=1)),
        SimpleUploadedFile("R_CC.png", png_with("eXIf", seed=2)),
        SimpleUploadedFile("L_MLO.jpg", jpeg_with("EXIF", seed=3)),
        SimpleUploadedFile("R_MLO.jpg", jpeg_with("COM", seed=4)),
    ]
    data = {"accession_number": "ACC-B", "patient_pseudonym": "P-B", "files": files}
    assert api.post("/api/studies/", data, format="multipart").status_code == 201
    archive = tmp_path / "mammo.tar"
    made = run_script("backup", str(archive), media_root=media_root)
    assert made.returncode == 0, made.stderr
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        images = [m for m in members if m.name.endswith((".png", ".jpg"))]
        assert len(images) >= 4
        for member in members:
            extracted = tar.extractfile(member)
            assert extracted is not None
            assert NAME.encode() not in extracted.read(), member.name
