"""The AI pipeline's plain functions: queue, claim, score, explain, store, aggregate, sweep.

Celery tasks (``screening.ai.tasks``) are thin wrappers over these, so every step runs and
is tested without a broker too. One job scores one study: its images share a case score,
and the predictor batches all of their patches into one model call.

Nothing runs twice and nothing is lost: a result row is keyed by (image, model version);
a worker claims it atomically (queued → running, tagged with its task id, so only a
redelivery of the same message may take over a running row); a result is written once; a
poison image gets ``MAX_ATTEMPTS`` claims and is then marked failed; the sweep re-sends
work that never reached the broker or was stranded by a dead worker.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from celery import current_app
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone

from .. import pathway
from ..choices import AIStatus, CaseRoute, CaseStatus, SilentTrial
from ..imaging import films, pictures
from ..models import AIResult, Case, Image, ModelVersion, Study
from ..storage import storage_error
from .queries import case_ai

if TYPE_CHECKING:  # ml is imported where it runs, so TensorFlow never loads in the web process
    from ml.predictor import ImagePrediction, Predictor

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# The Celery task that runs ``score_study`` (``tasks.score_study_task``), sent by name so
# this module, which the tasks wrap, never imports them.
SCORE_STUDY_TASK = "screening.score_study"
# Message priorities on the inference queue (Redis: 0 is taken first, 9 last). A silent
# trial's jobs wait behind every job a reader waits for; a worker takes one message at a
# time (prefetch 1), so a trial's backlog never sits in front of a new study.
READER_PRIORITY = 0
SILENT_TRIAL_PRIORITY = 9


class PermanentFailure(Exception):
    """A failure a retry cannot fix: bad artifact, checksum mismatch, unreadable image."""


# --- Queueing ----------------------------------------------------------------------


def queue_study(study_id: int, model_version_id: int) -> list[int]:
    """Create the queued result rows of a study (idempotent) and send its job after commit.

    A prior study (no case) is history for comparison: never queued, never scored."""
    case_id = Study.objects.filter(pk=study_id).values_list("case_id", flat=True).first()
    if case_id is None:
        return []
    ids = []
    for image in Image.objects.filter(study_id=study_id):
        result, _ = AIResult.objects.get_or_create(
            image=image, model_version_id=model_version_id, defaults={"case_id": case_id}
        )
        ids.append(result.pk)
    transaction.on_commit(lambda: dispatch(study_id, model_version_id))
    return ids


def dispatch(study_id: int, model_version_id: int) -> bool:
    """Send a study's job to the broker; when the broker is down the rows stay queued
    with no dispatch time, and the sweep sends them once it is back."""
    silent = (
        ModelVersion.objects.filter(pk=model_version_id)
        .exclude(silent_trial=SilentTrial.NONE)
        .exists()
    )
    priority = SILENT_TRIAL_PRIORITY if silent else READER_PRIORITY
    try:
        current_app.send_task(
            SCORE_STUDY_TASK, args=[study_id, model_version_id], retry=False, priority=priority
        )
    except Exception:  # kombu raises several connection error types
        log.warning("Broker unavailable: study %s stays queued for the sweep", study_id)
        return False
    AIResult.objects.filter(
        image__study_id=study_id, model_version_id=model_version_id, status=AIStatus.QUEUED
    ).update(dispatched_at=timezone.now())
    return True


# --- The worker's job ---------------------------------------------------------------


_predictors: dict[tuple[int, str], Predictor] = {}


def predictor_for(version: ModelVersion) -> Predictor:
    """One loaded model per worker process and model version, verified on first use."""
    key = (version.pk, version.checksum)
    if key not in _predictors:
        from ml.artifacts import ArtifactError
        from ml.predictor import Predictor

        path = artifact_dir(version)
        try:
            predictor = Predictor.load(path)
        except ArtifactError as error:
            raise PermanentFailure(f"Model artifact unusable: {error}") from error
        if predictor.manifest.sha256 != version.checksum:
            raise PermanentFailure("Model artifact does not match the registered checksum.")
        _predictors.clear()  # keep one model in memory per worker process
        _predictors[key] = predictor
    return _predictors[key]


def artifact_dir(version: ModelVersion) -> Path:
    path = Path(version.artifact_path)
    return path if path.is_absolute() else Path(settings.BASE_DIR) / path


def trial_score(artifact: str | Path) -> float:
    """Load an artifact as a worker does and score one plain synthetic film with it: the
    check an engineer runs once on a brought model (it loads, takes the manifest's
    preprocessing, gives a probability and a heat map). Raises ``PermanentFailure``."""
    from ml.artifacts import ArtifactError
    from ml.predictor import Predictor

    film = np.zeros((512, 512), np.uint8)
    film[32:480, :360] = 120  # a flat "breast" against black, so patches are taken
    try:
        probability = Predictor.load(Path(artifact)).predict_images([film])[0].probability
    except ArtifactError as error:
        raise PermanentFailure(f"Model artifact unusable: {error}") from error
    except Exception as error:  # Keras and TensorFlow raise many types on a model they cannot run
        raise PermanentFailure(f"The model does not run: {error}") from error
    if not 0.0 <= probability <= 1.0:
        raise PermanentFailure(f"The model gave {probability}, not a probability.")
    return probability


@dataclass
class StudyOutcome:
    scored: int = 0
    failed: int = 0
    skipped: int = 0


def score_study(study_id: int, model_version_id: int, task_id: str = "") -> StudyOutcome:
    """Claim, score, explain and store every queued image of a study, then the case."""
    outcome = StudyOutcome()
    if _trial_stopped(study_id, model_version_id):
        return outcome
    claimed = claim(study_id, model_version_id, task_id, outcome)
    if claimed:
        version = ModelVersion.objects.get(pk=model_version_id)
        try:
            predictor = predictor_for(version)
        except PermanentFailure as error:
            for result in claimed:
                fail(result, str(error))
            outcome.failed += len(claimed)
            claimed = []
        if claimed:
            _score_claimed(predictor, claimed, outcome)
    study = Study.objects.get(pk=study_id)
    if study.case_id is not None:  # queue_study never queues a prior; kept true here too
        aggregate_case(study.case_id, model_version_id)
    return outcome


def _trial_stopped(study_id: int, model_version_id: int) -> bool:
    """A stopped silent trial scores nothing more: rows queued for it since (an upload
    racing the stop, a dead worker's row the sweep put back) leave the queue unscored."""
    if not ModelVersion.objects.filter(
        pk=model_version_id, silent_trial=SilentTrial.STOPPED
    ).exists():
        return False
    AIResult.for_images.filter(
        image__study_id=study_id, model_version_id=model_version_id, status=AIStatus.QUEUED
    ).delete()
    return True


def claim(
    study_id: int, model_version_id: int, task_id: str, outcome: StudyOutcome
) -> list[AIResult]:
    """Take the study's results this job may run; give up on ones that crashed it too often."""
    claimed = []
    results = AIResult.objects.filter(
        image__study_id=study_id, model_version_id=model_version_id
    ).select_related("image")
    for result in results:
        mine = Q(status=AIStatus.QUEUED) | Q(status=AIStatus.RUNNING, task_id=task_id or "-")
        if result.attempts >= MAX_ATTEMPTS and result.status != AIStatus.DONE:
            if AIResult.objects.filter(Q(pk=result.pk) & mine).exists():
                fail(
                    result,
                    f"Gave up after {result.attempts} attempts: the worker stopped each time.",
                )
                outcome.failed += 1
            continue
        taken = AIResult.objects.filter(Q(pk=result.pk) & mine).update(
            status=AIStatus.RUNNING,
            task_id=task_id,
            started_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
        if taken:
            result.task_id = task_id
            claimed.append(result)
        else:
            outcome.skipped += 1
    return claimed


def _score_claimed(predictor: Predictor, claimed: list[AIResult], outcome: StudyOutcome) -> None:
    readable: list[tuple[AIResult, np.ndarray, float]] = []
    # films decoded side by side on the worker's threads (zlib and pydicom release the GIL)
    decoding = [_writer().submit(_timed_read, result.scored_image) for result in claimed]
    for result, decoded in zip(claimed, decoding, strict=True):
        try:
            readable.append((result, *decoded.result()))
        except PermanentFailure as error:
            fail(result, str(error))
            outcome.failed += 1
    if not readable:
        return
    # Each film's heatmap PNG is encoded and written on the writer threads as soon as the
    # model is through its patches, while the model scores the next films; the rows are
    # written here, in order, once every file has landed.
    pending = []
    predictions = predictor.iter_predictions(
        [pixels for _, pixels, _ in readable],
        pixel_spacing_mm=[result.scored_image.pixel_spacing_mm for result, _, _ in readable],
    )
    for done, (result, _, decode_s) in enumerate(readable):
        try:
            prediction = next(predictions)
        except Exception as error:  # a model error is permanent for these inputs
            log.exception("Inference failed for %d images", len(readable) - done)
            for failed, _, _ in readable[done:]:
                fail(failed, f"Inference error: {type(error).__name__}: {error}")
            outcome.failed += len(readable) - done
            break
        if _held(result).exists():
            written = _writer().submit(write_heatmap, result, prediction)
            pending.append((result, prediction, decode_s, written))
        else:
            log.warning("AI result %s is no longer held by this job; not written", result.pk)
        outcome.scored += 1
    for result, prediction, decode_s, written in pending:
        name, write_s = written.result()
        record(result, prediction, name, decode_s, write_s, len(readable))


def _timed_read(image: Image) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    return read_pixels(image), time.perf_counter() - start


def read_pixels(image: Image) -> np.ndarray:
    """The pixels the model scores: a PNG/JPEG as stored, a DICOM through its VOI.

    DICOM goes through ``dicom.rendition``, the same 8-bit image the reader is shown
    (see that function for the normalisation and why).
    """
    try:
        with image.file.open("rb") as handle:
            pixels, shown = pictures.pixels_and_rendition(handle.read())
    except FileNotFoundError:
        raise PermanentFailure("The stored image file is missing.") from None
    except films.FileRejected as refusal:  # a rendition that is not numbers
        raise PermanentFailure(refusal.message) from None
    except Exception as error:  # Pillow and pydicom raise many types on corrupt data
        raise PermanentFailure(
            f"The stored image cannot be decoded ({type(error).__name__})."
        ) from None
    pixels = pixels[..., 0] if pixels.ndim == 3 else pixels
    _check_scorable(pixels, shown)
    return pixels


def _check_scorable(pixels: np.ndarray, shown: np.ndarray) -> None:
    """Refuse to score a stub or a blank film: a 2 x 1 placeholder (vendor test files carry
    such) or a film with nothing on it would get a confident-looking low score, where the
    reader must see that the AI could not judge. Upload refuses both; this guards what was
    stored before it did."""
    height, width = pixels.shape[:2]
    least = settings.AI_MIN_IMAGE_SIDE
    if min(height, width) < least:
        raise PermanentFailure(
            f"Image is {width}×{height} pixels: too small to score (at least {least} each side)."
        )
    try:
        films.refuse_blank(shown)
    except films.FileRejected as refusal:
        raise PermanentFailure(refusal.message) from None


WRITER_THREADS = 2
_writers: tuple[int, ThreadPoolExecutor] | None = None


def _writer() -> ThreadPoolExecutor:
    """This process's threads for decoding films and writing heatmaps, made on first use
    after any fork (a prefork worker's child must not inherit its parent's threads: they do
    not survive a fork)."""
    global _writers
    if _writers is None or _writers[0] != os.getpid():
        pool = ThreadPoolExecutor(max_workers=WRITER_THREADS, thread_name_prefix="heatmap-writer")
        _writers = (os.getpid(), pool)
    return _writers[1]


def _held(result: AIResult) -> QuerySet[AIResult]:
    """The result's row while this job still holds it (running, under this job's id)."""
    return AIResult.objects.filter(pk=result.pk, status=AIStatus.RUNNING, task_id=result.task_id)


def write_heatmap(result: AIResult, prediction: ImagePrediction) -> tuple[str, float]:
    """Render the heatmap PNG and store its file: the stored name and the seconds it took.

    Runs on a writer thread (no database access), so encoding overlaps the other images'
    writes; PNG encoding and zlib release the GIL.
    """
    from ml.gradcam import render_heatmap_png

    start = time.perf_counter()
    png = render_heatmap_png(prediction.heatmap)
    name = f"heatmaps/{result.model_version_id}/{result.image_id}.png"
    saved = _replace_file(result.heatmap.storage, name, png)
    return saved, time.perf_counter() - start


def record(
    result: AIResult,
    prediction: ImagePrediction,
    heatmap: str,
    decode_s: float,
    write_s: float,
    batch: int,
) -> None:
    """Write the score once, while this job still holds the result.

    The file was written only after the same check; a job whose result was taken back in
    between (its worker was thought dead and another job now holds it) updates nothing, so
    a result is never written twice.
    """
    timings = {
        "decode": round(decode_s, 4),
        **{k: round(v, 4) for k, v in prediction.timings.items()},
        "write": round(write_s, 4),
        "batch_images": batch,
        "patches": len(getattr(prediction, "patch_boxes", ())),
    }
    _held(result).update(
        status=AIStatus.DONE,
        probability=float(prediction.probability),
        heatmap=heatmap,
        marks=[mark.to_dict() for mark in prediction.marks],
        timings=timings,
        finished_at=timezone.now(),
        error="",
    )


def _replace_file(storage: Any, name: str, content: bytes) -> str:
    """Write ``name`` whole or not at all: a reader (the viewer, a backup) never sees it
    missing or half-written while a re-score replaces it."""
    try:
        final = Path(storage.path(name))
    except NotImplementedError:  # a remote storage: its own writes are whole objects
        if storage.exists(name):
            storage.delete(name)
        return storage.save(name, ContentFile(content))
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(content)
        os.replace(partial, final)
    except OSError as error:
        partial.unlink(missing_ok=True)  # a full disk leaves no half-written heatmap
        raise storage_error(error) from error
    return name


def fail(result: AIResult, message: str) -> None:
    log.warning("AI result %s failed: %s", result.pk, message)
    AIResult.objects.filter(pk=result.pk).exclude(status=AIStatus.DONE).update(
        status=AIStatus.FAILED, error=message[:2000], finished_at=timezone.now()
    )


def aggregate_case(case_id: int, model_version_id: int) -> AIResult | None:
    """Once every image has a final result, the case score is the maximum image score.

    Maximum, because a cancer usually shows on one side and one or two views: an average
    would dilute exactly the image that matters. One failed image fails the case result,
    so a reader never sees a reassuring score that skipped a film.
    """
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        images = AIResult.for_images.filter(case_id=case_id, model_version_id=model_version_id)
        expected = Image.objects.filter(study__case_id=case_id).count()
        statuses = list(images.values_list("status", flat=True))
        if len(statuses) < expected or any(
            s not in (AIStatus.DONE, AIStatus.FAILED) for s in statuses
        ):
            return None
        failed = statuses.count(AIStatus.FAILED)
        score = images.filter(status=AIStatus.DONE).aggregate(top=Max("probability"))["top"]
        values = {
            "status": AIStatus.FAILED if failed else AIStatus.DONE,
            "probability": None if failed else score,
            "finished_at": timezone.now(),
            "error": f"{failed} of {len(statuses)} images could not be scored." if failed else "",
        }
        case_result, created = AIResult.for_cases.get_or_create(
            case_id=case_id,
            model_version_id=model_version_id,
            defaults={**values, "image": None},
        )
        unchanged = all(
            getattr(case_result, f) == values[f] for f in ("status", "probability", "error")
        )
        if not created and not unchanged:
            for field, value in values.items():
                setattr(case_result, field, value)
            case_result.save(update_fields=list(values))
        _show_if_active(case, case_result)
    return case_result


def _show_if_active(case: Case, case_result: AIResult) -> None:
    """Show a finished case result to readers, unless its version runs in silent trial:
    then the case is left exactly as it was (no score, band, order or status change, so
    nothing a reader polls moves)."""
    version = case_result.model_version
    if version.hidden_from_readers:
        return
    current = case.ai_result
    if version.is_active or current is None or current.status != AIStatus.DONE:
        case.show_ai_result(case_result)
    if case.status == CaseStatus.AWAITING_AI:
        case.status = CaseStatus.READY
    routed = route_case(case)
    case.save(
        update_fields=["ai_result", "ai_score", "triage_priority", "risk_band", "status", *routed]
    )


def route_case(case: Case) -> list[str]:
    """Take the case's route under the policy it arrived with, now that its AI is shown:
    once, and only while no read is recorded (the caller holds the case row locked, as the
    read verb does, so a read and the routing never cross). Returns the fields set."""
    if case.route != CaseRoute.UNDECIDED or case.first_reader_id is not None:
        return []
    policy = case.policy
    routed = pathway.route(
        policy.policy if policy else "",
        policy.single_read_normal if policy else False,
        case_ai(case),
    )
    case.route, case.ai_normal, case.ai_decision = (
        routed.route,
        routed.ai_normal,
        routed.ai_decision,
    )
    return ["route", "ai_normal", "ai_decision"]


# --- Recovery -------------------------------------------------------------------------


def sweep(
    now: Any = None,
    send: Callable[[int, int], bool] = dispatch,
    running: set[str] | None = None,
    asked_at: Any = None,
    in_broker: set[tuple[Any, ...]] | None = None,
) -> int:
    """Re-send work that never reached the broker or was stranded; returns jobs sent.

    ``running``: the job ids live workers reported at ``asked_at`` (their heartbeat). A
    running result whose job none of them holds belonged to a worker that is gone: it goes
    back to queued at once. Without that answer (None), running rows older than the hard
    time limit plus a margin are taken as stranded. Attempts are kept either way, so a
    poison image still stops at MAX_ATTEMPTS.

    ``in_broker``: the (study, version) jobs the broker held when asked, read before the
    rows. A queued job sent more than ``AI_LOST_MESSAGE_SECONDS`` ago that the broker no
    longer holds was lost with it (a Redis without persistence restarted): it is sent
    again now, not after ``AI_REQUEUE_AFTER_SECONDS``. A job a worker took in between is
    sent twice at worst, and the second copy finds nothing left to claim.
    """
    now = now or timezone.now()
    stranded = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    lost = now - timedelta(seconds=settings.AI_REQUEUE_AFTER_SECONDS)
    back = AIResult.objects.filter(status=AIStatus.RUNNING, started_at__lt=stranded).update(
        status=AIStatus.QUEUED, task_id="", dispatched_at=None
    )
    if running is not None:
        back += _requeue_orphans(running, asked_at or now)
    waiting = AIResult.for_images.filter(status=AIStatus.QUEUED).filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=lost)
    )
    jobs = set(waiting.values_list("image__study_id", "model_version_id"))
    if in_broker is not None:
        jobs |= _lost_with_the_broker(in_broker, now)
    sent = sum(1 for study_id, version_id in jobs if send(study_id, version_id))
    if jobs or back:
        log.info("Sweep: %d running results back in the queue, %d of %d jobs re-sent",
                 back, sent, len(jobs))  # fmt: skip
    return sent


