"""Priors from a real PACS: Debian's Orthanc, run with the project's configuration, holds a
woman's earlier screen that the portal has never seen. A new screen of hers reaches the
portal's DICOM node (sent by dcmtk's ``storescu`` to Orthanc, routed by Orthanc's script); the
node files it, asks Orthanc for her earlier MG studies (C-FIND) and retrieves the newest
(C-GET), stored as a prior study: no case, no AI, hung beside the screen.

The node runs in this process's threads (as in test_dicom_node), hence transaction=True.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from pydicom.uid import generate_uid

from screening.choices import AuditAction, AuditOutcome
from screening.interop.dicom_node import DicomNode, parse_peers
from screening.interop.pacs_priors import Found, Pacs, PriorFetcher, Wanted, earlier, parse_pacs
from screening.models import AIResult, AuditEvent, Case, Study
from tests.dicom_files import dicom_bytes
from tests.orthanc import PORTAL_AET, Orthanc, free_port
from tests.screening.interop.test_orthanc_routing import storescu

pytestmark = pytest.mark.django_db(transaction=True)

PATIENT = "HOSP-PRIOR-4711"  # the hospital's own Patient ID: never stored in research mode
VIEWS = [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]


def screen(date: str, seed: int, accession: str, patient: str = PATIENT) -> list[bytes]:
    """A four-view MG study of one woman on one day."""
    study_uid = generate_uid()
    return [
        dicom_bytes(
            seed=seed + i,
            size=128,
            study_uid=study_uid,
            laterality=side,
            view=view,
            accession=accession,
            patient_id=patient,
            study_date=date,
        )
        for i, (side, view) in enumerate(VIEWS)
    ]


def keep_in_pacs(pacs: Orthanc, instances: list[bytes]) -> None:
    """A study the PACS holds from before: stored through its REST API and marked as routed,
    so Orthanc never sends it on (it lives only in the PACS)."""
    ids = [pacs.store(content) for content in instances]
    study = pacs.get(f"/instances/{ids[0]}/study")["ID"]
    pacs.request("PUT", f"/studies/{study}/metadata/RoutedToPortal", b"history")


def write(folder: Path, instances: list[bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, content in enumerate(instances):
        path = folder / f"{i}.dcm"
        path.write_bytes(content)
        paths.append(path)
    return paths


@contextmanager
def pacs_with_node(
    orthanc_factory: Callable[..., Orthanc], admin_user: User
) -> Iterator[tuple[Orthanc, PriorFetcher]]:
    """Orthanc routing new MG studies to the node, and the node fetching priors from it."""
    port = free_port()
    pacs = orthanc_factory(portal_port=port)
    fetcher = PriorFetcher(
        admin_user, Pacs("ORTHANC", "127.0.0.1", pacs.dicom_port), PORTAL_AET, 2, 30.0
    )
    node = DicomNode(admin_user, PORTAL_AET, parse_peers(["ORTHANC@127.0.0.1"]), 30, priors=fetcher)
    server = node.start("127.0.0.1", port)
    try:
        yield pacs, fetcher
    finally:
        server.shutdown()
        fetcher.shutdown()


@pytest.fixture
def pacs_and_node(orthanc_factory, admin_user) -> Iterator[tuple[Orthanc, PriorFetcher]]:
    with pacs_with_node(orthanc_factory, admin_user) as running:
        yield running


def priors_fetched(pacs: Orthanc) -> Callable[[], bool]:
    return lambda: AuditEvent.objects.filter(action=AuditAction.PRIORS_FETCHED).exists()


def test_a_prior_only_in_the_pacs_is_fetched_and_hung_when_a_screen_arrives_by_the_node(
    active_model, pacs_and_node, tmp_path: Path, client, radiologist
) -> None:
    pacs, _ = pacs_and_node
    keep_in_pacs(pacs, screen("20220310", 10, "ACC-2022"))
    storescu(pacs, write(tmp_path / "current", screen("20240315", 20, "ACC-2024")))
    pacs.wait_for(priors_fetched(pacs), 90)

    event = AuditEvent.objects.get(action=AuditAction.PRIORS_FETCHED)
    assert event.outcome == AuditOutcome.SUCCESS, event.detail
    current = Study.objects.get(case__isnull=False)
    prior = Study.objects.get(case__isnull=True)
    assert event.detail["found"] == 2  # her two studies in the PACS: the prior and this one
    assert event.detail["stored_study_ids"] == [prior.pk]
    assert prior.study_date.isoformat() == "2022-03-10" and prior.images.count() == 4
    assert current.case is not None
    assert prior.prior_of == current.case.patient  # the same keyed pseudonym: the same woman
    assert Case.objects.count() == 1  # the prior is no case
    assert not AIResult.objects.filter(image__study=prior).exists()  # never scored

    client.force_login(radiologist)
    html = client.get(reverse("case-detail", args=[current.case.pk])).content.decode()
    assert f'data-compare-case="study-{prior.pk}"' in html
    assert html.count('class="panel prior') == 4 and "Prior · 2022-03-10" in html
    worklist = client.get(reverse("worklist")).content.decode()
    assert f"/cases/{current.case.pk}/" in worklist and "2022-03-10" not in worklist


def test_in_research_mode_the_original_patient_id_is_stored_and_logged_nowhere(
    pacs_and_node, tmp_path: Path, caplog, media_root, research_mode
) -> None:
    pacs, _ = pacs_and_node
    caplog.set_level(logging.DEBUG)
    keep_in_pacs(pacs, screen("20220310", 10, "ACC-2022"))
    storescu(pacs, write(tmp_path / "current", screen("20240315", 20, "ACC-2024")))
    pacs.wait_for(priors_fetched(pacs), 90)
    assert Study.objects.filter(case__isnull=True).count() == 1

    from django.db import connection

    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):  # PostgreSQL and SQLite
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (the schema's own names)
            assert PATIENT not in repr(cursor.fetchall()), table
    for stored in Path(media_root).rglob("*"):
        if stored.is_file():
            assert PATIENT.encode() not in stored.read_bytes(), stored
    assert PATIENT not in caplog.text


def test_a_pacs_that_cannot_be_reached_is_logged_and_audited_and_the_screen_kept(
    admin_user, active_model, caplog
) -> None:
    from screening.intake import actions as intake_actions

    class Upload:
        def __init__(self, content: bytes, n: int) -> None:
            self.content, self.name, self.size = content, f"f{n}", len(content)

        def read(self) -> bytes:
            return self.content

    instances = screen("20240315", 20, "ACC-2024")
    spec = intake_actions.StudySpec(accession_number="", dicom_only=True)
    accepted = intake_actions.upload_study(
        admin_user, spec, [Upload(c, n) for n, c in enumerate(instances)]
    )
    nobody = Pacs("ORTHANC", "127.0.0.1", free_port())  # nothing listens there
    fetcher = PriorFetcher(admin_user, nobody, PORTAL_AET, 2, 5.0)
    wanted = Wanted(PATIENT, "", "1.2.3", "20240315")
    assert fetcher.fetch(accepted.study.pk, wanted) == []
    event = AuditEvent.objects.get(action=AuditAction.PRIORS_FETCHED)
    assert event.outcome == AuditOutcome.FAILURE and "association" in event.detail["failure"]
    assert Case.objects.get().studies.get() == accepted.study  # the screen is untouched
    assert PATIENT not in caplog.text and PATIENT not in repr(event.detail)


def test_only_the_newest_studies_before_the_arriving_one_are_wanted() -> None:
    wanted = Wanted("P", "", "1.9", "20240315")
    found = [
        Found("1.1", "20200101"),
        Found("1.2", "20230101"),
        Found("1.3", "20220101"),
        Found("1.9", "20240315"),  # the arriving study itself
        Found("1.4", "20250101"),  # later than it: no prior
    ]
    assert [f.study_uid for f in earlier(found, wanted, 2)] == ["1.2", "1.3"]


def test_the_pacs_setting_is_aetitle_at_host_and_port() -> None:
    assert parse_pacs("") is None
    assert parse_pacs("ORTHANC@pacs.local:4242") == Pacs("ORTHANC", "pacs.local", 4242)
    for wrong in ("ORTHANC@pacs.local", "pacs.local:4242", "A" * 17 + "@h:1", "X@h:port"):
        with pytest.raises(ImproperlyConfigured):
            parse_pacs(wrong)


def with_issuer(instances: list[bytes], issuer: str) -> list[bytes]:
    out = []
    for content in instances:
        ds = pydicom.dcmread(io.BytesIO(content))
        ds.IssuerOfPatientID = issuer
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def test_a_study_of_the_same_patient_id_from_another_issuer_is_not_her_prior(
    pacs_and_node, tmp_path: Path
) -> None:
    pacs, _ = pacs_and_node
    keep_in_pacs(pacs, with_issuer(screen("20220310", 10, "ACC-A-2022"), "HOSP-A"))
    keep_in_pacs(pacs, with_issuer(screen("20230310", 30, "ACC-B-2023"), "HOSP-B"))
    current = with_issuer(screen("20240315", 20, "ACC-A-2024"), "HOSP-A")
    storescu(pacs, write(tmp_path / "current", current))
    pacs.wait_for(priors_fetched(pacs), 90)
    prior = Study.objects.get(case__isnull=True)
    assert prior.study_date.isoformat() == "2022-03-10"  # HOSP-B's 2023 study is someone else
    assert prior.prior_of == Study.objects.get(case__isnull=False).woman
