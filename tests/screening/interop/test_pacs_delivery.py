"""Results back into the woman's study: a closed case's AI SR and SC and the readers' report
sent to a real Orthanc (Debian's, the project's configuration) by C-STORE and by STOW-RS,
retried until acknowledged, never sent twice, withheld in research mode; the send status for
admins (page and API), audited, counted in /metrics.

Deliveries are sent by calling the verb the Celery task wraps (``interop.actions.deliver``).
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pydicom
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from screening.choices import AuditAction, AuditOutcome, DeliveredObject, DeliveryStatus
from screening.interop import actions as interop_actions
from screening.interop import pacs_delivery
from screening.interop.pacs_delivery import parse_destination
from screening.models import AuditEvent, Case, PacsDelivery
from screening.ops.metrics import exposition
from tests.conftest import login
from tests.factories import (
    ModelVersionFactory,
    dicom_case_with_images,
    read_case,
    score_case,
    validated_evidence,
)
from tests.orthanc import PASSWORD, Orthanc

pytestmark = pytest.mark.django_db(transaction=True)

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture


def dimse(pacs: Orthanc) -> str:
    return f"pacs=dicom://{pacs.ae_title}@127.0.0.1:{pacs.dicom_port}"


def stow(pacs: Orthanc) -> str:
    return f"pacs=http://mammo:{PASSWORD}@127.0.0.1:{pacs.http_port}/dicom-web/"


def closed_case(radiologist, radiologist2, images: int = 2) -> Case:
    """A DICOM case scored by a version whose heatmaps readers may see, read twice (agreeing)."""
    case = dicom_case_with_images(images=images)
    score_case(case, 0.2, ModelVersionFactory(evidence=validated_evidence()))
    read_case(radiologist, case.pk, recall=False)
    read_case(radiologist2, case.pk, recall=False)
    case.refresh_from_db()
    assert case.closed_at is not None
    return case


def deliver_all(case: Case) -> list[str]:
    return [interop_actions.deliver(d.pk) for d in PacsDelivery.objects.filter(case=case)]


def pacs_instances(pacs: Orthanc) -> list[pydicom.Dataset]:
    """Every instance the PACS holds, read back from its REST API."""
    return [
        pydicom.dcmread(io.BytesIO(pacs.request("GET", f"/instances/{i}/file")))
        for i in pacs.get("/instances")
    ]


@pytest.fixture
def clinical(settings):
    settings.IDENTITY_MODE = "clinical"


@pytest.fixture
def pacs(orthanc_factory, settings) -> Orthanc:
    orthanc = orthanc_factory()
    settings.PACS_DESTINATIONS = [dimse(orthanc)]
    settings.PACS_DESTINATION_AUTH = {}
    return orthanc


def test_a_closed_clinical_case_lands_its_srs_and_heatmaps_in_the_womans_study_by_c_store(
    clinical, pacs, radiologist, radiologist2
) -> None:
    case = closed_case(radiologist, radiologist2)
    kinds = sorted(PacsDelivery.objects.filter(case=case).values_list("kind", flat=True))
    assert kinds == sorted(
        [DeliveredObject.AI_REPORT, DeliveredObject.READ_REPORT] + [DeliveredObject.AI_HEATMAP] * 2
    )

    assert deliver_all(case) == [DeliveryStatus.SENT] * 4
    stored = pacs_instances(pacs)
    study = case.studies.get()
    assert {i.StudyInstanceUID for i in stored} == {study.study_instance_uid}
    assert sorted(i.SOPClassUID for i in stored) == sorted([SR_CLASS] * 2 + [SC_CLASS] * 2)
    assert {i.PatientID for i in stored} == {study.patient_id}
    for delivery in PacsDelivery.objects.filter(case=case):
        assert delivery.acknowledged_at is not None and delivery.attempts == 1
        assert delivery.sop_instance_uid in {str(i.SOPInstanceUID) for i in stored}
    sent = AuditEvent.objects.filter(action=AuditAction.PACS_DELIVERED)
    assert sent.count() == 4 and {e.detail["case_id"] for e in sent} == {case.pk}


def test_a_stow_rs_destination_gets_the_same_objects(
    clinical, orthanc_factory, settings, radiologist, radiologist2
) -> None:
    orthanc = orthanc_factory()
    settings.PACS_DESTINATIONS = [stow(orthanc)]
    case = closed_case(radiologist, radiologist2, images=1)
    assert deliver_all(case) == [DeliveryStatus.SENT] * 3
    assert len(orthanc.get("/instances")) == 3


def test_a_delivery_is_never_sent_twice_and_a_resend_is_the_same_instance(
    clinical, pacs, radiologist, radiologist2
) -> None:
    case = closed_case(radiologist, radiologist2, images=1)
    report = PacsDelivery.objects.get(case=case, kind=DeliveredObject.READ_REPORT)
    assert interop_actions.deliver(report.pk) == DeliveryStatus.SENT
    assert interop_actions.deliver(report.pk) == "not_claimed"
    # The acknowledgement lost (the worker died before writing it): sent again, one copy.
    PacsDelivery.objects.filter(pk=report.pk).update(status=DeliveryStatus.PENDING)
    assert interop_actions.deliver(report.pk) == DeliveryStatus.SENT
    assert len(pacs.get("/instances")) == 1
    # Closing again (a replayed close) queues nothing new.
    pacs_delivery.queue_case(Case.objects.get(pk=case.pk))
    assert PacsDelivery.objects.filter(case=case).count() == 3


def test_only_one_of_many_workers_claims_a_delivery(
    clinical, pacs, radiologist, radiologist2
) -> None:
    case = closed_case(radiologist, radiologist2, images=1)
    delivery = PacsDelivery.objects.filter(case=case).first()
    assert delivery is not None
    claimed: list[bool] = []
    start = threading.Barrier(8)

    def claim() -> None:
        start.wait()
        try:
            claimed.append(pacs_delivery.claim(delivery.pk) is not None)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [False] * 7 + [True]


def test_a_pacs_that_is_down_is_retried_with_backoff_until_it_acknowledges(
    clinical, pacs, settings, radiologist, radiologist2
) -> None:
    settings.PACS_RETRY_BASE_SECONDS = 10
    pacs.stop()
    case = closed_case(radiologist, radiologist2, images=1)
    report = PacsDelivery.objects.get(case=case, kind=DeliveredObject.READ_REPORT)

    for attempt, backoff in ((1, 10), (2, 20)):
        before = timezone.now()
        assert interop_actions.deliver(report.pk) == DeliveryStatus.RETRYING
        report.refresh_from_db()
        assert report.attempts == attempt and "Association" in report.last_error
        assert report.next_attempt_at >= before + timedelta(seconds=backoff)
        assert interop_actions.deliver(report.pk) == "not_claimed"  # not due yet
        assert report.pk not in pacs_delivery.due_deliveries()
        PacsDelivery.objects.filter(pk=report.pk).update(next_attempt_at=timezone.now())
    failed = AuditEvent.objects.filter(action=AuditAction.PACS_DELIVERY_FAILED)
    assert failed.count() == 2 and failed.first().outcome == AuditOutcome.FAILURE  # type: ignore[union-attr]

    pacs.restart()
    assert report.pk in pacs_delivery.due_deliveries()
    assert interop_actions.deliver(report.pk) == DeliveryStatus.SENT
    report.refresh_from_db()
    assert report.attempts == 3 and report.last_error == ""
    assert len(pacs.get("/instances")) == 1


def test_a_research_mode_study_is_withheld_and_says_why(
    research_mode, pacs, radiologist, radiologist2
) -> None:
    case = closed_case(radiologist, radiologist2, images=1)
    rows = PacsDelivery.objects.filter(case=case)
    assert {r.status for r in rows} == {DeliveryStatus.WITHHELD}
    assert all("research mode" in r.last_error for r in rows)
    assert deliver_all(case) == ["not_claimed"] * rows.count()
    assert pacs.get("/instances") == []
    withheld = AuditEvent.objects.filter(action=AuditAction.PACS_DELIVERY_WITHHELD)
    assert withheld.count() == rows.count()
    pacs_delivery.queue_case(Case.objects.get(pk=case.pk))  # a replayed close: audited once
    assert withheld.count() == rows.count()


def test_an_open_case_sends_nothing(clinical, pacs, radiologist) -> None:
    case = dicom_case_with_images(images=1)
    score_case(case, 0.2)
    read_case(radiologist, case.pk, recall=False)
    assert not PacsDelivery.objects.filter(case=case).exists()


def test_admins_see_a_cases_send_status_on_a_page_and_in_the_api(
    clinical, pacs, client, api, radiologist, radiologist2, admin_user
) -> None:
    pacs.stop()
    case = closed_case(radiologist, radiologist2, images=1)
    report = PacsDelivery.objects.get(case=case, kind=DeliveredObject.READ_REPORT)
    interop_actions.deliver(report.pk)

    login(client, admin_user)
    page = client.get(reverse("case-pacs-deliveries", args=[case.pk])).content.decode()
    assert "Failed, retrying" in page and "Readers&#x27; final report (SR)" in page
    assert "Association" in page and PASSWORD not in page
    overview = client.get(reverse("pacs-deliveries")).content.decode()
    assert reverse("case-pacs-deliveries", args=[case.pk]) in overview

    api.force_authenticate(admin_user)
    answer = api.get(reverse("api-case-pacs-deliveries", args=[case.pk])).json()
    by_kind = {row["object"]: row for row in answer["deliveries"]}
    assert by_kind[DeliveredObject.READ_REPORT]["status"] == DeliveryStatus.RETRYING
    assert by_kind[DeliveredObject.READ_REPORT]["attempts"] == 1
    assert by_kind[DeliveredObject.AI_REPORT]["status"] == DeliveryStatus.PENDING


def test_readers_do_not_see_the_send_status(clinical, pacs, client, api, radiologist) -> None:
    case = dicom_case_with_images(images=1)
    login(client, radiologist)
    assert client.get(reverse("case-pacs-deliveries", args=[case.pk])).status_code == 403
    api.force_authenticate(radiologist)
    assert api.get(reverse("api-case-pacs-deliveries", args=[case.pk])).status_code == 403


def test_metrics_count_deliveries_by_status(clinical, pacs, radiologist, radiologist2) -> None:
    case = closed_case(radiologist, radiologist2, images=1)
    interop_actions.deliver(PacsDelivery.objects.filter(case=case).first().pk)  # type: ignore[union-attr]
    body = exposition(None)[0].decode()
    assert 'mammo_pacs_deliveries{destination="pacs",status="sent"} 1.0' in body
    assert 'mammo_pacs_deliveries{destination="pacs",status="pending"} 2.0' in body
    assert "mammo_pacs_delivery_oldest_outstanding_seconds" in body


def test_destinations_are_c_store_peers_or_stow_rs_roots() -> None:
    peer = parse_destination("pacs=dicom://ORTHANC@pacs.example:4242")
    assert (peer.protocol, peer.ae_title, peer.host, peer.port) == (
        "dimse",
        "ORTHANC",
        "pacs.example",
        4242,
    )
    root = parse_destination("web=https://u:p%40ss@pacs.example/dicom-web/")
    assert (root.protocol, root.url) == ("stow-rs", "https://pacs.example/dicom-web")
    assert root.authorization == "Basic dTpwQHNz"  # u:p@ss
    assert "p@ss" not in root.describe()
    with pytest.raises(ImproperlyConfigured):
        parse_destination("pacs=dicom://pacs.example:4242")  # no AE title
    with pytest.raises(ImproperlyConfigured):
        parse_destination("pacs=ftp://pacs.example/")


def test_a_malformed_destination_fails_the_system_check_but_never_a_read(
    clinical, settings, radiologist, radiologist2
) -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.PACS_DESTINATIONS = ["pacs=dicom://pacs.example:4242"]
    with pytest.raises(SystemCheckError, match="AETITLE"):
        call_command("check")
    case = closed_case(radiologist, radiologist2, images=1)
    assert case.status == "closed" and not PacsDelivery.objects.filter(case=case).exists()


def test_the_celery_tasks_send_through_the_verb(clinical, pacs, radiologist, radiologist2) -> None:
    """The worker's task (run in this process) sends; the sweep counts what is due."""
    from screening.interop.tasks import deliver_to_pacs_task, pacs_sweep_task

    case = closed_case(radiologist, radiologist2, images=1)
    assert pacs_sweep_task.apply().get() == 3  # all three due: their jobs are sent again
    report = PacsDelivery.objects.get(case=case, kind=DeliveredObject.READ_REPORT)
    assert deliver_to_pacs_task.apply(args=[report.pk]).get() == DeliveryStatus.SENT
    assert pacs_sweep_task.apply().get() == 2


