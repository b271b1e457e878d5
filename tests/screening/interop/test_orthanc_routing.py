"""A real PACS in the loop: dcmtk's ``storescu`` sends a study to Debian's Orthanc, which runs
the project's configuration and routing script (deploy/orthanc), and Orthanc routes it to the
portal: by C-STORE to the DICOM node, or by STOW-RS to /dicomweb/studies.

The node runs in this process's threads (as in test_dicom_node); the STOW-RS route reaches the
live server. Both need committed rows across threads, hence transaction=True.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from rest_framework.authtoken.models import Token

from screening.choices import AuditAction
from screening.interop.dicom_node import DicomNode, parse_peers
from screening.models import AIResult, AuditEvent, Case, Study
from tests.dicom_files import dicom_bytes
from tests.orthanc import PORTAL_AET, Orthanc, free_port

pytestmark = pytest.mark.django_db(transaction=True)


def four_views(folder: Path, accession: str, seed: int = 50) -> list[Path]:
    """A four-view MG study written as files, as a modality would hold it."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid()
    paths = []
    for i, (side, view) in enumerate([("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]):
        path = folder / f"{side}{view}.dcm"
        path.write_bytes(
            dicom_bytes(
                seed=seed + i,
                size=128,
                study_uid=study_uid,
                laterality=side,
                view=view,
                accession=accession,
            )
        )
        paths.append(path)
    return paths


def storescu(pacs: Orthanc, paths: list[Path]) -> None:
    """Sends as a modality: dcmtk's storescu, one association to Orthanc's AE title."""
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed (apt-get install dcmtk)")
    sent = subprocess.run(
        ["storescu", "-aec", pacs.ae_title, "127.0.0.1", str(pacs.dicom_port), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr


@pytest.fixture
def node(admin_user, active_model) -> Iterator[int]:
    """The portal's DICOM node, taking studies from Orthanc (AE ORTHANC) on this machine."""
    port = free_port()
    server = DicomNode(
        admin_user, PORTAL_AET, parse_peers(["ORTHANC@127.0.0.1"]), quiet_seconds=30
    ).start("127.0.0.1", port)
    yield port
    server.shutdown()


def filed_studies(n: int) -> Callable[[], bool]:
    return lambda: Study.objects.count() >= n


def test_a_study_sent_to_the_pacs_is_routed_to_the_node_and_filed_as_one_case(
    node: int, orthanc_factory, tmp_path: Path
) -> None:
    pacs = orthanc_factory(portal_port=node)
    storescu(pacs, four_views(tmp_path / "modality", "ACC-PACS-1"))

    # The node files the study, then records the association's end: wait for both.
    pacs.wait_for(filed_studies(1))
    pacs.wait_for(AuditEvent.objects.filter(action=AuditAction.DICOM_ASSOCIATION).exists)
    pacs.wait_for(lambda: "Routing study" in pacs.log())
    study = Study.objects.get()
    assert study.images.count() == 4
    assert Case.objects.count() == 1
    assert AIResult.for_images.filter(image__study=study).count() == 4
    # The association's audit event is written once its studies are filed: a moment later.
    pacs.wait_for(AuditEvent.objects.filter(action=AuditAction.DICOM_ASSOCIATION).exists)
    association = AuditEvent.objects.get(action=AuditAction.DICOM_ASSOCIATION)
    assert association.detail["calling_ae"] == "ORTHANC"


def test_a_study_is_routed_once_though_it_becomes_stable_again(
    node: int, orthanc_factory, tmp_path: Path
) -> None:
    """What comes into the study after routing (the portal's SR, a late instance) makes it
    stable again but does not send it to the portal a second time."""
    pacs = orthanc_factory(portal_port=node)
    paths = four_views(tmp_path / "modality", "ACC-PACS-2")
    storescu(pacs, paths)
    pacs.wait_for(filed_studies(1))
    study_uid = pydicom.dcmread(paths[0]).StudyInstanceUID
    late = tmp_path / "late.dcm"
    late.write_bytes(dicom_bytes(seed=99, size=128, study_uid=study_uid, accession="ACC-PACS-2"))
    storescu(pacs, [late])

    study_id = pacs.studies()[0]["ID"]
    pacs.wait_for(lambda: len(pacs.get(f"/studies/{study_id}/instances")) == 5)
    pacs.wait_for(lambda: pacs.get(f"/studies/{study_id}")["IsStable"])
    assert pacs.log().count("Routing study") == 1
    assert Study.objects.get().images.count() == 4


def test_a_study_that_is_not_mammography_stays_in_the_pacs(
    node: int, orthanc_factory, tmp_path: Path
) -> None:
    pacs = orthanc_factory(portal_port=node)
    folder = tmp_path / "ct"
    folder.mkdir()
    ct = folder / "ct.dcm"
    ct.write_bytes(dicom_bytes(seed=7, size=64, modality="CT"))
    storescu(pacs, [ct])
    pacs.wait_for(lambda: len(pacs.studies()) == 1)
    pacs.wait_for(lambda: pacs.studies()[0]["IsStable"])
    assert "Routing study" not in pacs.log()
    assert Study.objects.count() == 0


def test_a_routing_that_fails_is_kept_and_resent_when_the_portal_is_back(
    admin_user, active_model, orthanc_factory, tmp_path: Path
) -> None:
    port = free_port()
    pacs = orthanc_factory(portal_port=port)  # the node is down
    storescu(pacs, four_views(tmp_path / "modality", "ACC-PACS-3"))
    pacs.wait_for(lambda: "failed" in pacs.log() and "/resubmit" in pacs.log())
    failed = [job for job in pacs.get("/jobs?expand") if job["State"] == "Failure"]
    assert len(failed) == 1
    assert Study.objects.count() == 0

    server = DicomNode(admin_user, PORTAL_AET, parse_peers(["ORTHANC@127.0.0.1"])).start(
        "127.0.0.1", port
    )
    try:
        pacs.post(f"/jobs/{failed[0]['ID']}/resubmit", {})
        pacs.wait_for(filed_studies(1))
    finally:
        server.shutdown()
    assert Study.objects.get().images.count() == 4


def test_the_pacs_can_route_by_stow_rs_with_an_admins_token(
    admin_user, active_model, live_server, orthanc_factory, tmp_path: Path
) -> None:
    token = Token.objects.create(user=admin_user)
    pacs = orthanc_factory(
        route="dicomweb", dicomweb_url=f"{live_server.url}/dicomweb/", token=token.key
    )
    storescu(pacs, four_views(tmp_path / "modality", "ACC-PACS-4"))

    pacs.wait_for(filed_studies(1))
    assert Study.objects.get().images.count() == 4
    pacs.wait_for(lambda: any(job["State"] == "Success" for job in pacs.get("/jobs?expand")))
