"""The audit trail: one record per action, and no way to change or remove one."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from screening.ai import actions as ai_actions
from screening.choices import AuditAction, AuditOutcome, Decision
from screening.models import AuditEvent
from screening.reading import actions as reading_actions
from screening.reading.actions import ReadInput
from screening.reading.assessment import FindingInput
from tests.conftest import requires_postgres
from tests.factories import ModelVersionFactory, case_with_images


def only(action: str) -> AuditEvent:
    return AuditEvent.objects.get(action=action)


def test_opening_a_case_on_the_page_is_recorded(client, auditor):
    case = case_with_images()
    client.force_login(auditor)
    client.get(reverse("case-detail", args=[case.pk]))
    event = only(AuditAction.CASE_OPENED)
    assert (event.actor, event.object_type, event.object_id) == (auditor, "case", str(case.pk))
    assert event.detail == {"via": "page"}


def test_opening_a_case_through_the_api_is_recorded(api, radiologist):
    case = case_with_images()
    api.force_authenticate(radiologist)
    assert api.get(reverse("api-case-detail", args=[case.pk])).status_code == 200
    assert only(AuditAction.CASE_OPENED).detail == {"via": "api"}


def test_a_read_is_recorded_with_its_decision(radiologist):
    case = case_with_images(score=0.9)
    read = reading_actions.submit_read(
        radiologist,
        case.pk,
        ReadInput(
            kind="first",
            decision=Decision.RECALL,
            birads_right=5,
            birads_left=1,
            density="c",
            findings=(FindingInput(breast="R", finding="mass", site="10"),),
        ),  # fmt: skip
    )
    event = only(AuditAction.READ_RECORDED)
    assert event.detail["read_id"] == read.pk and event.detail["decision"] == "recall"


def test_model_activation_is_recorded_with_the_previous_version(admin_user):
    old = ModelVersionFactory(is_active=True)
    new = ModelVersionFactory()
    ai_actions.activate_model_version(admin_user, new.pk)
    old.refresh_from_db()
    assert not old.is_active
    event = only(AuditAction.MODEL_ACTIVATED)
    assert event.object_id == str(new.pk) and event.detail == {"previous_id": old.pk}


def test_failed_and_successful_logins_are_recorded(client, radiologist):
    client.post(reverse("login"), {"username": "rad1", "password": "wrong"})
    failed = only(AuditAction.LOGIN_FAILED)
    assert (failed.outcome, failed.actor_name, failed.actor) == (AuditOutcome.FAILURE, "rad1", None)
    client.post(reverse("login"), {"username": "rad1", "password": "correct-horse-battery"})
    assert only(AuditAction.LOGIN).actor == radiologist


def test_an_event_cannot_be_updated_or_deleted_through_the_orm(radiologist):
    from screening import events

    event = events.login_succeeded(radiologist)
    event.action = AuditAction.EXPORT
    with pytest.raises(PermissionDenied):
        event.save()
    with pytest.raises(PermissionDenied):
        event.delete()
    with pytest.raises(PermissionDenied):
        AuditEvent.objects.filter(pk=event.pk).update(action=AuditAction.EXPORT)
    with pytest.raises(PermissionDenied):
        AuditEvent.objects.all().delete()


def test_the_database_itself_refuses_to_change_an_event(radiologist):
    requires_postgres()
    from screening import events

    event = events.login_succeeded(radiologist)
    for sql in (
        "UPDATE screening_auditevent SET action = 'export' WHERE id = %s",
        "DELETE FROM screening_auditevent WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, [event.pk])


def test_the_admin_offers_no_change_or_delete_of_events(client, admin_user, radiologist):
    from screening import events

    event = events.login_succeeded(radiologist)
    client.force_login(admin_user)
    admin_user.is_superuser = True
    admin_user.save()
    change = client.post(
        reverse("admin:screening_auditevent_change", args=[event.pk]), {"action": "export"}
    )
    delete = client.post(
        reverse("admin:screening_auditevent_delete", args=[event.pk]), {"post": "yes"}
    )
    assert change.status_code == 403 and delete.status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == AuditAction.LOGIN


def test_no_patient_identifier_reaches_the_audit_trail(api, admin_user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.factories import png_bytes

    api.force_authenticate(admin_user)
    api.post(
        "/api/studies/",
        {
            "accession_number": "ACC-SECRET",
            "patient_pseudonym": "PSEUDO-SECRET",
            "files": [SimpleUploadedFile("Jane_Doe_L_CC.png", png_bytes(1))],
        },
        format="multipart",
    )
    trail = str(list(AuditEvent.objects.values()))
    assert "ACC-SECRET" not in trail and "Jane_Doe" not in trail and "PSEUDO-SECRET" not in trail
