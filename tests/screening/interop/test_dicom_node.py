"""The DICOM node: a real association on a real port, sent by pynetdicom and by dcmtk.

The node runs in this process's threads against the test database (transaction=True: its
association threads see what they commit); senders are pynetdicom's SCU and dcmtk's
``echoscu``/``storescu`` (skipped, saying so, where dcmtk is not installed).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from screening.choices import AIStatus, AuditAction, AuditOutcome
from screening.interop.dicom_node import (
    TRANSFER_SYNTAXES,
    DicomNode,
    node_from_settings,
    parse_peers,
)
from screening.models import AIResult, AuditEvent, Case, Image, Study
from screening.ops.metrics import exposition
from tests.dicom_files import MG_FOR_PRESENTATION, dicom_bytes, identifying_strings

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[3]
NODE_AE = "MAMMO_TEST"
SENDER = "MODALITY1"
PORTS = range(11112, 11120)


def four_views(seed: int = 30, accession: str = "ACC-NODE-1") -> list[bytes]:
    study_uid = generate_uid()
    views = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]
    return [
        dicom_bytes(
            seed=seed + i,
            size=256,
            study_uid=study_uid,
            laterality=side,
            view=view,
            accession=accession,
            compressed=i == 3,  # RLE Lossless: a compressed syntax the upload accepts
        )
        for i, (side, view) in enumerate(views)
    ]


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 11112-11119 for the DICOM node")


@pytest.fixture
def node(admin_user, active_model) -> Iterator[int]:
    """The node on a free port, accepting MODALITY1 from this machine only."""
    port = free_port()
    server = DicomNode(admin_user, NODE_AE, parse_peers([f"{SENDER}@127.0.0.1"])).start(
        "127.0.0.1", port
    )
    yield port
    server.shutdown()


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the node did not finish in time"
        time.sleep(0.1)


def associations_ended(n: int = 1) -> Callable[[], bool]:
    return lambda: AuditEvent.objects.filter(action=AuditAction.DICOM_ASSOCIATION).count() >= n


def send(port: int, instances: list[bytes], calling_ae: str = SENDER) -> list[int]:
    """C-STORE each instance in one association; the status of each."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(MG_FOR_PRESENTATION, TRANSFER_SYNTAXES[:2])
    ae.add_requested_context(MG_FOR_PRESENTATION, "1.2.840.10008.1.2.5")  # RLE Lossless
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    assert assoc.is_established
    statuses = []
    for content in instances:
        status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(content)))
        statuses.append(int(status.Status))
    assoc.release()
    return statuses


def test_it_answers_c_echo(node: int) -> None:
    ae = AE(ae_title=SENDER)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node, ae_title=NODE_AE)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_a_four_view_study_is_stored_as_one_study_and_queued_for_ai(node: int) -> None:
    assert send(node, four_views()) == [0x0000] * 4
    wait_for(associations_ended())
    study = Study.objects.get()
    assert study.images.count() == 4
    assert AIResult.for_images.filter(image__study=study, status=AIStatus.QUEUED).count() == 4
    ended = AuditEvent.objects.get(action=AuditAction.DICOM_ASSOCIATION)
    assert ended.outcome == AuditOutcome.SUCCESS
    assert ended.detail["calling_ae"] == SENDER
    assert ended.detail["instances"] == 4 and ended.detail["studies_stored"] == 1
    assert AuditEvent.objects.filter(action=AuditAction.STUDY_UPLOADED).count() == 1


def test_instances_of_two_studies_in_one_association_are_filed_as_two_studies(node: int) -> None:
    first, second = four_views(30, "ACC-NODE-1")[:2], four_views(50, "ACC-NODE-2")[:2]
    assert send(node, [first[0], second[0], first[1], second[1]]) == [0x0000] * 4
    wait_for(associations_ended())
    assert sorted(s.images.count() for s in Study.objects.all()) == [2, 2]


def test_an_unknown_ae_title_is_rejected_at_association(node: int) -> None:
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node, ae_title=NODE_AE)
    assert assoc.is_rejected
    rejected = AuditEvent.objects.get(action=AuditAction.DICOM_ASSOCIATION_REJECTED)
    assert rejected.detail["calling_ae"] == "STRANGER"
    assert rejected.detail["reason"] == "unknown calling AE title"
    assert 'mammo_dicom_associations_total{outcome="rejected"}' in exposition(None)[0].decode()


