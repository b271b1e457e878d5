"""PACS routing benchmark: a burst of studies arriving in Orthanc, routed to the portal, scored.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mammo_pacs \\
        .venv/bin/python benchmarks/pacs.py [--studies 100] [--size 512] [--senders 8]

Sets up, on this machine: a throw-away PostgreSQL database (as benchmarks/scale_out.py does),
a redis-server of its own, one Celery worker process (``-Q inference,default``) with the
shipped model active, Debian's Orthanc with the project's configuration and routing script
(deploy/orthanc, through tests/orthanc.py, StableAge 2 s), and the portal's DICOM node
(``DicomNode``, in this process's threads, as ``manage.py dicom_node`` runs it) accepting
Orthanc. The site is in clinical mode, so a study is found in the portal by its own UID.

Then ``--studies`` four-view MG studies (``--size`` pixels square, 12-bit) are sent to Orthanc
at once by dcmtk's ``storescu`` (one association per study, ``--senders`` at a time, as
modalities do); each study's arrival is the moment its last instance is acknowledged by
Orthanc. Orthanc routes each study when it is stable (one C-STORE job per study, its
ConcurrentJobs at the configured default); the node files it and queues its AI job; the worker
scores it. The run ends when every study has a case score or after ``--timeout`` seconds.

Checks: none lost (every study stored, with its four films, and scored), none duplicated (one
portal study per study sent, one routing job per study in Orthanc's log). Columns: p50, p95
and max seconds from arrival in Orthanc to the study stored in the portal, and to its AI
score (the case result's ``finished_at``). The machine's load (1-minute load average, cores)
is printed before and after: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._workers import RedisServer, Worker, free_port, wait_for  # noqa: E402

_TMP = Path(tempfile.mkdtemp(prefix="mammo-pacs-bench-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
_REDIS_PORT = free_port()
os.environ["MEDIA_ROOT"] = str(_TMP / "media")
os.environ["MAMMO_VAR_DIR"] = str(_TMP / "var")
os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{_REDIS_PORT}/0"
os.environ["IDENTITY_MODE"] = "clinical"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mammo_portal.settings")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-not-for-production-use")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402

# benchmarks.worklist sets Django up on import, after the environment above. (Not
# benchmarks.scale_out: importing it sets its own broker and folders.)
from benchmarks.worklist import throwaway_database  # noqa: E402
from screening.ai import actions as ai_actions  # noqa: E402
from screening.choices import AIStatus  # noqa: E402
from screening.interop.dicom_node import DicomNode, parse_peers  # noqa: E402
from screening.models import AIResult, Image, Study  # noqa: E402
from tests.dicom_files import dicom_bytes  # noqa: E402
from tests.orthanc import PORTAL_AET, Orthanc, start_orthanc  # noqa: E402

VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))
SHIPPED = REPO / "models" / "custom_cnn-mias-abnormal-v1"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_env(broker_url: str) -> dict[str, str]:
    """The worker's environment: this benchmark's database, broker and folders."""
    db = connection.settings_dict
    user = quote(db["USER"] or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{user}{password}@{host}:{port}/{quote(db['NAME'], safe='')}",
        "CELERY_BROKER_URL": broker_url,
        "LOG_LEVEL": "INFO",  # the worker's "ready." line is read
        "LOG_FORMAT": "plain",
    }


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def write_studies(n: int, size: int) -> dict[str, list[Path]]:
    """``n`` four-view studies as files, by their Study Instance UID."""
    from pydicom.uid import generate_uid

    studies: dict[str, list[Path]] = {}
    for i in range(n):
        uid = generate_uid()
        folder = _TMP / "modality" / f"{i:04d}"
        folder.mkdir(parents=True)
        paths = []
        for j, (side, view) in enumerate(VIEWS):
            path = folder / f"{side}{view}.dcm"
            content = dicom_bytes(
                seed=1000 + 4 * i + j,
                size=size,
                study_uid=uid,
                laterality=side,
                view=view,
                accession=f"PACS-BENCH-{i:04d}",
                patient_id=f"PACS-BENCH-{i:04d}",
            )
            path.write_bytes(content)
            paths.append(path)
        studies[uid] = paths
    return studies


def send_all(pacs: Orthanc, studies: dict[str, list[Path]], senders: int) -> dict[str, float]:
    """storescu each study (one association each, ``senders`` at once); arrival times."""
    arrived: dict[str, float] = {}
    lock = threading.Lock()

    def send(uid: str) -> None:
        sent = subprocess.run(
            ["storescu", "-aec", pacs.ae_title, "127.0.0.1", str(pacs.dicom_port),
             *map(str, studies[uid])],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if sent.returncode != 0:
            raise RuntimeError(f"storescu failed: {sent.stderr[-500:]}")
        with lock:
            arrived[uid] = time.time()

    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(send, studies))
    return arrived


def quantiles(seconds: list[float]) -> tuple[float, float, float]:
    if not seconds:
        return (float("nan"),) * 3
    p50, p95 = np.quantile(seconds, [0.5, 0.95])
    return float(p50), float(p95), max(seconds)


def measure(args: argparse.Namespace, admin, pacs: Orthanc) -> dict:
    print(f"Writing {args.studies} studies of four {args.size}px films ...", flush=True)
    studies = write_studies(args.studies, args.size)
    print(f"Sending them to Orthanc, {args.senders} associations at a time ...", flush=True)
    began = time.time()
    arrived = send_all(pacs, studies, args.senders)
    print(f"All in Orthanc after {time.time() - began:.1f} s; waiting for scores ...", flush=True)
    case_results = AIResult.for_cases.filter(status__in=(AIStatus.DONE, AIStatus.FAILED))
    try:
        wait_for(lambda: case_results.count() >= args.studies, args.timeout, "every score", 1.0)
    except TimeoutError as error:
        print(f"!! {error}", flush=True)
    stored = {s.study_instance_uid: s for s in Study.objects.all()}
    scored = {}
    for uid, finished in (
        AIResult.for_cases.filter(status=AIStatus.DONE)
        .values_list("case__studies__study_instance_uid", "finished_at")
        .order_by()
    ):
        assert finished is not None  # a done result has finished
        scored[uid] = finished.timestamp()
    images = dict.fromkeys(stored, 0)
    for uid in Image.objects.values_list("study__study_instance_uid", flat=True):
        images[uid] += 1
    return {
        "sent": len(studies),
        "stored": sum(1 for uid in studies if uid in stored and images[uid] == 4),
        "portal_studies": Study.objects.count(),
        "routings": pacs.log().count("Routing study"),
        "scored": sum(1 for uid in studies if uid in scored),
        "failed": AIResult.for_cases.filter(status=AIStatus.FAILED).count(),
        "to_stored": [
            stored[u].created_at.timestamp() - arrived[u] for u in arrived if u in stored
        ],
        "to_score": [scored[u] - arrived[u] for u in arrived if u in scored],
        "send_seconds": max(arrived.values()) - began,
    }


def report(args: argparse.Namespace, figures: dict, load: tuple[tuple, tuple]) -> bool:
    lost = figures["sent"] - figures["stored"]
    duplicated = figures["portal_studies"] - figures["stored"]
    rerouted = figures["routings"] - figures["sent"]
    print(
        f"\nPACS routing: {figures['sent']} studies x 4 films ({args.size}px) sent to Orthanc in "
        f"{figures['send_seconds']:.1f} s; {platform.processor() or platform.machine()}, "
        f"{cores()} cores; load average {load[0][0]:.1f} before, {load[1][0]:.1f} after\n"
    )
    print("| check | studies |")
    print("|---|---:|")
    for name, value in (
        ("sent to Orthanc", figures["sent"]),
        ("stored in the portal, four films each", figures["stored"]),
        ("scored (case AI result done)", figures["scored"]),
        ("lost (sent, not stored)", lost),
        ("duplicated (portal studies beyond those sent)", duplicated),
        ("routed more than once (Orthanc's log)", max(rerouted, 0)),
        ("AI failed", figures["failed"]),
    ):
        print(f"| {name} | {value} |")
    print("\n| from arrival in Orthanc to | p50 s | p95 s | max s |")
    print("|---|---:|---:|---:|")
    for name, key in (("stored in the portal", "to_stored"), ("AI score", "to_score")):
        p50, p95, top = quantiles(figures[key])
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {top:.1f} |")
    return lost == 0 and duplicated == 0 and rerouted == 0 and figures["scored"] == figures["sent"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=100, help="studies sent (default 100)")
    parser.add_argument("--size", type=int, default=512, help="film side in pixels (512)")
    parser.add_argument("--senders", type=int, default=8, help="storescu at once (8)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait (1200)")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        parser.error("set DATABASE_URL to a PostgreSQL server (postgres://USER@HOST:PORT/NAME)")
    for tool in ("redis-server", "storescu"):
        if not shutil.which(tool):
            parser.error(f"{tool} is not installed")
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    load_before = os.getloadavg()
    redis = RedisServer(_TMP / "redis", _REDIS_PORT)
    worker = pacs = server = None
    try:
        redis.start()
        with throwaway_database():
            try:
                admin = get_user_model().objects.create_user("bench-admin", password=None)
                ai_actions.register_model_version(admin, str(SHIPPED), activate=True)
                worker = Worker("pacs", worker_env(redis.url), _TMP / "worker.log",
                                queues="inference,default")  # fmt: skip
                wait_for(worker.ready, 180, "the worker to be ready")
                node_port = free_port()
                server = DicomNode(
                    admin, PORTAL_AET, parse_peers(["ORTHANC@127.0.0.1"]), quiet_seconds=30
                ).start("127.0.0.1", node_port)
                pacs = start_orthanc(_TMP / "orthanc", portal_port=node_port, stable_age=2)
                figures = measure(args, admin, pacs)
            finally:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                if pacs is not None:
                    pacs.stop()
                if server is not None:
                    server.shutdown()
                if worker is not None:
                    worker.stop()
                connection.close()
    finally:
        redis.stop()
    return 0 if report(args, figures, (load_before, os.getloadavg())) else 1


if __name__ == "__main__":
    sys.exit(main())