def test_the_case_page_links_the_send_status_for_admins_only(
    clinical, pacs, client, radiologist, radiologist2, auditor
) -> None:
    from django.contrib.auth.models import Group

    case = closed_case(radiologist, radiologist2, images=1)
    link = reverse("case-pacs-deliveries", args=[case.pk])
    login(client, auditor)
    assert link not in client.get(reverse("case-detail", args=[case.pk])).content.decode()
    auditor.groups.add(Group.objects.get_or_create(name="admin")[0])  # an admin who audits
    assert link in client.get(reverse("case-detail", args=[case.pk])).content.decode()


def test_an_admin_sends_a_retrying_delivery_again_now_and_it_is_still_sent_once(
    clinical, pacs, settings, client, admin_user, radiologist, radiologist2
) -> None:
    settings.PACS_RETRY_BASE_SECONDS = 3600
    pacs.stop()
    case = closed_case(radiologist, radiologist2, images=1)
    report = PacsDelivery.objects.get(case=case, kind=DeliveredObject.READ_REPORT)
    assert interop_actions.deliver(report.pk) == DeliveryStatus.RETRYING
    pacs.restart()
    assert interop_actions.deliver(report.pk) == "not_claimed"  # its retry is an hour away

    login(client, admin_user)
    page = reverse("case-pacs-deliveries", args=[case.pk])
    send_now = reverse("case-pacs-delivery-send-now", args=[case.pk, report.pk])
    assert send_now in client.get(page).content.decode()
    answer = client.post(send_now, follow=True)
    assert answer.redirect_chain[-1][0] == page and "brought forward" in answer.content.decode()
    report.refresh_from_db()
    assert report.status == DeliveryStatus.RETRYING and report.attempts == 1
    assert report.next_attempt_at <= timezone.now()
    audited = AuditEvent.objects.get(action=AuditAction.PACS_SEND_NOW)
    assert audited.actor == admin_user and audited.detail["case_id"] == case.pk

    assert interop_actions.deliver(report.pk) == DeliveryStatus.SENT
    # Sent: the action refuses, so it never makes a second copy.
    answer = client.post(send_now, follow=True)
    assert "waits for its retry" in answer.content.decode()
    assert interop_actions.deliver(report.pk) == "not_claimed"
    assert len(pacs.get("/instances")) == 1
    assert AuditEvent.objects.filter(action=AuditAction.PACS_SEND_NOW).count() == 1


