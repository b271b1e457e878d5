"""Silent trial: a second model version scores every new study and no reader sees any of it.

Both versions are real Keras artifacts scored through the worker's own code path
(``inference.score_study``, what the Celery task runs); the shadow one's output is pushed
high so its scores cannot be mistaken for the active one's. Every page and endpoint a
radiologist or arbitrator can open is walked (the role matrix's own list) and must show
no trace of the shadow version: its name, its scores, its result ids or its heatmaps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from pydicom.uid import generate_uid
from rest_framework.test import APIClient

from screening.ai import actions as ai_actions
from screening.ai import inference
from screening.ai import queries as ai_queries
from screening.choices import AIStatus, AuditAction, CaseStatus, SilentTrial
from screening.errors import Conflict
from screening.intake import actions as intake_actions
from screening.interop.stored_dicom import StoredInstance
from screening.models import AIResult, AuditEvent, Case, Image, ModelVersion, Study
from screening.roles import Role
from tests.dicom_files import dicom_bytes
from tests.factories import UserFactory, case_with_images, probabilities, validated_evidence
from tests.ml.conftest import save_tiny_artifact
from tests.screening import test_role_matrix as matrix

SHADOW_VERSION = "9.9.9-silent"


@pytest.fixture(scope="session")
def shadow_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny CNN whose output bias is pushed up: its scores sit near 0.95, far from
    the untrained active model's, so a leaked number is recognisable."""
    import keras

    from ml.config import ModelConfig
    from ml.models import OUTPUT_LAYER, build_model

    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig("custom_cnn", input_size=64))
    model.get_layer(OUTPUT_LAYER).bias.assign([3.0])
    out = tmp_path_factory.mktemp("shadow-artifact")
    return save_tiny_artifact(
        model, out, SHADOW_VERSION, "none (untrained test model, shifted output)"
    )


def validated(version: ModelVersion) -> ModelVersion:
    """Evidence that passes every gate: a shown version's heatmaps are then served, so a
    refused shadow heatmap is refused for being a shadow's, not for its evidence."""
    ModelVersion.objects.filter(pk=version.pk).update(evidence=validated_evidence(0.5))
    return ModelVersion.objects.get(pk=version.pk)


@pytest.fixture
def active(active_model):
    return validated(active_model)


@pytest.fixture
def shadow(db, shadow_artifact):
    version = validated(ai_actions.register_model_version(None, str(shadow_artifact)))
    return ai_actions.start_silent_trial(None, version.pk)


@pytest.fixture
def readers(radiologist):
    return [radiologist, UserFactory(username="arbitrator", role=Role.ARBITRATOR)]


def upload_dicom(admin, accession: str = "ST-1") -> Study:
    study_uid = generate_uid()
    files = [
        SimpleUploadedFile(
            f"{side}.dcm",
            dicom_bytes(
                seed=seed, laterality=side, study_uid=study_uid, accession=accession, size=128
            ),
            content_type="application/dicom",
        )
        for seed, side in ((3, "L"), (4, "R"))
    ]
    spec = intake_actions.StudySpec(accession_number=accession, patient_pseudonym=f"P-{accession}")
    return intake_actions.upload_study(admin, spec, files).study


def score(study: Study, version: ModelVersion) -> None:
    """What the Celery task does for one (study, version) job."""
    outcome = inference.score_study(study.pk, version.pk, task_id=f"job-{version.pk}")
    assert outcome.scored == study.images.count() and outcome.failed == 0


def case_of(study: Study) -> Case:
    assert study.case_id is not None
    return Case.objects.select_related("ai_result").get(pk=study.case_id)


def reader_fields(case: Case) -> tuple:
    return (
        case.ai_result_id,
        case.ai_score,
        case.triage_priority,
        case.risk_band,
        case.status,
    )


# --- Queueing and the worker --------------------------------------------------------


