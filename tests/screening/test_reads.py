"""Double reading: first, second and arbitration reads, overrides, and conflicts."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from screening import actions
from screening.actions import Conflict, DomainError, ReadInput
from screening.choices import AuditAction, CaseStatus, Decision, ReadKind
from screening.models import AuditEvent, Read
from tests.conftest import requires_postgres
from tests.factories import UserFactory, case_with_images

RECALL = ReadInput(decision=Decision.RECALL, birads=4, reason="Spiculated mass, left upper outer")
NO_RECALL = ReadInput(decision=Decision.NO_RECALL, birads=1)


def test_accepting_a_high_risk_ai_records_agreement(radiologist):  # type: ignore[no-untyped-def]
    case = case_with_images(score=0.9)
    read = actions.submit_read(radiologist, case.pk, ReadInput(decision=Decision.RECALL, birads=0))
    case.refresh_from_db()
    assert (read.kind, read.agrees_with_ai, case.status) == (
        ReadKind.FIRST,
        True,
        CaseStatus.FIRST_READ_DONE,
    )
    assert read.ai_result == case.ai_result


def test_overriding_the_ai_needs_a_reason(radiologist):  # type: ignore[no-untyped-def]
    case = case_with_images(score=0.9)
    with pytest.raises(DomainError, match="reason is required"):
        actions.submit_read(radiologist, case.pk, NO_RECALL)
    assert not Read.objects.exists()


def test_an_override_with_a_reason_is_recorded_as_disagreement(radiologist):  # type: ignore[no-untyped-def]
    case = case_with_images(score=0.1)
    read = actions.submit_read(radiologist, case.pk, RECALL)
    assert read.agrees_with_ai is False
    event = AuditEvent.objects.get(action=AuditAction.READ_RECORDED)
    assert event.detail["overrode_ai"] is True


def test_a_read_without_ai_has_no_agreement_flag(radiologist):  # type: ignore[no-untyped-def]
    case = case_with_images(status=CaseStatus.AWAITING_AI)
    read = actions.submit_read(radiologist, case.pk, NO_RECALL)
    assert read.agrees_with_ai is None and read.ai_result is None


@pytest.mark.parametrize(("decision", "birads"), [(Decision.NO_RECALL, 4), (Decision.RECALL, 1)])
def test_birads_must_fit_the_decision(radiologist, decision, birads):  # type: ignore[no-untyped-def]
    case = case_with_images()
    with pytest.raises(DomainError, match="does not fit"):
        actions.submit_read(radiologist, case.pk, ReadInput(decision=decision, birads=birads))


def test_the_first_reader_cannot_give_the_second_read(radiologist):  # type: ignore[no-untyped-def]
    case = case_with_images()
    actions.submit_read(radiologist, case.pk, NO_RECALL)
    with pytest.raises(Conflict, match="independent"):
        actions.submit_read(radiologist, case.pk, NO_RECALL)


def test_agreeing_second_read_closes_the_case(radiologist, radiologist2):  # type: ignore[no-untyped-def]
    case = case_with_images()
    actions.submit_read(radiologist, case.pk, NO_RECALL)
    read = actions.submit_read(radiologist2, case.pk, NO_RECALL)
    case.refresh_from_db()
    assert read.kind == ReadKind.SECOND
    assert (case.status, case.final_decision) == (CaseStatus.CLOSED, Decision.NO_RECALL)
    assert case.closed_at is not None


def test_disagreeing_reads_go_to_arbitration_which_decides(radiologist, radiologist2):  # type: ignore[no-untyped-def]
    case = case_with_images()
    actions.submit_read(radiologist, case.pk, NO_RECALL)
    actions.submit_read(radiologist2, case.pk, RECALL)
    case.refresh_from_db()
    assert case.status == CaseStatus.ARBITRATION
    arbiter = UserFactory(role="radiologist")
    read = actions.submit_read(arbiter, case.pk, RECALL)
    case.refresh_from_db()
    assert read.kind == ReadKind.ARBITRATION
    assert (case.status, case.final_decision) == (CaseStatus.CLOSED, Decision.RECALL)


def test_a_closed_case_takes_no_more_reads(radiologist, radiologist2):  # type: ignore[no-untyped-def]
    case = case_with_images()
    actions.submit_read(radiologist, case.pk, NO_RECALL)
    actions.submit_read(radiologist2, case.pk, NO_RECALL)
    with pytest.raises(Conflict, match="closed"):
        actions.submit_read(UserFactory(role="radiologist"), case.pk, NO_RECALL)
    assert AuditEvent.objects.filter(action=AuditAction.READ_CONFLICT).count() == 1


def test_a_stale_page_gets_a_conflict_not_an_overwrite(client, radiologist, radiologist2):  # type: ignore[no-untyped-def]
    case = case_with_images(score=0.2)
    client.force_login(radiologist2)
    page = client.get(reverse("case-detail", args=[case.pk]))
    stale_form = page.context["form"].initial
    actions.submit_read(radiologist, case.pk, NO_RECALL)
    response = client.post(
        reverse("case-read", args=[case.pk]),
        {
            "decision": "no_recall",
            "birads": 1,
            "opened": stale_form["opened"],
            "expected_status": stale_form["expected_status"],
        },
    )
    assert response.status_code == 409
    assert "changed while you were reading" in response.content.decode()
    assert Read.objects.count() == 1


def test_the_api_answers_409_on_conflict_and_201_on_success(api, radiologist):  # type: ignore[no-untyped-def]
    case = case_with_images()
    api.force_authenticate(radiologist)
    url = reverse("api-case-reads", args=[case.pk])
    first = api.post(url, {"decision": "no_recall", "birads": 1}, format="json")
    assert first.status_code == 201 and first.json()["kind"] == "first"
    again = api.post(url, {"decision": "no_recall", "birads": 1}, format="json")
    assert again.status_code == 409


def test_the_page_read_goes_straight_to_the_next_case(client, radiologist):  # type: ignore[no-untyped-def]
    top = case_with_images(score=0.95)
    following = case_with_images(score=0.5)
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[top.pk]))
    form = page.context["form"].initial
    response = client.post(
        reverse("case-read", args=[top.pk]),
        {
            "decision": "no_recall",
            "birads": 2,
            "reason": "Benign calcifications only",
            "opened": form["opened"],
            "expected_status": form["expected_status"],
        },
    )
    assert response.status_code == 302
    assert response.url == reverse("case-detail", args=[following.pk])
    read = Read.objects.get()
    assert read.agrees_with_ai is False and read.seconds_taken is not None


@pytest.mark.django_db(transaction=True)
def test_two_readers_deciding_at_once_one_wins_the_other_gets_a_conflict(role_groups):  # type: ignore[no-untyped-def]
    requires_postgres()
    case = case_with_images()
    readers = [UserFactory(role="radiologist") for _ in range(4)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(readers))

    def decide(reader) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        try:
            seen_as = ReadInput(decision=Decision.NO_RECALL, birads=1, expected_status="ready")
            actions.submit_read(reader, case.pk, seen_as)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(r,)) for r in readers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # All four opened the case while it was ready to read: exactly one first read lands.
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"], outcomes
    assert Read.objects.filter(case=case).count() == 1
    case.refresh_from_db()
    assert case.status == CaseStatus.FIRST_READ_DONE