def test_a_known_ae_title_from_another_address_is_rejected(admin_user, active_model) -> None:
    port = free_port()
    peers = parse_peers([f"{SENDER}@192.0.2.7"])  # TEST-NET-1: never this machine
    server = DicomNode(admin_user, NODE_AE, peers).start("127.0.0.1", port)
    try:
        ae = AE(ae_title=SENDER)
        ae.add_requested_context(Verification)
        assert ae.associate("127.0.0.1", port, ae_title=NODE_AE).is_rejected
    finally:
        server.shutdown()
    rejected = AuditEvent.objects.get(action=AuditAction.DICOM_ASSOCIATION_REJECTED)
    assert rejected.detail["reason"] == "calling AE title not allowed from this address"
    assert rejected.detail["address"] == "127.0.0.1"


def test_a_call_to_another_ae_title_is_rejected(node: int) -> None:
    ae = AE(ae_title=SENDER)
    ae.add_requested_context(Verification)
    assert ae.associate("127.0.0.1", node, ae_title="SOMEONE_ELSE").is_rejected
    rejected = AuditEvent.objects.get(action=AuditAction.DICOM_ASSOCIATION_REJECTED)
    assert rejected.detail["reason"] == "called AE title 'SOMEONE_ELSE' is not this node's"


def test_with_no_peers_configured_every_caller_is_rejected(admin_user, settings) -> None:
    settings.DICOM_NODE_PEERS = []
    settings.DICOM_NODE_AE_TITLE = NODE_AE
    port = free_port()
    server = node_from_settings(admin_user).start("127.0.0.1", port)
    try:
        ae = AE(ae_title=SENDER)
        ae.add_requested_context(Verification)
        assert ae.associate("127.0.0.1", port, ae_title=NODE_AE).is_rejected
    finally:
        server.shutdown()
    assert AuditEvent.objects.filter(action=AuditAction.DICOM_ASSOCIATION_REJECTED).count() == 1