def test_send_again_now_needs_an_admin_a_post_and_the_csrf_token(
    clinical, pacs, settings, radiologist, radiologist2, admin_user
) -> None:
    from django.test import Client

    settings.PACS_RETRY_BASE_SECONDS = 3600
    pacs.stop()
    case = closed_case(radiologist, radiologist2, images=1)
    report = PacsDelivery.objects.get(case=case, kind=DeliveredObject.READ_REPORT)
    interop_actions.deliver(report.pk)
    due = PacsDelivery.objects.get(pk=report.pk).next_attempt_at
    send_now = reverse("case-pacs-delivery-send-now", args=[case.pk, report.pk])

    reader = Client()  # CSRF not enforced: the role check alone refuses
    login(reader, radiologist)
    assert reader.post(send_now).status_code == 403
    admin = Client(enforce_csrf_checks=True)
    login(admin, admin_user)
    assert admin.get(send_now).status_code == 405
    assert admin.post(send_now).status_code == 403  # no CSRF token
    other = closed_case(radiologist, radiologist2, images=1)
    admin.get(reverse("case-pacs-deliveries", args=[case.pk]))
    token = admin.cookies["csrftoken"].value
    wrong_case = reverse("case-pacs-delivery-send-now", args=[other.pk, report.pk])
    admin.post(wrong_case, {"csrfmiddlewaretoken": token})  # the delivery is not that case's
    assert PacsDelivery.objects.get(pk=report.pk).next_attempt_at == due
    assert not AuditEvent.objects.filter(action=AuditAction.PACS_SEND_NOW).exists()
    assert admin.post(send_now, {"csrfmiddlewaretoken": token}).status_code == 302
    assert PacsDelivery.objects.get(pk=report.pk).next_attempt_at < due
