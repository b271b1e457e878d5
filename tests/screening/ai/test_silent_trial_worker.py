"""A silent trial never delays what readers wait for: with a real Redis and a real Celery
worker, every job of the active version runs before any job of the trial."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from screening.ai import actions as ai_actions
from screening.choices import AIStatus
from screening.intake import actions as intake_actions
from screening.models import AIResult, ModelVersion
from tests.factories import png_bytes, present
from tests.screening.ai.test_silent_trial import shadow_artifact  # noqa: F401  (session fixture)
from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_the_active_versions_jobs_all_run_before_the_trials(
    redis_broker,
    settings,
    tmp_path,
    admin_user,
    active_model,
    shadow_artifact,  # noqa: F811
):
    settings.MEDIA_ROOT = tmp_path / "media"
    trial = ai_actions.register_model_version(None, str(shadow_artifact))
    trial = ai_actions.start_silent_trial(admin_user, trial.pk)
    # Three uploads while no worker runs: each sends the active job and the trial's, so
    # without priorities the first study's trial job would wait in front of the next
    # studies' active jobs.
    for n in range(3):
        files = [SimpleUploadedFile(f"L_CC_{n}.png", png_bytes(seed=n, size=256))]
        spec = intake_actions.StudySpec(accession_number=f"PRI-{n}", patient_pseudonym=f"P-{n}")
        intake_actions.upload_study(admin_user, spec, files)
    rows = AIResult.for_images.all()
    assert rows.filter(status=AIStatus.QUEUED, dispatched_at__isnull=False).count() == 6

    worker = Worker(
        redis_broker.url, settings.MEDIA_ROOT, tmp_path / "worker.log", {}, queues="inference"
    )
    try:
        wait_for(
            lambda: rows.filter(status=AIStatus.DONE).count() == 6,
            240,
            f"every job to run; worker log:\n{worker.log.read_text()[-2000:]}",
        )
    finally:
        worker.stop()
    finished = rows.filter(model_version=active_model).values_list("finished_at", flat=True)
    started = rows.filter(model_version=trial).values_list("started_at", flat=True)
    active_last = max(present(at) for at in finished)
    trial_first = min(present(at) for at in started)
    assert active_last <= trial_first
    assert ModelVersion.objects.get(pk=trial.pk).in_silent_trial
