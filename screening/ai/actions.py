"""The AI verbs: register, evidence and activate model versions, run a silent trial, queue a
study, retry a result.

Each verb authorises nothing (callers do), writes its rows and audit event in one
transaction and sends Celery work only after commit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .. import events
from ..choices import AIStatus, Architecture, SilentTrial
from ..errors import Conflict, DomainError, NotFound
from ..models import AIResult, Case, ModelVersion, Study
from . import inference

if TYPE_CHECKING:  # ml is imported where it runs
    from ml.artifacts import Manifest

log = logging.getLogger(__name__)


def activate_model_version(actor: User | None, model_version_id: int) -> ModelVersion:
    """Make one model version the one that triages; exactly one is ever active."""
    with transaction.atomic():
        target = ModelVersion.objects.select_for_update().filter(pk=model_version_id).first()
        if target is None:
            raise NotFound("No such model version.")
        previous = ModelVersion.objects.filter(is_active=True).exclude(pk=target.pk).first()
        if previous is not None:
            previous.is_active = False
            previous.save(update_fields=["is_active"])
        trial_ran = target.in_silent_trial
        target.is_active = True
        target.activated_at = timezone.now()
        if target.hidden_from_readers:  # switched on: its results are readers' from now
            target.silent_trial = SilentTrial.NONE
            target.silent_trial_changed_at = target.activated_at
        target.save(
            update_fields=["is_active", "activated_at", "silent_trial", "silent_trial_changed_at"]
        )
        events.model_activated(actor, target, previous.pk if previous else None)
        if trial_ran:
            events.silent_trial_stopped(actor, target, dropped=0)
        transaction.on_commit(lambda: _fan_out_rescore(target.pk))
    log.info("Model version %s activated (previous %s)", target.pk, previous and previous.pk)
    return target


def _fan_out_rescore(model_version_id: int) -> None:
    from .tasks import rescore_open_cases_task

    try:
        rescore_open_cases_task.delay(model_version_id)
    except Exception:  # broker down: the admin can activate again, nothing is lost
        log.warning(
            "Broker unavailable: re-scoring for model version %s not queued", model_version_id
        )


def active_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def request_inference(study: Study) -> list[int]:
    """Queue a study for the active model, if there is one, and for every version in silent
    trial; the jobs are sent after commit (a silent trial's behind the active one's). A
    prior study is history for comparison and is never scored."""
    if study.is_prior:
        return []
    wanted = ModelVersion.objects.filter(
        Q(is_active=True) | Q(silent_trial=SilentTrial.RUNNING)
    ).values_list("pk", flat=True)
    return [pk for version_id in wanted for pk in inference.queue_study(study.pk, version_id)]


def start_silent_trial(actor: User | None, model_version_id: int) -> ModelVersion:
    """Let a registered version score every new study for auditors, never for readers.

    It runs beside the active version, or alone; its jobs go behind the active version's
    on the workers (``inference.dispatch``), so a trial never delays what readers wait for.
    """
    with transaction.atomic():
        version = _locked_version(model_version_id)
        if version.is_active:
            raise Conflict(f"{version} is the active version: it cannot also run silently.")
        if version.in_silent_trial:
            return version
        version.silent_trial = SilentTrial.RUNNING
        version.silent_trial_changed_at = timezone.now()
        version.save(update_fields=["silent_trial", "silent_trial_changed_at"])
        events.silent_trial_started(actor, version)
    log.info("Model version %s: silent trial started", version.pk)
    return version


def stop_silent_trial(actor: User | None, model_version_id: int) -> ModelVersion:
    """End a silent trial at once: no new study is queued for it and the images still
    waiting for it leave the queue. Its results stay, for auditors only."""
    with transaction.atomic():
        version = _locked_version(model_version_id)
        if not version.in_silent_trial:
            raise Conflict(f"{version} is not in silent trial.")
        version.silent_trial = SilentTrial.STOPPED
        version.silent_trial_changed_at = timezone.now()
        version.save(update_fields=["silent_trial", "silent_trial_changed_at"])
        dropped, _ = AIResult.for_images.filter(
            model_version=version, status=AIStatus.QUEUED
        ).delete()
        events.silent_trial_stopped(actor, version, dropped)
    log.info(
        "Model version %s: silent trial stopped, %d queued images dropped", version.pk, dropped
    )
    return version


def _locked_version(model_version_id: int) -> ModelVersion:
    version = ModelVersion.objects.select_for_update().filter(pk=model_version_id).first()
    if version is None:
        raise NotFound("No such model version.")
    return version


def register_model_version(
    actor: User | None, artifact: str, activate: bool = False, actor_name: str = ""
) -> ModelVersion:
    """Record an artifact, trained here or brought in, as a model version.

    Its manifest must state what the predictor needs (``ml.manifest_schema``), its model
    file must match the manifest's checksum, input size and single sigmoid output, and a
    version already registered under the same name must have the same checksum. Every
    registration and every refusal is audited with who asked and the file's checksum. What
    the manifest claims is kept on the version; with no evidence it starts unvalidated.
    """
    path = Path(artifact).resolve()
    try:
        manifest, data = _checked_artifact(path)
    except DomainError as error:
        _refused(actor, actor_name, path, error.message)
        raise
    try:
        stored_path = str(path.relative_to(settings.BASE_DIR))
    except ValueError:
        stored_path = str(path)
    with transaction.atomic():
        version, created = ModelVersion.objects.get_or_create(
            architecture=manifest.architecture,
            version=manifest.version,
            defaults={
                "artifact_path": stored_path,
                "checksum": manifest.sha256,
                "input_size": manifest.input_size,
                "threshold": manifest.threshold,
                "metrics": manifest.metrics,
                "evidence": manifest.evidence,
                "manifest": _claims(data),
            },
        )
        if created:
            events.model_registered(actor, version, stored_path, actor_name)
        elif version.checksum == manifest.sha256 and version.manifest != _claims(data):
            # the same model file with an amended manifest (e.g. it now names its women)
            version.manifest = _claims(data)
            version.save(update_fields=["manifest"])
            events.model_registered(actor, version, stored_path, actor_name, amended=True)
    if not created and version.checksum != manifest.sha256:
        conflict = Conflict(
            f"{version} is already registered with checksum {version.checksum[:12]}…; "
            f"this file's is {manifest.sha256[:12]}…. Give the new model another version."
        )
        _refused(actor, actor_name, path, conflict.message)
        raise conflict
    if created:
        events.model_evidence_loaded(actor, version)
    elif version.evidence != manifest.evidence:
        version = load_model_evidence(actor, version, manifest.evidence)
    else:
        rekey_under_site_gates(version)
    if activate and not version.is_active:
        version = activate_model_version(actor, version.pk)
    return version


def check_artifact(artifact: str) -> None:
    """Refuse (``DomainError``) an artifact ``register_model_version`` would refuse, before
    anything is written or audited: an engineer's dry run."""
    _checked_artifact(Path(artifact).resolve())


