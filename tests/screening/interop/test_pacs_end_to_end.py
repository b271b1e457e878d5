"""End to end with a real PACS, in clinical mode: dcmtk's ``storescu`` sends a study to Debian's
Orthanc, which routes it (deploy/orthanc/route.lua) by C-STORE to the portal's DICOM node;
the portal stores it, scores it with the real inference function its Celery task wraps, and
shows it; two readers read it through the real verb; and the AI's SR and the readers' report
SR land in Orthanc's copy of the woman's study, checked through Orthanc's REST API and dcmdump.
Then the PACS is down when a case closes: the delivery is retried and, Orthanc back, sent once.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from django.utils import timezone

from screening.ai import inference
from screening.choices import CaseStatus, DeliveredObject, DeliveryStatus, ReadKind
from screening.interop import actions as interop_actions
from screening.interop.dicom_node import DicomNode, parse_peers
from screening.models import AIResult, Case, PacsDelivery, Study
from screening.reading import actions as reading_actions
from screening.reading.actions import ReadInput
from screening.reading.assessment import FindingInput
from tests.conftest import login
from tests.orthanc import PORTAL_AET, Orthanc, free_port
from tests.screening.interop.test_orthanc_routing import four_views, storescu

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"


def read(kind: str) -> ReadInput:
    """Both readers: recall for a suspicious mass in the right breast (BI-RADS 4 | 1, c)."""
    return ReadInput(
        kind=kind,
        birads_right=4,
        birads_left=1,
        density="c",
        findings=(FindingInput(breast="R", finding="mass", site="UOQ"),),
        reason="Spiculated mass, right upper outer quadrant",
    )


def routed_and_scored(pacs: Orthanc, folder: Path, accession: str, version_id: int) -> Study:
    """storescu → Orthanc → node → stored; then scored as the worker scores it."""
    paths = four_views(folder, accession)
    storescu(pacs, paths)
    pacs.wait_for(Study.objects.exists)  # filed whole: the study comes with its four films
    study = Study.objects.get()
    assert study.images.count() == 4
    assert study.study_instance_uid == pydicom.dcmread(paths[0]).StudyInstanceUID  # clinical
    inference.score_study(study.pk, version_id)
    return study


def sr_instances(pacs: Orthanc) -> list[dict[str, Any]]:
    """Every SR instance in the PACS, with its tags as Orthanc reads them."""
    tags = [pacs.get(f"/instances/{i}/tags?simplify") | {"ID": i} for i in pacs.get("/instances")]
    return [t for t in tags if t["SOPClassUID"] == SR_CLASS]


@pytest.fixture
def node(admin_user) -> Iterator[int]:
    """The portal's DICOM node in this process's threads, taking studies from Orthanc."""
    port = free_port()
    server = DicomNode(
        admin_user, PORTAL_AET, parse_peers(["ORTHANC@127.0.0.1"]), quiet_seconds=30
    ).start("127.0.0.1", port)
    yield port
    server.shutdown()


@pytest.fixture
def clinical(settings):
    settings.IDENTITY_MODE = "clinical"


def test_a_study_goes_round_the_pacs_and_comes_back_with_both_reports(
    clinical, node, orthanc_factory, settings, active_model, radiologist, radiologist2, client,
    tmp_path: Path,
) -> None:  # fmt: skip
    pacs = orthanc_factory(portal_port=node)
    settings.PACS_DESTINATIONS = [f"pacs=dicom://ORTHANC@127.0.0.1:{pacs.dicom_port}"]
    study = routed_and_scored(pacs, tmp_path / "modality", "ACC-E2E-1", active_model.pk)
    case = Case.objects.get()
    assert case.status == CaseStatus.READY
    assert case.ai_result is not None and case.ai_result.probability is not None
    assert AIResult.for_images.filter(case=case, probability__isnull=False).count() == 4

    login(client, radiologist)
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "Ready to read" in page and study.patient_id in page  # shown, to the right woman
    client.logout()

    reading_actions.submit_read(radiologist, case.pk, read(ReadKind.FIRST))
    reading_actions.submit_read(radiologist2, case.pk, read(ReadKind.SECOND))
    case.refresh_from_db()
    assert case.status == CaseStatus.CLOSED
    deliveries = PacsDelivery.objects.filter(case=case)
    assert {d.kind for d in deliveries} >= {DeliveredObject.AI_REPORT, DeliveredObject.READ_REPORT}
    assert [interop_actions.deliver(d.pk) for d in deliveries] == [DeliveryStatus.SENT] * len(
        deliveries
    )

    # Orthanc holds one study: the woman's, with the four films and both SRs in it.
    assert len(pacs.studies()) == 1
    srs = sr_instances(pacs)
    assert len(srs) == 2
    assert {sr["StudyInstanceUID"] for sr in srs} == {study.study_instance_uid}
    report = next(sr for sr in srs if "final report" in sr["SeriesDescription"])
    path = tmp_path / "report.dcm"
    path.write_bytes(pacs.request("GET", f"/instances/{report['ID']}/file"))
    if shutil.which("dcmdump") is None:
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
    dump = subprocess.run(["dcmdump", str(path)], capture_output=True, text=True, check=True)
    assert "4 - Suspicious" in dump.stdout and "1 - Negative" in dump.stdout
    assert "Right breast" in dump.stdout and "Mammographic breast mass" in dump.stdout
    assert "Heterogeneously dense" in dump.stdout and "Recall for assessment" in dump.stdout
    assert pacs.log().count("Routing study") == 1  # what came back was not routed again


def test_a_pacs_down_when_the_case_closes_gets_the_reports_once_it_is_back(
    clinical, node, orthanc_factory, settings, active_model, radiologist, radiologist2,
    tmp_path: Path,
) -> None:  # fmt: skip
    pacs = orthanc_factory(portal_port=node)
    settings.PACS_DESTINATIONS = [f"pacs=dicom://ORTHANC@127.0.0.1:{pacs.dicom_port}"]
    routed_and_scored(pacs, tmp_path / "modality", "ACC-E2E-2", active_model.pk)
    case = Case.objects.get()
    pacs.stop()
    reading_actions.submit_read(radiologist, case.pk, read(ReadKind.FIRST))
    reading_actions.submit_read(radiologist2, case.pk, read(ReadKind.SECOND))

    deliveries = list(PacsDelivery.objects.filter(case=case))
    for _ in range(2):
        for delivery in deliveries:
            assert interop_actions.deliver(delivery.pk) == DeliveryStatus.RETRYING
        PacsDelivery.objects.filter(case=case).update(next_attempt_at=timezone.now())

    pacs.restart()
    assert interop_actions.send_due_deliveries() == len(deliveries)  # the sweep's jobs
    assert [interop_actions.deliver(d.pk) for d in deliveries] == [DeliveryStatus.SENT] * len(
        deliveries
    )
    assert [interop_actions.deliver(d.pk) for d in deliveries] == ["not_claimed"] * len(deliveries)
    assert len(sr_instances(pacs)) == 2
    assert all(d.attempts == 3 for d in PacsDelivery.objects.filter(case=case))
