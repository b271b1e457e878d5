#!/usr/bin/env python3
"""Back up and restore Mammo Portal: the database and the media store together.

    .venv/bin/python scripts/backup.py backup ARCHIVE
    .venv/bin/python scripts/backup.py verify ARCHIVE
    .venv/bin/python scripts/backup.py restore ARCHIVE [--database-url URL] [--media-root DIR] [--force]

ARCHIVE is a new directory, or a file named ``*.tar`` or ``*.tar.gz``. It holds

* ``database.pgdump`` (PostgreSQL: ``pg_dump --format=custom``) or ``database.sqlite3``
  (SQLite: a copy made with SQLite's online backup API, safe while the app writes);
* ``media/``: exactly the files the dumped database references (every ``FileField``: images
  and heatmaps), at their paths under MEDIA_ROOT;
* ``manifest.json``: rows per table, triggers and applied migrations of the dump, the sha256 of
  the dump and of every media file, the app's git commit, and when the snapshot was taken.

The manifest describes the dump, not the live database: on PostgreSQL it is read inside the
very snapshot pg_dump dumps (an exported snapshot), on SQLite from the copy itself. Media are
copied after the snapshot; they are immutable once written (images are content-addressed,
a heatmap is only rewritten in place by re-scoring), so the copy holds every file the dump
references. A referenced file that is missing stops the backup: nothing is left at ARCHIVE.

``restore`` refuses a target database that has any table (unless ``--force``), checks the
archive against its manifest before touching anything, restores the database (pg_restore in
one transaction; the audit table's append-only trigger comes back with it), copies the media
into the target MEDIA_ROOT, then reads back the restored database and media and compares them
with the manifest: rows per table, triggers, migrations, referenced files and their sha256.

Settings are the app's (DATABASE_URL, MEDIA_ROOT, MAMMO_VAR_DIR); ``restore`` takes its target
from ``--database-url`` and ``--media-root`` when given. Exit status: 0 done and verified;
1 refused, or a check failed (what and why is printed); 2 bad usage.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
FORMAT = "mammo-portal-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MEDIA_DIR = "media"
DUMP_FILES = {"postgresql": "database.pgdump", "sqlite": "database.sqlite3"}
CHUNK = 1024 * 1024
# libpq keywords that may come through DATABASE_URL's query string (dj-database-url OPTIONS).
LIBPQ_OPTIONS = {
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "options", "connect_timeout",
    "application_name", "target_session_attrs", "passfile", "service", "channel_binding",
}  # fmt: skip


class BackupError(Exception):
    """A refusal or a failed check: printed, exit status 1."""


# ---------------------------------------------------------------------------- Django settings


def setup_django(database_url: str | None = None, media_root: str | None = None) -> bool:
    """Load the app's settings (with the given target, if any); True if a secret key is set."""
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    if media_root:
        os.environ["MEDIA_ROOT"] = str(Path(media_root).resolve())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mammo_portal.settings")
    sys.path.insert(0, str(BASE_DIR))
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    key_configured = True
    try:
        settings.SECRET_KEY  # noqa: B018  (imports the settings module)
    except ImproperlyConfigured:
        # Backup and restore sign nothing: a throw-away key lets the settings load where the
        # app's key is not at hand (a fresh machine being restored, a shell without secrets).
        os.environ["SECRET_KEY"] = secrets.token_urlsafe(50)
        key_configured = False
        settings.SECRET_KEY  # noqa: B018
    django.setup()
    return key_configured


