"""PACS deliveries sent by a real Celery worker process (Redis broker, PostgreSQL) to a real
Orthanc: a case closes in this process, the worker takes the delivery jobs and the objects
arrive in the woman's study; a worker killed mid-delivery leaves its row to the beat sweep
(``screening.pacs_sweep``), which sends it again, and the PACS keeps exactly one copy.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from screening.choices import DeliveryStatus
from screening.models import PacsDelivery
from tests.orthanc import Orthanc
from tests.screening.interop.test_pacs_delivery import closed_case, pacs_instances
from tests.workers import RedisServer, Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SEND_TIMEOUT = 5  # PACS_SEND_TIMEOUT_SECONDS in the worker: a dead send is taken again after it


class StallingProxy:
    """A TCP relay in front of the PACS whose first connection stops passing the PACS's
    answers once the sender has sent ``after`` bytes: the object reaches the PACS, its
    acknowledgement never reaches the sender (a worker that dies now has sent it, unacked).
    Every later connection is relayed whole."""

    def __init__(self, upstream_port: int, after: int) -> None:
        self.upstream_port, self.after = upstream_port, after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        self.stalled = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            first = self.connections == 1
            sent = [0]
            threading.Thread(
                target=self._pump, args=(client, upstream, sent, None), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, sent, first), daemon=True
            ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, sent: list[int], stall: bool | None
    ) -> None:
        try:
            while chunk := source.recv(65536):
                if stall is None:  # sender → PACS: counted, always relayed
                    sent[0] += len(chunk)
                elif stall and sent[0] >= self.after:
                    self.stalled.set()
                    continue  # the PACS's answer is swallowed
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def shared_media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pacs-worker-media")


@pytest.fixture(autouse=True)
def media_root(settings, shared_media):
    settings.MEDIA_ROOT = shared_media
    settings.IDENTITY_MODE = "clinical"
    return shared_media


def start_worker(tmp_path: Path, media: Path, redis: RedisServer, destination: str) -> Worker:
    """A worker with beat (the sweep every 2 s) sending to ``destination``."""
    env = {
        "CELERY_VISIBILITY_TIMEOUT": "60",
        "AI_SWEEP_SECONDS": "2",
        "PACS_DESTINATIONS": destination,
        "PACS_SEND_TIMEOUT_SECONDS": str(SEND_TIMEOUT),
        "PACS_RETRY_BASE_SECONDS": "1",
    }
    return Worker(
        redis.url, media, tmp_path / "worker.log", env, queues="default",
        beat_schedule=tmp_path / "beat-schedule",
    )  # fmt: skip


def all_sent(case_id: int, worker: Worker) -> bool:
    assert worker.process.poll() is None, worker.log.read_text()[-3000:]
    rows = PacsDelivery.objects.filter(case_id=case_id)
    return rows.exists() and not rows.exclude(status=DeliveryStatus.SENT).exists()


def test_a_worker_process_sends_a_closed_cases_results_into_the_pacs(
    tmp_path, shared_media, redis_broker, orthanc_factory, settings, radiologist, radiologist2
):
    pacs: Orthanc = orthanc_factory()
    destination = f"pacs=dicom://{pacs.ae_title}@127.0.0.1:{pacs.dicom_port}"
    settings.PACS_DESTINATIONS, settings.PACS_DESTINATION_AUTH = [destination], {}
    worker = start_worker(tmp_path, shared_media, redis_broker, destination)
    try:
        case = closed_case(radiologist, radiologist2, images=1)  # its jobs go out on commit
        wait_for(lambda: all_sent(case.pk, worker), 90, f"the deliveries; {worker.log}")
    finally:
        worker.stop()
    rows = PacsDelivery.objects.filter(case=case)
    assert rows.count() == 3 and set(rows.values_list("attempts", flat=True)) == {1}
    stored = pacs_instances(pacs)
    assert {str(i.SOPInstanceUID) for i in stored} == set(
        rows.values_list("sop_instance_uid", flat=True)
    )
    assert {i.StudyInstanceUID for i in stored} == {case.studies.get().study_instance_uid}


def test_a_worker_killed_mid_delivery_leaves_it_to_the_sweep_and_the_pacs_keeps_one_copy(
    tmp_path, shared_media, redis_broker, orthanc_factory, settings, radiologist, radiologist2
):
    pacs: Orthanc = orthanc_factory()
    # Past the association request (a few hundred bytes) the object itself is on its way.
    proxy = StallingProxy(pacs.dicom_port, after=2000)
    destination = f"pacs=dicom://{pacs.ae_title}@127.0.0.1:{proxy.port}"
    settings.PACS_DESTINATIONS, settings.PACS_DESTINATION_AUTH = [destination], {}
    worker = start_worker(tmp_path, shared_media, redis_broker, destination)
    try:
        case = closed_case(radiologist, radiologist2, images=1)
        rows = PacsDelivery.objects.filter(case=case)
        # Stored by the PACS, its answer held back: the worker waits for it, mid-delivery.
        wait_for(
            lambda: proxy.stalled.is_set() and len(pacs.get("/instances")) >= 1,
            60,
            f"the first object to reach the PACS; {worker.log}",
        )
        sending = rows.get(status=DeliveryStatus.SENDING)
        worker.kill_child()
        wait_for(lambda: all_sent(case.pk, worker), 90, f"the sweep's resend; {worker.log}")
    finally:
        worker.stop()
        proxy.close()
    sending.refresh_from_db()
    assert sending.attempts == 2  # claimed again once stale, sent again: the same instance
    assert rows.count() == 3
    stored = pacs_instances(pacs)
    assert len(stored) == 3
    assert {str(i.SOPInstanceUID) for i in stored} == set(
        rows.values_list("sop_instance_uid", flat=True)
    )