def _lost_with_the_broker(in_broker: set[tuple[Any, ...]], now: Any) -> set[tuple[int, int]]:
    sent_before = now - timedelta(seconds=settings.AI_LOST_MESSAGE_SECONDS)
    dispatched = AIResult.for_images.filter(
        status=AIStatus.QUEUED, dispatched_at__lt=sent_before
    ).values_list("image__study_id", "model_version_id")
    lost = {job for job in dispatched if job not in in_broker}
    if lost:
        log.warning("%d dispatched AI jobs were no longer in the broker; sent again", len(lost))
    return lost


def _requeue_orphans(running: set[str], asked_at: Any) -> int:
    """Running Celery jobs no live worker holds: their worker died (machine lost, SIGKILL).

    Only rows claimed before the workers were asked count (a job claimed since could not
    be in their answer); rows claimed outside Celery (no task id) are left alone.
    """
    claimed_before = asked_at - timedelta(seconds=settings.AI_WORKER_REPLY_SECONDS)
    orphans = (
        AIResult.objects.filter(status=AIStatus.RUNNING, started_at__lt=claimed_before)
        .exclude(task_id="")
        .exclude(task_id__in=running)
    )
    count = orphans.update(status=AIStatus.QUEUED, task_id="", dispatched_at=None)
    if count:
        log.warning("%d running AI results had no live worker; queued again", count)
    return count


def retry_result(result: AIResult) -> None:
    """An admin's retry of a failed result: a fresh set of attempts."""
    AIResult.objects.filter(pk=result.pk, status=AIStatus.FAILED).update(
        status=AIStatus.QUEUED, attempts=0, error="", task_id="", dispatched_at=None
    )
    if result.image is not None:
        study_id = result.image.study_id
        transaction.on_commit(lambda: dispatch(study_id, result.model_version_id))


def rescore_open_cases(model_version_id: int) -> int:
    """Queue every open case's images for a newly activated version; old results stay."""
    from ..choices import READABLE_STATUSES

    studies = Study.objects.filter(case__status__in=READABLE_STATUSES).values_list("pk", flat=True)
    count = 0
    for study_id in studies.iterator():
        with transaction.atomic():
            queue_study(study_id, model_version_id)
        count += 1
    log.info("Queued %d open studies for model version %s", count, model_version_id)
    return count