@dataclass
class Database:
    vendor: str  # "postgresql" or "sqlite"
    settings: dict[str, Any]

    @classmethod
    def default(cls) -> Database:
        from django.db import connections

        connection = connections["default"]
        if connection.vendor not in DUMP_FILES:
            raise BackupError(f"{connection.vendor} databases are not supported")
        return cls(connection.vendor, connection.settings_dict)

    @property
    def label(self) -> str:
        """Where it is, without the password."""
        s = self.settings
        if self.vendor == "sqlite":
            return f"sqlite:{s['NAME']}"
        host = s.get("HOST") or "(socket)"
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"postgresql://{s.get('USER') or ''}@{host}{port}/{s['NAME']}"

    # PostgreSQL: libpq parameters for psycopg and for pg_dump / pg_restore.
    def conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        s = self.settings
        params = {"dbname": s["NAME"], "host": s.get("HOST"), "port": s.get("PORT")}
        params["user"] = s.get("USER")
        params.update({k: v for k, v in (s.get("OPTIONS") or {}).items() if k in LIBPQ_OPTIONS})
        return make_conninfo(**{k: str(v) for k, v in params.items() if v not in (None, "")})

    def pg_env(self) -> dict[str, str]:
        """The password goes to the pg tools through the environment, never on a command line."""
        env = dict(os.environ)
        if self.settings.get("PASSWORD"):
            env["PGPASSWORD"] = str(self.settings["PASSWORD"])
        return env

    def pg_connect(self):  # type: ignore[no-untyped-def]
        import psycopg

        try:
            return psycopg.connect(self.conninfo(), password=self.settings.get("PASSWORD") or None)
        except psycopg.OperationalError as error:
            hint = " (create it first: createdb)" if "does not exist" in str(error) else ""
            raise BackupError(f"cannot connect to {self.label}: {error}".strip() + hint) from None

    def connect_readonly(self):  # type: ignore[no-untyped-def]
        if self.vendor == "postgresql":
            return self.pg_connect()
        path = Path(self.settings["NAME"])
        if not path.is_file():
            raise BackupError(f"no SQLite database at {path}")
        return sqlite3.connect(path, timeout=30)


# ---------------------------------------------------------------------------- what a database holds