def test_halves_of_a_study_sent_over_two_associations_at_once_make_one_study(node: int) -> None:
    from tests.conftest import requires_postgres

    requires_postgres()  # concurrent transactions and row locks
    instances = four_views()
    statuses: list[list[int]] = []
    senders = [
        threading.Thread(target=lambda half=half: statuses.append(send(node, half)))
        for half in (instances[:2], instances[2:])
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert statuses == [[0x0000] * 2] * 2
    wait_for(associations_ended(2))
    assert Study.objects.get().images.count() == 4
    assert Case.objects.count() == 1


def test_a_corrupt_instance_refuses_its_whole_study_and_stores_nothing(node: int, settings) -> None:
    instances = four_views()
    broken = pydicom.dcmread(io.BytesIO(instances[2]))
    broken.PixelData = broken.PixelData[: len(broken.PixelData) // 2]  # cut short
    buffer = io.BytesIO()
    broken.save_as(buffer)
    instances[2] = buffer.getvalue()
    statuses = send(node, instances)
    assert statuses[:2] == [0x0000, 0x0000]
    assert statuses[2] == 0xC000  # the corrupt one: cannot understand
    assert statuses[3] == 0x0110  # valid, but its study is already refused
    wait_for(associations_ended())
    assert Study.objects.count() == Case.objects.count() == Image.objects.count() == 0
    assert not any(Path(settings.MEDIA_ROOT).rglob("*.dcm"))
    refusals = AuditEvent.objects.filter(action=AuditAction.DICOM_REFUSED)
    assert [e.detail["refused"] for e in refusals.order_by("pk")] == [
        "instance",
        "instance",
        "study",
    ]
    assert all("HOSP-0042" not in str(e.detail) for e in refusals)


def test_the_log_names_no_patient_and_no_original_uid(node: int, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    stored, refused = four_views(30, "ACC-NODE-1"), four_views(50, "ACC-NODE-2")
    refused[1] = refused[1][:-300]  # a file cut short
    send(node, stored + refused)
    wait_for(associations_ended())
    assert "refused" in caplog.text and "stored as study" in caplog.text
    originals = [pydicom.dcmread(io.BytesIO(c)) for c in (stored[0], refused[0])]
    for secret in [
        *identifying_strings(),
        *(str(ds.StudyInstanceUID) for ds in originals),
        *(str(ds.SOPInstanceUID) for ds in originals),
        "ACC-NODE",
    ]:
        assert secret not in caplog.text
        for event in AuditEvent.objects.all():
            assert secret not in str(event.detail)


def test_a_study_that_cannot_be_written_is_kept_on_disk_for_import(
    node: int, settings, tmp_path
) -> None:
    """Success was answered for every instance: a storage fault must not lose them."""
    blocked = tmp_path / "media-is-a-file"
    blocked.write_text("not a folder")
    settings.MEDIA_ROOT = str(blocked)
    settings.VAR_DIR = tmp_path / "var"
    assert send(node, four_views()) == [0x0000] * 4
    wait_for(associations_ended())
    assert Study.objects.count() == Image.objects.count() == 0
    (kept,) = (tmp_path / "var" / "dicom-unfiled").iterdir()
    assert sorted(p.name for p in kept.iterdir()) == [
        "0001.dcm",
        "0002.dcm",
        "0003.dcm",
        "0004.dcm",
    ]
    refusal = AuditEvent.objects.get(action=AuditAction.DICOM_REFUSED)
    assert refusal.detail["code"] == "unfiled"
    settings.MEDIA_ROOT = str(tmp_path / "media")  # the fault fixed: the README's way back
    call_command("import_studies", str(kept.parent), as_user="admin1")
    assert Study.objects.get().images.count() == 4


def test_a_study_over_the_upload_limit_is_refused_while_the_sender_can_be_told(
    node: int, settings
) -> None:
    settings.UPLOAD_MAX_FILES = 3
    assert send(node, four_views()) == [0x0000, 0x0000, 0x0000, 0xA700]
    wait_for(associations_ended())
    assert Study.objects.count() == 0


def test_the_same_study_sent_again_is_answered_success_and_not_duplicated(node: int) -> None:
    instances = four_views()
    assert send(node, instances) == [0x0000] * 4
    wait_for(associations_ended(1))
    assert send(node, instances) == [0x0000] * 4
    wait_for(associations_ended(2))
    assert Study.objects.count() == 1
    assert Image.objects.count() == 4
    second = AuditEvent.objects.filter(action=AuditAction.DICOM_ASSOCIATION).order_by("pk").last()
    assert second is not None and second.detail["studies_stored"] == 1
    scrape = exposition(None)[0].decode()
    assert 'mammo_dicom_studies_total{outcome="already_stored"}' in scrape


def open_association(port: int) -> Association:
    ae = AE(ae_title=SENDER)
    ae.add_requested_context(MG_FOR_PRESENTATION, TRANSFER_SYNTAXES[:2])
    ae.add_requested_context(MG_FOR_PRESENTATION, "1.2.840.10008.1.2.5")
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    assert assoc.is_established
    return assoc


def test_instances_answered_success_are_filed_when_the_sender_aborts(node: int) -> None:
    assoc = open_association(node)
    for content in four_views():
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(content))).Status == 0x0000
    assoc.abort()
    wait_for(associations_ended())
    assert Study.objects.get().images.count() == 4
    ended = AuditEvent.objects.get(action=AuditAction.DICOM_ASSOCIATION)
    assert ended.detail["ended"] == "aborted"


def test_a_sender_quiet_past_the_quiet_period_has_its_study_filed(admin_user, active_model) -> None:
    port = free_port()
    peers = parse_peers([f"{SENDER}@127.0.0.1"])
    server = DicomNode(admin_user, NODE_AE, peers, quiet_seconds=1).start("127.0.0.1", port)
    try:
        assoc = open_association(port)
        for content in four_views():
            assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(content))).Status == 0x0000
        wait_for(associations_ended(), seconds=15)  # the sender never released
        assert Study.objects.get().images.count() == 4
        assert not assoc.is_established
    finally:
        server.shutdown()


def test_a_peer_entry_without_a_host_stops_the_node() -> None:
    with pytest.raises(ImproperlyConfigured):
        parse_peers(["MODALITY1"])


DCMTK = pytest.mark.skipif(
    shutil.which("storescu") is None or shutil.which("echoscu") is None,
    reason="dcmtk is not installed (apt-get install dcmtk; scripts/test does it as root)",
)


