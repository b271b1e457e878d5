"""Readiness checks: can this deployment take an upload and have it scored?

Each check answers ok or failed with a short reason an operator can act on, and never a
path, a host name or an id: the answer is served without login. Exceptions are named by
type only, because their messages carry paths and connection strings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from ..ai import workers
from ..ai.inference import artifact_dir
from ..errors import StorageFull
from ..models import ModelVersion

# Broker and worker answers are waited for this long: a probe must answer within seconds.
BROKER_TIMEOUT_SECONDS = 2.0
WORKER_REPLY_SECONDS = 1.0


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        """``{"status": "failed", "reason": …}``, or ``ok`` with a ``note`` if there is one."""
        if not self.ok:
            return {"status": "failed", "reason": self.reason}
        return {"status": "ok", "note": self.reason} if self.reason else {"status": "ok"}


def _failure(what: str, error: BaseException) -> Check:
    return Check(False, f"{what} ({type(error).__name__})")


def database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:
        return _failure("the database did not answer", error)
    return Check(True)


def broker() -> Check:
    """The filesystem broker (the embedded default) is a folder; any other is connected to."""
    from mammo_portal.celery import app

    if workers.filesystem_broker():
        folder = app.conf.broker_transport_options.get("data_folder_in", "")
        return _writable_folder(Path(folder), "the broker folder is not writable")
    try:
        with app.connection_for_write(connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as error:
        return _failure("the broker did not answer", error)
    return Check(True)


def storage() -> Check:
    """Uploads and heatmaps are written through the default storage (``MEDIA_ROOT``),
    which writes a file whole or leaves nothing: a failed probe leaves no file behind."""
    try:
        name = default_storage.save(f".readyz-{uuid.uuid4().hex}", ContentFile(b"ready"))
        default_storage.delete(name)
    except StorageFull:
        return Check(False, "media storage is full")
    except Exception as error:
        return _failure("media storage is not writable", error)
    return Check(True)


def inference_workers() -> Check:
    answering = workers.online(timeout=WORKER_REPLY_SECONDS)
    if answering is None:
        if workers.filesystem_broker():
            return Check(True, "not checkable on this broker (no broadcast)")
        return Check(False, "the broker did not relay a ping to the workers")
    if not answering:
        return Check(False, "no worker answered a ping")
    return Check(True)


def model_artifact() -> Check:
    """The active version's manifest is readable and names the registered checksum, and
    its model file is there. The worker verifies the full checksum when it loads the
    model; a probe does not hash hundreds of megabytes (nor load TensorFlow)."""
    from ml.artifacts import ArtifactError, load_manifest

    version = ModelVersion.objects.filter(is_active=True).first()
    if version is None:
        return Check(False, "no model version is active")
    folder = artifact_dir(version)
    if not folder.is_dir():
        return Check(False, "the active model's artifact folder is missing")
    try:
        manifest = load_manifest(folder)
    except ArtifactError:
        return Check(False, "the active model's manifest is missing or unreadable")
    if manifest.sha256 != version.checksum:
        return Check(False, "the active model's manifest does not match the registered checksum")
    try:
        with (folder / manifest.model_file).open("rb") as handle:
            handle.read(1)
    except OSError as error:
        return _failure("the active model's file is not readable", error)
    return Check(True)


def _writable_folder(folder: Path, what: str) -> Check:
    probe = folder / f".readyz-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"ready")
    except OSError as error:
        return _failure(what, error)
    finally:
        probe.unlink(missing_ok=True)  # a write that failed half-way leaves nothing either
    return Check(True)


CHECKS: dict[str, Callable[[], Check]] = {
    "database": database,
    "broker": broker,
    "storage": storage,
    "inference_workers": inference_workers,
    "model_artifact": model_artifact,
}
# A check that cannot succeed without another is reported as such, not run.
NEEDS = {"inference_workers": "broker", "model_artifact": "database"}


def run(names: list[str]) -> dict[str, Check]:
    """Run the named checks (in ``CHECKS`` order); one that crashes counts as failed."""
    results: dict[str, Check] = {}
    for name in [n for n in CHECKS if n in names]:
        needed = NEEDS.get(name)
        if needed in results and not results[needed].ok:
            results[name] = Check(False, f"not checked: {needed} failed")
            continue
        try:
            results[name] = CHECKS[name]()
        except Exception as error:
            results[name] = _failure("the check itself failed", error)
    return results
