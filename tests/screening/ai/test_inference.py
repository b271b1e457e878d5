"""The pipeline's plain functions, run in-process with a tiny real Keras model."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from screening.ai import actions as ai_actions
from screening.ai import inference
from screening.choices import AIStatus, CaseStatus, RiskBand
from screening.intake import actions as intake_actions
from screening.models import AIResult, Case, Image, ModelVersion, Study
from tests.factories import png_bytes, probabilities


def recorder(sent: list[tuple[int, int]]) -> Callable[[int, int], bool]:
    """A ``send`` for the sweep that records each job and says it was sent."""

    def send(study_id: int, version_id: int) -> bool:
        sent.append((study_id, version_id))
        return True

    return send


def upload(admin, accession: str = "ACC-1", seeds=(1, 2)) -> Study:
    files = [SimpleUploadedFile(f"L_CC_{s}.png", png_bytes(seed=s, size=256)) for s in seeds]
    spec = intake_actions.StudySpec(accession_number=accession, patient_pseudonym=f"P-{accession}")
    return intake_actions.upload_study(admin, spec, files).study


def test_an_upload_queues_one_job_per_study_after_commit(
    admin_user, active_model, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        study = upload(admin_user)
    results = AIResult.objects.filter(image__study=study)
    assert results.count() == 2 and set(results.values_list("status", flat=True)) == {
        AIStatus.QUEUED
    }
    assert len(callbacks) == 1
    assert study.case is not None
    assert study.case.status == CaseStatus.AWAITING_AI


def test_scoring_a_study_stores_scores_heatmaps_and_the_max_case_score(admin_user, active_model):
    study = upload(admin_user)
    outcome = inference.score_study(study.pk, active_model.pk, task_id="t1")
    assert (outcome.scored, outcome.failed) == (2, 0)
    images = AIResult.objects.filter(image__study=study)
    assert all(r.status == AIStatus.DONE for r in images)
    assert all(0 <= p <= 1 for p in probabilities(images))
    assert all(r.heatmap.name and r.heatmap.storage.exists(r.heatmap.name) for r in images)
    assert {"decode", "preprocess", "predict", "gradcam", "write"} <= set(images[0].timings)
    assert study.case_id is not None
    case = Case.objects.get(pk=study.case_id)
    assert case.status == CaseStatus.READY
    assert case.ai_score == pytest.approx(max(probabilities(images)))
    assert case.ai_result is not None
    assert case.ai_result.model_version == active_model and case.ai_result.image is None


def test_running_a_study_twice_writes_each_result_once(admin_user, active_model):
    study = upload(admin_user)
    inference.score_study(study.pk, active_model.pk, task_id="t1")
    before = list(AIResult.objects.order_by("pk").values("pk", "probability", "finished_at"))
    again = inference.score_study(study.pk, active_model.pk, task_id="t2")
    assert (again.scored, again.skipped) == (0, 2)
    assert (
        list(AIResult.objects.order_by("pk").values("pk", "probability", "finished_at")) == before
    )


def test_a_redelivered_message_takes_over_its_own_running_rows_only(admin_user, active_model):
    study = upload(admin_user)
    AIResult.objects.filter(image__study=study).update(
        status=AIStatus.RUNNING, task_id="dead", attempts=1
    )
    assert inference.score_study(study.pk, active_model.pk, task_id="other").skipped == 2
    outcome = inference.score_study(study.pk, active_model.pk, task_id="dead")
    assert outcome.scored == 2
    assert set(AIResult.objects.filter(image__study=study).values_list("attempts", flat=True)) == {
        2
    }


def test_a_corrupt_image_fails_alone_and_fails_the_case_score(admin_user, active_model):
    study = upload(admin_user, seeds=(1, 2, 3))
    broken = study.images.first()
    assert broken is not None
    with open(broken.file.path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n garbage")
    outcome = inference.score_study(study.pk, active_model.pk)
    assert (outcome.scored, outcome.failed) == (2, 1)
    failed = AIResult.objects.get(image=broken)
    assert failed.status == AIStatus.FAILED and "cannot be decoded" in failed.error
    assert study.case_id is not None
    case = Case.objects.get(pk=study.case_id)
    assert case.ai_result is not None
    assert case.ai_result.status == AIStatus.FAILED and case.risk_band == RiskBand.FAILED
    assert case.status == CaseStatus.READY  # readable without AI


def test_a_stub_image_is_not_scored_but_failed_with_the_reason(admin_user, active_model, settings):
    settings.AI_MIN_IMAGE_SIDE = 300  # the uploaded test films are 208 x 256
    study = upload(admin_user, seeds=(1,))
    outcome = inference.score_study(study.pk, active_model.pk)
    result = AIResult.objects.get(image__study=study)
    assert outcome.failed == 1 and result.probability is None
    assert "208×256 pixels: too small to score (at least 300 each side)" in result.error


def test_a_poison_image_stops_after_the_attempt_cap(admin_user, active_model):
    study = upload(admin_user, seeds=(1,))
    AIResult.objects.filter(image__study=study).update(attempts=inference.MAX_ATTEMPTS)
    outcome = inference.score_study(study.pk, active_model.pk)
    result = AIResult.objects.get(image__study=study)
    assert outcome.failed == 1 and result.status == AIStatus.FAILED and "Gave up" in result.error


def test_a_missing_artifact_fails_the_results_with_a_message(
    admin_user, active_model, tiny_artifact, tmp_path
):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    ModelVersion.objects.filter(pk=active_model.pk).update(artifact_path=str(copy))
    (copy / "model.keras").unlink()
    inference._predictors.clear()
    study = upload(admin_user, seeds=(1,))
    inference.score_study(study.pk, active_model.pk)
    result = AIResult.objects.get(image__study=study)
    assert result.status == AIStatus.FAILED and "Model artifact unusable" in result.error


def test_a_tampered_artifact_is_refused(admin_user, active_model, tiny_artifact, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    with open(copy / "model.keras", "ab") as handle:
        handle.write(b"tamper")
    ModelVersion.objects.filter(pk=active_model.pk).update(artifact_path=str(copy))
    inference._predictors.clear()
    study = upload(admin_user, seeds=(1,))
    inference.score_study(study.pk, active_model.pk)
    assert "checksum mismatch" in AIResult.objects.get(image__study=study).error


def test_the_sweep_resends_undispatched_and_stranded_work(admin_user, active_model, settings):
    never_sent = upload(admin_user, "A", seeds=(1,))
    stranded = upload(admin_user, "B", seeds=(2,))
    long_ago = timezone.now() - timedelta(hours=2)
    AIResult.objects.filter(image__study=stranded).update(
        status=AIStatus.RUNNING, started_at=long_ago, dispatched_at=long_ago, task_id="dead"
    )
    sent: list[tuple[int, int]] = []
    assert inference.sweep(send=recorder(sent)) == 2
    assert sorted(sent) == sorted(
        [(never_sent.pk, active_model.pk), (stranded.pk, active_model.pk)]
    )
    assert AIResult.objects.get(image__study=stranded).status == AIStatus.QUEUED


def test_activating_a_new_version_rescores_open_cases_and_keeps_old_results(
    admin_user, active_model, tiny_artifact, tmp_path
):
    study = upload(admin_user, seeds=(1,))
    inference.score_study(study.pk, active_model.pk)
    old = AIResult.objects.get(image__study=study, model_version=active_model)
    newer = ModelVersion.objects.create(
        architecture=active_model.architecture,
        version="0.0.2",
        artifact_path=active_model.artifact_path,
        checksum=active_model.checksum,
        input_size=64,
        threshold=0.3,
    )
    ai_actions.activate_model_version(admin_user, newer.pk)
    assert inference.rescore_open_cases(newer.pk) == 1
    inference.score_study(study.pk, newer.pk)
    assert study.case_id is not None
    case = Case.objects.get(pk=study.case_id)
    assert case.ai_result is not None
    assert case.ai_result.model_version == newer
    assert AIResult.objects.get(pk=old.pk).probability == old.probability
    assert AIResult.objects.filter(image__study=study).count() == 2


def test_an_admin_retry_gives_a_failed_result_fresh_attempts(
    admin_user, active_model, django_capture_on_commit_callbacks
):
    study = upload(admin_user, seeds=(1,))
    AIResult.objects.filter(image__study=study).update(
        status=AIStatus.FAILED, attempts=3, error="x"
    )
    result = AIResult.objects.get(image__study=study)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ai_actions.retry_ai_result(admin_user, result.pk)
    result.refresh_from_db()
    assert (result.status, result.attempts, len(callbacks)) == (AIStatus.QUEUED, 0, 1)
    assert Image.objects.count() == 1


def test_running_work_no_live_worker_holds_is_queued_again_at_once(admin_user, active_model):
    """Heartbeat rule: a worker that is gone no longer reports its job, so its results
    come back within one sweep, not after the hard time limit."""
    orphaned = upload(admin_user, "A", seeds=(1,))
    alive = upload(admin_user, "B", seeds=(2,))
    a_minute_ago = timezone.now() - timedelta(seconds=60)
    AIResult.objects.filter(image__study=orphaned).update(
        status=AIStatus.RUNNING, started_at=a_minute_ago, dispatched_at=a_minute_ago, task_id="gone"
    )
    AIResult.objects.filter(image__study=alive).update(
        status=AIStatus.RUNNING, started_at=a_minute_ago, dispatched_at=a_minute_ago, task_id="busy"
    )
    sent: list[tuple[int, int]] = []
    inference.sweep(send=recorder(sent), running={"busy"})
    assert sent == [(orphaned.pk, active_model.pk)]
    assert AIResult.objects.get(image__study=orphaned).status == AIStatus.QUEUED
    assert AIResult.objects.get(image__study=alive).status == AIStatus.RUNNING


def test_without_a_heartbeat_answer_recent_running_work_is_left_alone(admin_user, active_model):
    study = upload(admin_user, seeds=(1,))
    a_minute_ago = timezone.now() - timedelta(seconds=60)
    AIResult.objects.filter(image__study=study).update(
        status=AIStatus.RUNNING, started_at=a_minute_ago, dispatched_at=a_minute_ago, task_id="t"
    )
    assert inference.sweep(send=lambda s, v: True, running=None) == 0
    assert AIResult.objects.get(image__study=study).status == AIStatus.RUNNING


def test_sent_work_the_broker_no_longer_holds_is_sent_again_after_a_short_grace(
    admin_user, active_model, settings
):
    """Issue 22: a Redis without persistence restarted and forgot the message. What the
    broker still holds, what was sent within the grace, and what a worker took are left."""
    lost = upload(admin_user, "A", seeds=(1,))
    waiting = upload(admin_user, "B", seeds=(2,))
    just_sent = upload(admin_user, "C", seeds=(3,))
    a_minute_ago = timezone.now() - timedelta(seconds=60)
    AIResult.objects.filter(image__study__in=[lost, waiting]).update(dispatched_at=a_minute_ago)
    AIResult.objects.filter(image__study=just_sent).update(dispatched_at=timezone.now())
    settings.AI_LOST_MESSAGE_SECONDS = 30
    sent: list[tuple[int, int]] = []
    in_broker = {(waiting.pk, active_model.pk)}
    inference.sweep(send=recorder(sent), in_broker=in_broker)
    assert sent == [(lost.pk, active_model.pk)]
    sent.clear()
    inference.sweep(send=recorder(sent), in_broker=None)
    assert sent == []  # the broker could not be read: nothing is taken as lost


def test_a_job_whose_result_was_taken_back_writes_nothing(admin_user, active_model):
    study = upload(admin_user, seeds=(1,))
    outcome = inference.StudyOutcome()
    [mine] = inference.claim(study.pk, active_model.pk, "first-job", outcome)
    AIResult.objects.filter(pk=mine.pk).update(task_id="second-job")  # re-queued and re-claimed
    inference._score_claimed(inference.predictor_for(active_model), [mine], outcome)
    result = AIResult.objects.get(pk=mine.pk)
    assert (result.status, result.probability, bool(result.heatmap)) == (
        AIStatus.RUNNING,
        None,
        False,
    )


def test_a_blank_film_stored_before_upload_refused_it_fails_instead_of_scoring(
    admin_user, active_model
):
    """A reassuring score on a film with nothing on it is the worst answer: fail it."""
    import io

    import numpy as np
    from PIL import Image as PILImage

    study = upload(admin_user, seeds=(1,))
    image = Image.objects.get(study=study)
    blank = io.BytesIO()
    PILImage.fromarray(np.full((256, 208), 12, np.uint8)).save(blank, format="PNG")
    with image.file.open("wb") as handle:
        handle.write(blank.getvalue())
    inference.score_study(study.pk, active_model.pk)
    result = AIResult.objects.get(image=image)
    assert (result.status, result.probability) == (AIStatus.FAILED, None)
    assert "blank" in result.error