def test_an_upload_queues_the_active_version_and_the_trial_behind_it(
    admin_user, active, shadow, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        study = upload_dicom(admin_user)
    rows = AIResult.for_images.filter(image__study=study)
    assert sorted(rows.values_list("model_version_id", flat=True)) == sorted(
        [active.pk, active.pk, shadow.pk, shadow.pk]
    )
    assert set(rows.values_list("status", flat=True)) == {AIStatus.QUEUED}
    assert len(callbacks) == 2  # one job per (study, version), sent after commit


def test_a_trial_result_never_becomes_what_readers_are_shown(admin_user, active, shadow):
    study = upload_dicom(admin_user)
    before = reader_fields(case_of(study))

    score(study, shadow)  # the trial finishes first: the case must not move at all
    case = case_of(study)
    assert reader_fields(case) == before
    assert case.ai_result is None and case.status == CaseStatus.AWAITING_AI
    trial = AIResult.for_cases.get(case=case, model_version=shadow)
    assert trial.status == AIStatus.DONE and trial.probability is not None
    assert trial.probability > 0.9

    score(study, active)
    case = case_of(study)
    assert case.ai_result is not None
    assert case.ai_result.model_version_id == active.pk
    assert case.ai_score == pytest.approx(
        max(probabilities(AIResult.for_images.filter(case=case, model_version=active)))
    )
    assert case.status == CaseStatus.READY
    shown = reader_fields(case)

    AIResult.objects.filter(model_version=shadow).update(status=AIStatus.QUEUED)
    score(study, shadow)  # a trial result finishing later changes nothing either
    assert reader_fields(case_of(study)) == shown


def test_alone_a_trial_leaves_the_case_ai_pending_for_readers(admin_user, shadow, radiologist):
    assert not ModelVersion.objects.filter(is_active=True).exists()
    study = upload_dicom(admin_user)
    before = reader_fields(case_of(study))
    client = Client()
    client.force_login(radiologist)
    status_url = reverse("case-ai-status", args=[study.case_id])
    worklist_url = reverse("worklist-ai-status") + f"?ids={study.case_id}"
    pending: dict[str, object] = {
        "case": study.case_id,
        "status": CaseStatus.AWAITING_AI,
        "ai_status": "pending",
        "images": {},
    }

    assert client.get(status_url).json() == pending  # queued for the trial: not said
    AIResult.objects.filter(model_version=shadow).update(status=AIStatus.RUNNING)
    assert client.get(status_url).json() == pending  # running for the trial: not said
    AIResult.objects.filter(model_version=shadow).update(status=AIStatus.QUEUED)
    score(study, shadow)
    assert client.get(status_url).json() == pending
    assert client.get(worklist_url).json() == {
        str(study.case_id): f"{CaseStatus.AWAITING_AI}:pending"
    }
    case = case_of(study)
    assert reader_fields(case) == before and (case.ai_result, case.ai_score) == (None, None)
    trial = AIResult.for_cases.get(case=case, model_version=shadow)
    assert trial.probability is not None and trial.probability > 0.9


# --- Every reader-facing page and endpoint ------------------------------------------


@pytest.fixture
def scored_by_both(admin_user, active, shadow):
    """One DICOM study scored by both versions, the trial first; the role matrix's objects."""
    study = upload_dicom(admin_user)
    score(study, shadow)
    score(study, active)
    case = case_of(study)
    image = study.images.order_by("pk").first()
    assert image is not None
    shown = AIResult.for_images.get(image=image, model_version=active)
    return {
        "case": case,
        "image": image,
        "heatmap": shown,
        "dicom_study": study,
        "dicom_result": shown,
        "model": shadow,
        "admin": admin_user,
        "wado": wado_kwargs(study, image),
    }


def wado_kwargs(study: Study, image: Image) -> dict[str, dict[str, str]]:
    instance = StoredInstance.of(image)
    uids = {"study": study.study_instance_uid}
    series = {**uids, "series": instance.series_uid}
    one = {**series, "instance": image.sop_instance_uid}
    return {
        "wado-study": uids,
        "wado-study-metadata": uids,
        "wado-series": series,
        "wado-series-metadata": series,
        "wado-instance": one,
        "wado-instance-metadata": one,
        "wado-frames": {**one, "frames": "1"},
    }


def shadow_traces(shadow: ModelVersion) -> list[re.Pattern[str]]:
    """What would give the trial away on a page or in an answer. A score is a trace where it
    starts a number, not inside another one: an SR's time of day (``TM 040630.956091``) may
    hold the digits of a score (0.956) by chance, and that gives nothing away."""
    rows = AIResult.objects.filter(model_version=shadow)
    texts = [SHADOW_VERSION, shadow.checksum[:12]]
    scores = []
    for row in rows:
        texts.append(f"/ai-results/{row.pk}/")
        scores += [repr(row.probability), f"{row.probability:.3f}"]
        if row.heatmap.name:
            texts.append(row.heatmap.name)
    return [re.compile(re.escape(text)) for text in texts] + [
        re.compile(rf"(?<![0-9]){re.escape(score)}") for score in scores
    ]


def test_a_score_inside_another_number_is_no_trace() -> None:
    trace = re.compile(rf"(?<![0-9]){re.escape('0.956')}")
    assert trace.search("TM 040630.956091") is None
    assert trace.search("<td>0.956</td>") and trace.search('"probability": 0.95612')


def reader_urls(objects: dict) -> list[tuple[str, str]]:
    """Every GET in the role matrix a radiologist or an arbitrator may open."""
    return [
        (name, url(objects))
        for name, method, url, expected in matrix.MATRIX
        if method == "get"
        and (expected[matrix.RAD] == 200 or expected[matrix.ARB] == 200)
        and "read report" not in name  # the readers' report of a closed case: no AI in it
    ]


def test_no_reader_page_or_endpoint_shows_the_trial(scored_by_both, readers, shadow, active):
    urls = reader_urls(scored_by_both)
    case = scored_by_both["case"]
    # A second study only the trial has scored yet: the active version's job still waits.
    waiting = upload_dicom(scored_by_both["admin"], "ST-WAIT")
    score(waiting, shadow)
    traces = shadow_traces(shadow)
    assert len(traces) > 12  # the trial did score both studies: there is something to leak
    urls += [
        ("case api list", "/api/cases/"),
        ("case api detail", f"/api/cases/{case.pk}/"),
        ("waiting case page", reverse("case-detail", args=[waiting.case_id])),
        ("waiting case ai panel", reverse("case-ai-panel", args=[waiting.case_id])),
        ("waiting case ai status", reverse("case-ai-status", args=[waiting.case_id])),
        ("waiting case api", f"/api/cases/{waiting.case_id}/"),
        ("waiting worklist status", reverse("worklist-ai-status") + f"?ids={waiting.case_id}"),
        ("sr", reverse("study-ai-report", args=[scored_by_both["dicom_study"].pk])),
        ("api sr", reverse("api-study-ai-report", args=[scored_by_both["dicom_study"].pk])),
    ]
    for reader in readers:
        client = Client()
        client.force_login(reader)
        for name, url in urls:
            response = client.get(url)
            assert response.status_code in (200, 302), (reader.username, name, url)
            body = content_of(response)
            text = body.decode("latin-1")
            for trace in traces:
                assert trace.search(text) is None, (reader.username, name, trace.pattern)
            if "json" in response.get("Content-Type", ""):
                assert_no_shadow_version(json.loads(body), shadow.pk, (reader.username, name))


def content_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def assert_no_shadow_version(body: object, shadow_id: int, where: tuple) -> None:
    if isinstance(body, dict):
        assert body.get("model_version") != shadow_id, where
        for value in body.values():
            assert_no_shadow_version(value, shadow_id, where)
    elif isinstance(body, list):
        for value in body:
            assert_no_shadow_version(value, shadow_id, where)


def test_a_trial_heatmap_is_refused_to_readers_and_served_to_auditors(
    scored_by_both, readers, auditor, shadow
):
    trial_rows = list(AIResult.for_images.filter(model_version=shadow))
    assert trial_rows and all(row.shows_heatmap for row in trial_rows)
    shown = scored_by_both["heatmap"]
    for reader in readers:
        client, api = Client(), APIClient()
        client.force_login(reader)
        api.force_authenticate(reader)
        assert client.get(reverse("heatmap-file", args=[shown.pk])).status_code == 200
        for row in trial_rows:
            for url in (
                reverse("heatmap-file", args=[row.pk]),
                reverse("heatmap-dicom", args=[row.pk]),
            ):
                assert client.get(url).status_code == 404, (reader.username, url)
            for url in (
                reverse("api-heatmap-file", args=[row.pk]),
                reverse("api-heatmap-dicom", args=[row.pk]),
            ):
                assert api.get(url).status_code == 404, (reader.username, url)
    client = Client()
    client.force_login(auditor)
    for row in trial_rows:
        response = client.get(reverse("heatmap-file", args=[row.pk]))
        assert response.status_code == 200
        assert content_of(response).startswith(b"\x89PNG")


def test_auditors_list_the_trial_scores_and_admins_see_it_running(
    scored_by_both, auditor, admin_user, shadow
):
    case = scored_by_both["case"]
    expected = max(probabilities(AIResult.for_images.filter(case=case, model_version=shadow)))
    api = APIClient()
    api.force_authenticate(auditor)
    body = api.get(reverse("api-model-version-scores", args=[shadow.pk])).json()
    assert [(r["case"], r["model_version"], r["status"]) for r in body["results"]] == [
        (case.pk, shadow.pk, AIStatus.DONE)
    ]
    assert body["results"][0]["probability"] == pytest.approx(expected)
    listed = {v["id"]: v for v in api.get(reverse("api-model-version-list")).json()["results"]}
    assert listed[shadow.pk]["silent_trial"] == SilentTrial.RUNNING
    auditor_client = Client()
    auditor_client.force_login(auditor)
    dashboard = auditor_client.get(reverse("audit-dashboard")).content.decode()
    assert SHADOW_VERSION in dashboard  # beside the active version, for auditors

    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("model-versions")).content.decode()
    assert "Silent trial" in page and "Stop silent trial" in page
    queue = client.get(reverse("ai-queue")).content.decode()
    assert "silent trial (behind the active version)" in queue