@DCMTK
def test_dcmtk_echoscu_is_answered(node: int) -> None:
    done = subprocess.run(
        ["echoscu", "-aet", SENDER, "-aec", NODE_AE, "127.0.0.1", str(node)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@DCMTK
def test_dcmtk_echoscu_with_an_unknown_ae_title_is_rejected(node: int) -> None:
    done = subprocess.run(
        ["echoscu", "-aet", "STRANGER", "-aec", NODE_AE, "127.0.0.1", str(node)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Calling AE Title Not Recognized" in done.stderr + done.stdout
    assert AuditEvent.objects.filter(action=AuditAction.DICOM_ASSOCIATION_REJECTED).count() == 1


@DCMTK
def test_dcmtk_storescu_sends_a_four_view_study(node: int, tmp_path: Path) -> None:
    paths = []
    for i, content in enumerate(four_views()):
        paths.append(tmp_path / f"IM{i}.dcm")
        paths[-1].write_bytes(content)
    done = subprocess.run(
        ["storescu", "--propose-rle", "-aet", SENDER, "-aec", NODE_AE, "127.0.0.1", str(node)]
        + [str(path) for path in paths],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    wait_for(associations_ended())
    study = Study.objects.get()
    assert study.images.count() == 4
    assert AIResult.for_images.filter(image__study=study, status=AIStatus.QUEUED).count() == 4


def test_the_dicom_node_command_counts_in_the_web_process_metrics(
    admin_user, active_model, client, settings, tmp_path, monkeypatch
) -> None:
    """``manage.py dicom_node`` is a process of its own: its counts reach the web's /metrics
    through the shared PROMETHEUS_MULTIPROC_DIR, as scripts/run and compose.yaml set it."""
    from django.db import connection

    from tests.conftest import requires_postgres
    from tests.screening.ops.test_ops_metrics import TOKEN, scrape, value

    requires_postgres()  # the command's process must see the test database
    db = connection.settings_dict
    folder = tmp_path / "prometheus"
    folder.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "DICOM_NODE_AE_TITLE": NODE_AE,
        "DICOM_NODE_PEERS": f"{SENDER}@127.0.0.1",
        "DEBUG": "1",
    }
    node = subprocess.Popen(
        [sys.executable, "manage.py", "dicom_node", "--port", str(port), "--as-user", "admin1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _listening(port) or node.poll() is not None, seconds=60)
        assert node.poll() is None, node.stdout.read().decode()[-2000:]  # type: ignore[union-attr]
        assert send(port, four_views()) == [0x0000] * 4
        stranger = AE(ae_title="STRANGER")
        stranger.add_requested_context(Verification)
        assert stranger.associate("127.0.0.1", port, ae_title=NODE_AE).is_rejected
        wait_for(associations_ended())
    finally:
        node.terminate()
        assert node.wait(timeout=30) == 0
    assert Study.objects.get().images.count() == 4
    settings.METRICS_TOKEN = TOKEN
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    samples = scrape(client)
    assert value(samples, "mammo_dicom_associations_total", outcome="accepted") == 1
    assert value(samples, "mammo_dicom_associations_total", outcome="rejected") == 1
    assert value(samples, "mammo_dicom_instances_total", outcome="received") == 4
    assert value(samples, "mammo_dicom_studies_total", outcome="stored") == 1


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_node_serves_as_many_associations_at_once_as_configured(settings, admin_user) -> None:
    """A burst routed by a PACS must not meet pynetdicom's default limit of 10."""
    settings.DICOM_NODE_MAX_ASSOCIATIONS = 40
    ae = DicomNode(admin_user, NODE_AE, parse_peers([f"{SENDER}@127.0.0.1"])).application_entity()
    assert ae.maximum_associations == 40


def test_an_association_past_the_limit_is_refused_as_busy_audited_and_counted(
    settings, admin_user
) -> None:
    settings.DICOM_NODE_MAX_ASSOCIATIONS = 1
    port = free_port()
    server = DicomNode(admin_user, NODE_AE, parse_peers([f"{SENDER}@127.0.0.1"])).start(
        "127.0.0.1", port
    )
    sender = AE(ae_title=SENDER)
    sender.add_requested_context(Verification)
    try:
        held = sender.associate("127.0.0.1", port, ae_title=NODE_AE)
        assert held.is_established
        refused = sender.associate("127.0.0.1", port, ae_title=NODE_AE)
        assert refused.is_rejected
        assert held.send_c_echo().Status == 0x0000  # the one being served goes on
        held.release()
        wait_for(lambda: not [a for a in server.active_associations if a.is_acceptor])
        again = sender.associate("127.0.0.1", port, ae_title=NODE_AE)
        assert again.is_established  # transient: a later try is let in
        again.release()
    finally:
        server.shutdown()
    busy = AuditEvent.objects.get(action=AuditAction.DICOM_ASSOCIATION_REJECTED)
    assert busy.detail["code"] == "busy" and busy.detail["calling_ae"] == SENDER
    assert busy.outcome == AuditOutcome.FAILURE
    assert 'mammo_dicom_association_refusals_total{reason="busy"} 1.0' in (
        exposition(None)[0].decode()
    )
