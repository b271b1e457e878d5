"""Live AI status for readers and the admins' AI queue page, from real result rows."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from screening.ai import queries as ai_queries
from screening.choices import AIStatus, AuditAction, CaseStatus
from screening.models import AIResult, AuditEvent
from tests.factories import ModelVersionFactory, case_with_images


def in_flight(case, version, *statuses: str) -> list[AIResult]:
    """Per-image results of ``case`` for ``version`` with the given statuses, in image order."""
    images = list(case.studies.get().images.order_by("pk"))
    return [
        AIResult.objects.create(image=image, case=case, model_version=version, status=status)
        for image, status in zip(images, statuses, strict=True)
    ]


def test_states_show_work_in_flight_before_a_case_result_exists(db):
    version = ModelVersionFactory(is_active=True)
    nothing = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
    queued = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
    running = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
    scored = case_with_images(images=1, score=0.8)
    in_flight(queued, version, AIStatus.QUEUED, AIStatus.QUEUED)
    in_flight(running, version, AIStatus.DONE, AIStatus.RUNNING)
    states = ai_queries.case_ai_states([nothing, queued, running, scored])
    assert states == {
        nothing.pk: "pending",
        queued.pk: "queued",
        running.pk: "running",
        scored.pk: "done",
    }


def test_the_case_status_endpoint_follows_a_case_from_queued_to_done(client, radiologist):
    version = ModelVersionFactory(is_active=True)
    case = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
    first, second = in_flight(case, version, AIStatus.QUEUED, AIStatus.QUEUED)
    client.force_login(radiologist)
    url = reverse("case-ai-status", args=[case.pk])

    body = client.get(url).json()
    assert body["ai_status"] == "queued" and body["status"] == CaseStatus.AWAITING_AI
    assert body["images"] == {str(first.image_id): "queued", str(second.image_id): "queued"}

    AIResult.objects.filter(pk=first.pk).update(status=AIStatus.RUNNING)
    assert client.get(url).json()["ai_status"] == "running"


def test_the_worklist_status_endpoint_answers_for_the_ids_asked(client, radiologist):
    version = ModelVersionFactory(is_active=True)
    waiting = case_with_images(images=1, status=CaseStatus.AWAITING_AI)
    in_flight(waiting, version, AIStatus.RUNNING)
    scored = case_with_images(images=1, score=0.3)
    client.force_login(radiologist)
    url = reverse("worklist-ai-status")
    body = client.get(f"{url}?ids={waiting.pk},{scored.pk}").json()
    assert body == {
        str(waiting.pk): f"{CaseStatus.AWAITING_AI}:running",
        str(scored.pk): f"{scored.status}:done",
    }
    assert client.get(f"{url}?ids=1,x").status_code == 400


def test_the_worklist_row_carries_the_state_the_poller_compares(client, radiologist):
    version = ModelVersionFactory(is_active=True)
    case = case_with_images(images=1, status=CaseStatus.AWAITING_AI)
    in_flight(case, version, AIStatus.QUEUED)
    client.force_login(radiologist)
    html = client.get(reverse("worklist")).content.decode()
    assert f'data-state="{CaseStatus.AWAITING_AI}:queued"' in html
    assert "AI queued" in html


def test_the_queue_page_counts_work_and_lists_failures(client, admin_user):
    version = ModelVersionFactory(is_active=True)
    case = case_with_images(images=3, status=CaseStatus.AWAITING_AI)
    queued, failed, done = in_flight(case, version, AIStatus.QUEUED, AIStatus.FAILED, AIStatus.DONE)
    AIResult.objects.filter(pk=failed.pk).update(error="The stored image cannot be decoded.")
    AIResult.objects.filter(pk=done.pk).update(
        probability=0.2,
        finished_at=timezone.now() - timedelta(minutes=1),
        timings={"predict": 0.25, "decode": 0.01},
    )
    client.force_login(admin_user)
    response = client.get(reverse("ai-queue"))
    assert response.status_code == 200
    counts = response.context["counts"]
    assert (counts["queued"], counts["failed"], counts["done"], counts["last_5_min"]) == (
        1,
        1,
        1,
        1,
    )
    assert response.context["seconds_per_image"] == 0.25
    html = response.content.decode()
    assert "The stored image cannot be decoded." in html
    assert reverse("ai-retry", args=[failed.pk]) in html


def test_retry_requeues_a_failed_result_with_fresh_attempts_and_an_audit_event(
    client, admin_user, django_capture_on_commit_callbacks
):
    version = ModelVersionFactory(is_active=True)
    case = case_with_images(images=1, status=CaseStatus.AWAITING_AI)
    (failed,) = in_flight(case, version, AIStatus.FAILED)
    AIResult.objects.filter(pk=failed.pk).update(attempts=3, error="Gave up after 3 attempts")
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("ai-retry", args=[failed.pk]))
    assert response.status_code == 302
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error) == (AIStatus.QUEUED, 0, "")
    assert len(callbacks) == 1  # the job is sent once the retry commits
    assert AuditEvent.objects.filter(actor=admin_user, action=AuditAction.AI_RETRIED).exists()


def test_retry_of_a_result_that_did_not_fail_changes_nothing(client, admin_user):
    case = case_with_images(images=1, score=0.6)
    done = AIResult.objects.get(case=case, image__isnull=False)
    client.force_login(admin_user)
    response = client.post(reverse("ai-retry", args=[done.pk]), follow=True)
    assert "Only a failed result can be retried." in response.content.decode()
    done.refresh_from_db()
    assert done.status == AIStatus.DONE