def _checked_artifact(path: Path) -> tuple[Manifest, dict]:
    """The artifact's manifest, once every field and the model file agree; else refused.

    Reads the Keras archive's config as JSON: TensorFlow never loads here.
    """
    from ml.artifacts import ArtifactError, read_manifest_data, verify_checksum
    from ml.manifest_schema import check_manifest, check_model_file

    try:
        data = read_manifest_data(path)
        check_manifest(data)
        manifest = verify_checksum(path)
        check_model_file(
            path / manifest.model_file,
            manifest.input_size,
            manifest.preprocessing.get("gradcam_layer"),
        )
    except ArtifactError as error:
        raise DomainError(f"Artifact refused: {error}") from None
    if manifest.architecture not in Architecture.values:
        raise DomainError(f"Artifact refused: unknown architecture {manifest.architecture!r}.")
    return manifest, data


# The manifest's blocks an admin reads on the models page; metrics and evidence have
# their own columns, sha256 is the checksum.
_CLAIM_FIELDS = (
    "target",
    "input_size",
    "preprocessing",
    "training_data",
    "calibration",
    "framework",
    "intended_use",
    "created",
    "model_file",
)


def _claims(data: dict) -> dict:
    return {key: data[key] for key in _CLAIM_FIELDS if key in data}


def _refused(actor: User | None, actor_name: str, path: Path, reason: str) -> None:
    """Audit a refused registration, with the checksum of whatever file was offered."""
    from ml.artifacts import MODEL_FILE, ArtifactError, read_manifest_data, sha256_file

    try:
        name = read_manifest_data(path).get("model_file") or MODEL_FILE
    except ArtifactError:
        name = MODEL_FILE
    try:
        checksum = sha256_file(path / str(name))
    except OSError:
        checksum = ""
    events.model_refused(actor, str(path), checksum, reason, actor_name)


def load_model_evidence(actor: User | None, version: ModelVersion, evidence: dict) -> ModelVersion:
    """Take a re-evaluated manifest's evidence for the same model file (same checksum).

    What the worklist, bands and heatmaps show follows at once: every case this version's
    result is shown on gets its worklist key and band again.
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        version.evidence = evidence
        version.save(update_fields=["evidence"])
        _rekey(version, Case.objects.filter(ai_result__model_version=version))
        events.model_evidence_loaded(actor, version)
    log.info(
        "Model version %s: evidence loaded (validated for triage: %s)",
        version.pk,
        version.validated_for_triage,
    )
    return version


def rekey_under_site_gates(version: ModelVersion) -> int:
    """Key again the cases whose worklist key another gate setting gave them.

    The gates are judged on every ask, but a case's worklist key is stored: after a site
    tightens a gate (and restarts, which re-registers), cases a version ordered by score
    must fall back to waiting order. Only the cases on the wrong side are touched.
    """
    shown = Case.objects.filter(
        ai_result__model_version=version, ai_result__probability__isnull=False
    )
    if version.validated_for_triage:
        stale = shown.filter(triage_priority__lt=0)
    else:
        stale = shown.filter(triage_priority__gte=0)
    with transaction.atomic():
        count = _rekey(version, stale)
    if count:
        log.info("Model version %s: %s cases keyed again under the site's gates", version.pk, count)
    return count


def _rekey(version: ModelVersion, cases: QuerySet[Case]) -> int:
    """Give each case shown this version's result its worklist key and band again."""
    changed = []
    for case in cases.select_related("ai_result").iterator(chunk_size=2000):
        result = case.ai_result
        assert result is not None  # the filter joins through it
        result.model_version = version
        case.show_ai_result(result)
        changed.append(case)
    Case.objects.bulk_update(changed, ["triage_priority", "risk_band"], batch_size=1000)
    return len(changed)


def retry_ai_result(actor: User, result_id: int) -> AIResult:
    result = AIResult.objects.filter(pk=result_id).select_related("image").first()
    if result is None:
        raise NotFound("No such AI result.")
    if result.status != AIStatus.FAILED:
        raise Conflict("Only a failed result can be retried.")
    with transaction.atomic():
        inference.retry_result(result)
        events.ai_retried(actor, result)
    return result