# --- Starting, stopping, switching on -----------------------------------------------


def test_an_admin_starts_and_stops_a_trial_through_the_api_audited(admin_user, active, shadow):
    api = APIClient()
    api.force_authenticate(admin_user)
    stop = reverse("api-model-version-stop-silent-trial", args=[shadow.pk])
    start = reverse("api-model-version-start-silent-trial", args=[shadow.pk])
    assert api.post(stop).json()["silent_trial"] == SilentTrial.STOPPED
    assert api.post(stop).status_code == 409
    assert api.post(start).json()["silent_trial"] == SilentTrial.RUNNING
    active_start = reverse("api-model-version-start-silent-trial", args=[active.pk])
    assert api.post(active_start).status_code == 409
    actions = list(
        AuditEvent.objects.filter(object_id=str(shadow.pk), actor=admin_user)
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert actions == [AuditAction.SILENT_TRIAL_STOPPED, AuditAction.SILENT_TRIAL_STARTED]


def test_the_command_starts_and_stops_a_trial(db, shadow_artifact):
    version = ai_actions.register_model_version(None, str(shadow_artifact))
    call_command("silent_trial", "start", str(version.pk))
    assert ModelVersion.objects.get(pk=version.pk).in_silent_trial
    call_command("silent_trial", "stop", str(version.pk))
    assert ModelVersion.objects.get(pk=version.pk).silent_trial == SilentTrial.STOPPED


def test_stopping_drops_the_waiting_work_at_once_and_scores_nothing_more(
    admin_user, active, shadow
):
    study = upload_dicom(admin_user)
    first, second = AIResult.for_images.filter(model_version=shadow).order_by("pk")
    AIResult.objects.filter(pk=first.pk).update(status=AIStatus.RUNNING, task_id="late")

    stopped = ai_actions.stop_silent_trial(admin_user, shadow.pk)

    assert not AIResult.objects.filter(pk=second.pk).exists()  # never scored
    event = AuditEvent.objects.get(action=AuditAction.SILENT_TRIAL_STOPPED)
    assert event.detail == {"dropped": 1}
    later = upload_dicom(admin_user, "ST-2")
    assert not AIResult.objects.filter(image__study=later, model_version=stopped).exists()
    # The job that held a row when the trial stopped is not scored further; the row, put
    # back in the queue (as the sweep does for a dead worker's), leaves it unscored.
    AIResult.objects.filter(pk=first.pk).update(status=AIStatus.QUEUED, task_id="")
    assert inference.score_study(study.pk, shadow.pk, task_id="late").scored == 0
    assert not AIResult.objects.filter(model_version=shadow).exists()
    assert case_of(study).ai_result is None


def test_switching_a_trial_version_on_ends_its_trial_and_shows_its_results(admin_user, shadow):
    study = upload_dicom(admin_user)
    score(study, shadow)
    assert case_of(study).ai_result is None

    version = ai_actions.activate_model_version(admin_user, shadow.pk)

    assert version.is_active and version.silent_trial == SilentTrial.NONE
    inference.rescore_open_cases(version.pk)  # what the activation fan-out task runs
    inference.score_study(study.pk, version.pk, task_id="after")
    case = case_of(study)
    assert case.ai_result is not None and case.ai_score is not None
    assert case.ai_result.model_version_id == version.pk and case.ai_score > 0.9
    with pytest.raises(Conflict):
        ai_actions.start_silent_trial(admin_user, version.pk)


# --- Property: any order of job events ----------------------------------------------

EVENTS = settings(
    max_examples=40,
    stateful_step_count=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def test_whatever_order_jobs_finish_in_readers_see_only_the_active_version(
    radiologist, active, shadow
):
    """Random claims, scores and failures of both versions' image jobs, as the worker writes
    them, with the trial stopped and started between: after every step the case shows what
    the active version alone would give, and the reader's API answer and live status carry
    nothing of the trial."""
    api = APIClient()
    api.force_authenticate(radiologist)
    versions = {"active": active, "trial": shadow}

    class JobEvents(RuleBasedStateMachine):
        @initialize()
        def a_case_with_two_films(self) -> None:
            # Each example starts alike: the trial running, a fresh case queued for both.
            ModelVersion.objects.filter(pk=shadow.pk).update(silent_trial=SilentTrial.RUNNING)
            self.case = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
            self.images = list(Image.objects.filter(study__case=self.case).order_by("pk"))
            for version in versions.values():
                for image in self.images:
                    AIResult.objects.create(image=image, case=self.case, model_version=version)

        @rule(
            which=st.sampled_from(["active", "trial"]),
            film=st.integers(0, 1),
            status=st.sampled_from([AIStatus.RUNNING, AIStatus.DONE, AIStatus.FAILED]),
            # k / 9973: a long decimal that would stand out if it were leaked
            probability=st.integers(1, 9972).map(lambda k: k / 9973),
        )
        def a_job_event(self, which: str, film: int, status: str, probability: float) -> None:
            version = versions[which]
            row = AIResult.objects.filter(image=self.images[film], model_version=version).exclude(
                status__in=[AIStatus.DONE, AIStatus.FAILED]
            )
            done = status == AIStatus.DONE
            row.update(status=status, probability=probability if done else None)
            inference.aggregate_case(self.case.pk, version.pk)

        @rule(running=st.booleans())
        def the_admin_stops_or_starts_the_trial(self, running: bool) -> None:
            trial = ModelVersion.objects.get(pk=shadow.pk)
            if running and not trial.in_silent_trial:
                ai_actions.start_silent_trial(None, shadow.pk)
            elif not running and trial.in_silent_trial:
                ai_actions.stop_silent_trial(None, shadow.pk)

        @invariant()
        def readers_see_the_active_version_alone(self) -> None:
            if not hasattr(self, "case"):
                return
            case = Case.objects.select_related("ai_result").get(pk=self.case.pk)
            mine = AIResult.for_images.filter(case=case, model_version=active)
            statuses = set(mine.values_list("status", flat=True))
            finished = statuses <= {AIStatus.DONE, AIStatus.FAILED}
            if finished:
                assert case.ai_result is not None
                assert case.ai_result.model_version_id == active.pk
            else:
                assert case.ai_result is None and case.status == CaseStatus.AWAITING_AI
                waiting = "running" if AIStatus.RUNNING in statuses else "queued"
                assert ai_queries.case_ai_states([case])[case.pk] == waiting
            body = api.get(f"/api/cases/{case.pk}/").json()
            assert_no_shadow_version(body, shadow.pk, ("api", case.pk))
            trial_scores = AIResult.objects.filter(model_version=shadow, probability__isnull=False)
            text = json.dumps(body)
            for p in trial_scores.values_list("probability", flat=True):
                shown = AIResult.objects.filter(
                    model_version=active, case=case, probability=p
                ).exists()
                assert shown or repr(p) not in text

    run_state_machine_as_test(JobEvents, settings=EVENTS)