@dataclass
class Snapshot:
    """What one consistent view of a database holds, as the manifest records it."""

    taken_at: str
    tables: dict[str, int]
    triggers: list[str]
    migrations: dict[str, list[str]]
    # media path -> the rows that reference it ("screening.Image 12 file")
    references: dict[str, list[str]] = field(default_factory=dict)
    # media path -> the sha256 the database records for it (content-addressed images)
    recorded_sha256: dict[str, str] = field(default_factory=dict)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def list_tables(cursor, vendor: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Table name (schema-qualified outside public) -> quoted SQL name."""
    if vendor == "postgresql":
        cursor.execute(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' "
            "ORDER BY 1, 2"
        )
        return {
            (name if schema == "public" else f"{schema}.{name}"): f"{quote(schema)}.{quote(name)}"
            for schema, name in cursor.fetchall()
        }
    cursor.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\' ORDER BY name"
    )
    return {name: quote(name) for (name,) in cursor.fetchall()}


def list_triggers(cursor, vendor: str) -> list[str]:  # type: ignore[no-untyped-def]
    if vendor == "postgresql":
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal ORDER BY 1, 2"
        )
    else:
        cursor.execute(
            "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger' ORDER BY 1, 2"
        )
    return [f"{table}.{name}" for table, name in cursor.fetchall()]


def file_fields() -> list[tuple[Any, str, str, bool]]:
    """(model, field, column, content-addressed) for every file field of every installed model."""
    from django.apps import apps
    from django.db import models

    from screening.models import Image

    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        for field_ in model._meta.concrete_fields:
            if isinstance(field_, models.FileField):
                addressed = model is Image and field_.name == "file"
                found.append((model, field_.name, field_.column, addressed))
    return found


def read_snapshot(cursor, vendor: str, taken_at: str) -> Snapshot:  # type: ignore[no-untyped-def]
    tables = list_tables(cursor, vendor)
    counts = {}
    for name, sql_name in tables.items():
        cursor.execute(f"SELECT count(*) FROM {sql_name}")  # noqa: S608  (names from the catalogue)
        counts[name] = int(cursor.fetchone()[0])
    migrations: dict[str, list[str]] = {}
    if "django_migrations" in tables:
        cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
        for app, name in cursor.fetchall():
            migrations.setdefault(app, []).append(name)
    snapshot = Snapshot(taken_at, counts, list_triggers(cursor, vendor), migrations)
    for model, name, column, addressed in file_fields():
        table = model._meta.db_table
        if table not in tables:
            continue
        extra = ", sha256" if addressed else ""
        cursor.execute(
            f"SELECT {quote(model._meta.pk.column)}, {quote(column)}{extra} FROM {quote(table)} "  # noqa: S608
            f"WHERE {quote(column)} IS NOT NULL AND {quote(column)} <> '' ORDER BY 1"
        )
        for row in cursor.fetchall():
            pk, path = row[0], row[1]
            snapshot.references.setdefault(path, []).append(f"{model._meta.label} {pk} {name}")
            if addressed:
                snapshot.recorded_sha256[path] = row[2]
    return snapshot


def safe_media_path(path: str) -> PurePosixPath:
    """A stored name as a relative path that cannot leave MEDIA_ROOT."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or not pure.parts or any(p in ("..", "") for p in pure.parts):
        raise BackupError(f"the database references a file outside MEDIA_ROOT: {path!r}")
    return pure


# ---------------------------------------------------------------------------- helpers


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_hashed(source: Path, target: Path) -> tuple[str, int]:
    """Copy, hashing the very bytes written; the target appears whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as src, partial.open("wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(partial, target)
    return digest.hexdigest(), size


def copy_media(media_root: Path, work: Path, path: str, files: dict[str, Any]) -> bool:
    """Copy one referenced file into the archive; False if it is not there.

    A file that changes while it is copied (a heatmap rewritten by re-scoring) is copied again.
    """
    relative = safe_media_path(path)
    source, target = media_root / relative, work / MEDIA_DIR / relative
    for _ in range(3):
        try:
            before = source.stat()
            digest, size = copy_hashed(source, target)
            after = source.stat()
        except FileNotFoundError:
            return False
        if (before.st_ino, before.st_size, before.st_mtime_ns) == (
            after.st_ino, after.st_size, after.st_mtime_ns,
        ):  # fmt: skip
            files[path] = {"sha256": digest, "bytes": size}
            return True
        time.sleep(0.5)
    raise BackupError(f"{source} kept changing while it was copied: run the backup again")


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    tool = shutil.which(command[0])
    if tool is None:
        raise BackupError(
            f"{command[0]} not found: install the PostgreSQL client tools (postgresql-client, "
            "the server's major version or newer)"
        )
    done = subprocess.run([tool, *command[1:]], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed ({done.returncode}):\n{done.stderr.strip()}")


def git_commit() -> str | None:
    if os.environ.get("MAMMO_GIT_COMMIT"):
        return os.environ["MAMMO_GIT_COMMIT"]
    try:
        done = subprocess.run(
            ["git", "-C", str(BASE_DIR), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def key_fingerprint() -> str:
    """Names the DICOM de-identification key without revealing it (pseudonyms depend on it)."""
    from django.conf import settings

    key = str(settings.DICOM_DEID_KEY).encode()
    return hmac.new(key, b"mammo-portal backup key check", hashlib.sha256).hexdigest()[:16]


# ---------------------------------------------------------------------------- backup


def archive_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "w:gz"
    if name.endswith(".tar"):
        return "w"
    return "dir"


def dump_postgres(db: Database, target: Path) -> Snapshot:
    """pg_dump and the manifest's figures read from one exported snapshot."""
    import psycopg

    with db.pg_connect() as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot(), now()")
            snapshot_id, taken = cursor.fetchone()
            run(
                ["pg_dump", "--format=custom", f"--snapshot={snapshot_id}", f"--file={target}",
                 f"--dbname={db.conninfo()}"],
                env=db.pg_env(),
            )  # fmt: skip
            taken_at = taken.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            snapshot = read_snapshot(cursor, "postgresql", taken_at)
        conn.rollback()
    return snapshot


def dump_sqlite(db: Database, target: Path) -> Snapshot:
    """SQLite's online backup API (one step: one consistent copy while the app writes)."""
    source = db.connect_readonly()
    copy = sqlite3.connect(target)
    try:
        taken_at = now()
        source.backup(copy)
    finally:
        source.close()
    try:
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        check = copy.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the database copy fails SQLite's quick_check: {check}")
        return read_snapshot(copy.cursor(), "sqlite", taken_at)
    finally:
        copy.close()


def backup(archive: Path, key_configured: bool) -> None:
    from django.conf import settings

    archive = archive.absolute()
    kind = archive_kind(archive)
    if archive.exists():
        raise BackupError(f"{archive} exists: name a new archive")
    archive.parent.mkdir(parents=True, exist_ok=True)
    os.umask(0o077)  # the archive holds (pseudonymous) patient data: the owner's alone
    db = Database.default()
    media_root = Path(settings.MEDIA_ROOT)
    work = Path(tempfile.mkdtemp(prefix=f".{archive.name}.partial-", dir=archive.parent))
    try:
        dump = work / DUMP_FILES[db.vendor]
        if db.vendor == "postgresql":
            snapshot = dump_postgres(db, dump)
        else:
            snapshot = dump_sqlite(db, dump)
        dump_sha, dump_bytes = sha256_of(dump)

        files: dict[str, dict[str, Any]] = {}
        missing, warnings = [], []
        absent = [
            p for p in sorted(snapshot.references) if not copy_media(media_root, work, p, files)
        ]
        if absent:
            time.sleep(1)  # a heatmap being re-scored is deleted and written again: look once more
        for path in absent:
            if not copy_media(media_root, work, path, files):
                missing.append(f"  {path}  ({', '.join(snapshot.references[path])})")
        files = dict(sorted(files.items()))
        for path, entry in files.items():
            entry["referenced_by"] = snapshot.references[path]
            digest = entry["sha256"]
            recorded = snapshot.recorded_sha256.get(path)
            if recorded and recorded != digest:
                warnings.append(
                    f"{path}: content differs from the sha256 its database row records "
                    f"({recorded[:12]}...): backed up as found"
                )
        if missing:
            raise BackupError(
                f"{len(missing)} file(s) the database references are missing from {media_root}; "
                "no backup was written:\n" + "\n".join(missing)
            )
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "snapshot_at": snapshot.taken_at,
            "finished_at": now(),
            "app": {
                "git_commit": git_commit(),
                "migrations": snapshot.migrations,
                "dicom_deid_key_fingerprint": key_fingerprint() if key_configured else None,
            },
            "database": {
                "vendor": db.vendor,
                "source": db.label,
                "file": dump.name,
                "sha256": dump_sha,
                "bytes": dump_bytes,
                "tables": snapshot.tables,
                "triggers": snapshot.triggers,
            },
            "media": {
                "source": str(media_root),
                "count": len(files),
                "bytes": sum(f["bytes"] for f in files.values()),
                "files": files,
            },
            "warnings": warnings,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        if kind == "dir":
            os.rename(work, archive)
        else:
            write_tar(work, archive, kind)
    finally:
        if work.exists():
            shutil.rmtree(work)

    rows = sum(snapshot.tables.values())
    print(f"Backup written: {archive}")
    print(f"  database  {db.label} ({db.vendor}), snapshot {snapshot.taken_at}")
    print(f"            {len(snapshot.tables)} tables, {rows} rows; dump {human(dump_bytes)}")
    print(f"            {summary_counts(snapshot.tables)}")
    media_bytes = manifest["media"]["bytes"]
    print(f"  media     {len(files)} referenced files, {human(media_bytes)}, all present")
    print(
        f"  app       commit {manifest['app']['git_commit'] or 'unknown'}; {latest(snapshot.migrations)}"
    )
    for warning in warnings:
        print(f"  WARNING   {warning}", file=sys.stderr)


def write_tar(work: Path, archive: Path, mode: str) -> None:
    partial = archive.with_name(f".{archive.name}.partial")
    try:
        with tarfile.open(partial, mode) as tar:  # type: ignore[call-overload]
            tar.add(work / MANIFEST, arcname=MANIFEST)  # first: a reader finds it at once
            for path in sorted(work.rglob("*")):
                if path.name != MANIFEST or path.parent != work:
                    tar.add(path, arcname=path.relative_to(work).as_posix(), recursive=False)
        os.replace(partial, archive)
    finally:
        partial.unlink(missing_ok=True)


def summary_counts(tables: dict[str, int]) -> str:
    shown = ["auth_user"] + sorted(t for t in tables if t.startswith("screening_"))
    return ", ".join(f"{t.removeprefix('screening_')} {tables[t]}" for t in shown if t in tables)


def latest(migrations: dict[str, list[str]]) -> str:
    names = migrations.get("screening") or []
    return f"migrations screening {names[-1]}" if names else "no screening migrations applied"


# ---------------------------------------------------------------------------- archive checks


@contextmanager
def opened(archive: Path, scratch: Path | None = None) -> Iterator[Path]:
    """The archive's root folder (a .tar is unpacked into ``scratch`` for the duration)."""
    if archive.is_dir():
        yield archive
        return
    if not archive.is_file():
        raise BackupError(f"no archive at {archive}")
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    unpacked = Path(tempfile.mkdtemp(prefix=".mammo-restore-", dir=scratch))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(unpacked, filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            raise BackupError(f"cannot unpack {archive}: {error}") from None
        yield unpacked
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


def load_manifest(root: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise BackupError(f"no readable {MANIFEST} in the archive: {error}") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"not a {FORMAT} archive of version {FORMAT_VERSION}")
    return manifest


def check_archive(root: Path) -> tuple[dict[str, Any], list[str]]:
    """The manifest, and every way the archive's files differ from it."""
    manifest = load_manifest(root)
    problems = []
    database = manifest["database"]
    dump = root / database["file"]
    if not dump.is_file():
        problems.append(f"{database['file']}: missing")
    elif sha256_of(dump)[0] != database["sha256"]:
        problems.append(f"{database['file']}: sha256 differs from the manifest (corrupted)")
    for path, entry in manifest["media"]["files"].items():
        stored = root / MEDIA_DIR / safe_media_path(path)
        if not stored.is_file():
            problems.append(f"media file {path}: missing from the archive")
            continue
        digest, size = sha256_of(stored)
        if digest != entry["sha256"] or size != entry["bytes"]:
            problems.append(
                f"media file {path}: sha256 {digest[:12]}... ({size} bytes) differs from the "
                f"manifest's {entry['sha256'][:12]}... ({entry['bytes']} bytes): corrupted"
            )
    return manifest, problems


def verify(archive: Path) -> None:
    with opened(archive.absolute()) as root:
        manifest, problems = check_archive(root)
    if problems:
        raise BackupError(f"{archive} does not match its manifest:\n  " + "\n  ".join(problems))
    media = manifest["media"]
    print(f"Archive {archive} matches its manifest (snapshot {manifest['snapshot_at']}):")
    print(f"  database  {manifest['database']['vendor']} dump, sha256 ok")
    print(f"  media     {media['count']} files, {human(media['bytes'])}, sha256 ok")


# ---------------------------------------------------------------------------- restore


def existing_tables(db: Database) -> list[str]:
    if db.vendor == "postgresql":
        with db.pg_connect() as conn, conn.cursor() as cursor:
            return sorted(list_tables(cursor, "postgresql"))
    path = Path(db.settings["NAME"])
    if not path.is_file() or path.stat().st_size == 0:
        return []
    conn = sqlite3.connect(path, timeout=30)
    try:
        return sorted(list_tables(conn.cursor(), "sqlite"))
    finally:
        conn.close()


def restore_database(db: Database, dump: Path, force: bool) -> None:
    if db.vendor == "postgresql":
        # One transaction: a failed restore leaves the database as it was. The dump creates
        # the tables, COPYs the rows in, then adds indexes, constraints and triggers: the
        # audit table's append-only trigger (UPDATE and DELETE only) never sees a change.
        command = ["pg_restore", "--single-transaction", "--no-owner", "--no-acl"]
        if force:
            command += ["--clean", "--if-exists"]
        run([*command, f"--dbname={db.conninfo()}", str(dump)], env=db.pg_env())
        return
    target = Path(db.settings["NAME"])
    if str(target) == ":memory:":
        raise BackupError("cannot restore into an in-memory SQLite database")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"{dump.absolute().as_uri()}?mode=ro", uri=True)
    copy = sqlite3.connect(target, timeout=30)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()


def restore(archive: Path, force: bool, key_configured: bool) -> None:
    from django.conf import settings

    db = Database.default()
    media_root = Path(settings.MEDIA_ROOT).absolute()
    with opened(archive.absolute(), scratch=media_root.parent) as root:
        manifest, problems = check_archive(root)
        if problems:
            raise BackupError(
                f"{archive} does not match its manifest; nothing was restored:\n  "
                + "\n  ".join(problems)
            )
        vendor = manifest["database"]["vendor"]
        if vendor != db.vendor:
            raise BackupError(f"the archive holds a {vendor} dump; the target is {db.label}")
        tables = existing_tables(db)
        if tables and not force:
            raise BackupError(
                f"the target database {db.label} is not empty ({len(tables)} tables, e.g. "
                f"{', '.join(tables[:3])}): restore into a fresh database, or pass --force "
                "to replace what it holds"
            )
        files = manifest["media"]["files"]
        conflicts, to_copy = [], []
        for path, entry in files.items():
            target = media_root / safe_media_path(path)
            if target.exists() and sha256_of(target)[0] == entry["sha256"]:
                continue  # already there, the same bytes
            if target.exists() and not force:
                conflicts.append(f"  {target}")
            to_copy.append(path)
        if conflicts:
            raise BackupError(
                f"{len(conflicts)} file(s) in {media_root} differ from the backup's; nothing "
                "was restored (use an empty MEDIA_ROOT, or --force to overwrite them):\n"
                + "\n".join(conflicts)
            )

        print(f"Restoring {archive} (snapshot {manifest['snapshot_at']})")
        restore_database(db, root / manifest["database"]["file"], force)
        print(f"  database  restored into {db.label}")
        for path in to_copy:
            relative = safe_media_path(path)
            copy_hashed(root / MEDIA_DIR / relative, media_root / relative)
        print(f"  media     {len(to_copy)} files copied into {media_root} "
              f"({len(files) - len(to_copy)} already there)")  # fmt: skip

    problems = verify_restored(db, media_root, manifest)
    if problems:
        raise BackupError(
            "the restored database or media differ from the backup:\n  " + "\n  ".join(problems)
        )
    tables = manifest["database"]["tables"]
    print("Verified against the manifest:")
    print(f"  {len(tables)} tables, {sum(tables.values())} rows: every count equal")
    print(f"  {summary_counts(tables)}")
    print(f"  {len(manifest['database']['triggers'])} triggers present; migrations equal")
    print(f"  {len(files)} referenced files present in {media_root}, every sha256 equal")
    for note in notes(manifest, key_configured):
        print(f"  NOTE  {note}")
    print("OK")


def verify_restored(db: Database, media_root: Path, manifest: dict[str, Any]) -> list[str]:
    """Read the restored database and media back and list every difference from the manifest."""
    expected = manifest["database"]
    conn = db.connect_readonly()
    try:
        cursor = conn.cursor()
        snapshot = read_snapshot(cursor, db.vendor, now())
    finally:
        conn.close()
    problems = []
    for table, count in expected["tables"].items():
        if table not in snapshot.tables:
            problems.append(f"table {table}: missing")
        elif snapshot.tables[table] != count:
            problems.append(f"table {table}: {snapshot.tables[table]} rows, backup had {count}")
    problems += [
        f"table {t}: not in the backup" for t in snapshot.tables if t not in expected["tables"]
    ]
    for trigger in sorted(set(expected["triggers"]) ^ set(snapshot.triggers)):
        where = "missing" if trigger in expected["triggers"] else "not in the backup"
        problems.append(f"trigger {trigger}: {where}")
    if snapshot.migrations != manifest["app"]["migrations"]:
        problems.append("applied migrations differ from the backup's")
    files = manifest["media"]["files"]
    for path in sorted(set(snapshot.references) - set(files)):
        problems.append(
            f"media file {path}: referenced by the restored database, not in the backup"
        )
    for path in sorted(set(files) - set(snapshot.references)):
        problems.append(
            f"media file {path}: in the backup, not referenced by the restored database"
        )
    for path, entry in sorted(files.items()):
        target = media_root / safe_media_path(path)
        if not target.is_file():
            problems.append(f"media file {path}: missing from {media_root}")
        elif sha256_of(target)[0] != entry["sha256"]:
            problems.append(f"media file {path}: sha256 differs from the backup's")
    return problems


def notes(manifest: dict[str, Any], key_configured: bool) -> list[str]:
    """What the operator should know next: code and migrations, and the de-identification key."""
    from django.db.migrations.loader import MigrationLoader

    found = []
    on_disk = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    applied = {
        (app, name) for app, names in manifest["app"]["migrations"].items() for name in names
    }
    apps = {app for app, _ in on_disk}
    unknown = sorted(f"{a}.{n}" for a, n in applied - on_disk if a in apps)
    pending = sorted(f"{a}.{n}" for a, n in on_disk - applied)
    commit = manifest["app"].get("git_commit") or "unknown"
    if unknown:
        found.append(
            f"the backup has migrations this code lacks ({', '.join(unknown[:3])}): run the "
            f"app at the backup's commit ({commit}) or newer"
        )
    if pending:
        found.append(
            f"{len(pending)} migration(s) of this code are not applied: run manage.py migrate"
        )
    fingerprint = manifest["app"].get("dicom_deid_key_fingerprint")
    if fingerprint and key_configured and fingerprint != key_fingerprint():
        found.append(
            "DICOM_DEID_KEY (or SECRET_KEY) differs from the backed-up install's: restore its "
            "key, or re-uploads get new pseudonyms and are not recognised"
        )
    elif fingerprint and not key_configured:
        found.append("no SECRET_KEY here: give the app the backed-up install's keys before it runs")
    return found


# ---------------------------------------------------------------------------- command line


def use_project_venv() -> None:
    """Run under the project's .venv when started by another Python (the shebang's)."""
    try:
        import django  # noqa: F401
    except ImportError:
        venv = BASE_DIR / ".venv" / "bin" / "python"
        if venv.is_file() and Path(sys.prefix).resolve() != (BASE_DIR / ".venv").resolve():
            os.execv(venv, [str(venv), str(Path(__file__).resolve()), *sys.argv[1:]])  # noqa: S606
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Back up and restore the Mammo Portal database and media store together."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("backup", help="write a new archive (directory, .tar or .tar.gz)")
    make.add_argument("archive", type=Path)
    check = commands.add_parser("verify", help="check an archive's files against its manifest")
    check.add_argument("archive", type=Path)
    back = commands.add_parser("restore", help="restore into a fresh database and MEDIA_ROOT")
    back.add_argument("archive", type=Path)
    back.add_argument("--database-url", help="the target database (default: DATABASE_URL)")
    back.add_argument("--media-root", help="the target media folder (default: MEDIA_ROOT)")
    back.add_argument(
        "--force", action="store_true", help="restore over a non-empty database and media folder"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "restore":
            key_configured = setup_django(args.database_url, args.media_root)
            restore(args.archive, args.force, key_configured)
        elif args.command == "backup":
            backup(args.archive, setup_django())
        else:
            verify(args.archive)
    except BackupError as error:
        print(f"{args.command}: FAILED: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a folder where a file should be, no permission
        print(f"{args.command}: FAILED: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{args.command}: interrupted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    use_project_venv()
    sys.exit(main())
