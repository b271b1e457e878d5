"""Scale-out benchmark: 1, 2, 4 inference worker processes on one PostgreSQL and one Redis.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mammo_scale \\
        .venv/bin/python benchmarks/scale_out.py [--workers 1,2,4] [--studies 16] [--tf-threads K]

Sets up, on this machine: a throw-away PostgreSQL database (``test_<name>`` on
DATABASE_URL's server, created, migrated and dropped as benchmarks/worklist.py does), a
redis-server of its own on a free port (nothing persisted), the shipped model registered
and activated, and ``--studies`` studies of four synthetic 12-bit 1024 x 832 films uploaded
through the real upload action (plus one warm-up study per worker). The jobs the uploads
send land in Redis while no worker runs; the broker is flushed before every round.

Each round, for N workers: every result goes back to *queued*; N separate
``celery -A mammo_portal worker -Q inference -c 1 --without-gossip --without-mingle``
processes start; each scores one warm-up study first (model load, checksum, first compiled
call: reported as warm-up, not timed), sent one at a time so each cold worker takes one;
then every study's job is sent (``screening.ai.inference.dispatch``, as the upload and the
sweep do) and the round lasts from the first send to the last result written
(``AIResult.finished_at``). The workers are stopped after each round.

Columns: films/s over that span, speed-up against the one-worker round, mean predict
seconds per film (``AIResult.timings``: the film's share of the batched compiled pass),
studies each worker took, warm-up seconds (the slowest worker); then the per-stage means
as benchmarks/pipeline.py prints them, and each worker's pool process: threads (TensorFlow's
thread pools show here) and resident memory.

``--tf-threads K`` sets TF_NUM_INTRAOP_THREADS, TF_NUM_INTEROP_THREADS and OMP_NUM_THREADS
to K in the workers (TensorFlow reads the first two when it starts its thread pools); by
default each worker's TensorFlow uses every core, so N workers on fewer cores than N x
threads oversubscribe them.

Everything it started (workers, redis-server, database, temporary files) is removed at the
end, on an error and on Ctrl+C or SIGTERM.
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._workers import RedisServer, Worker, free_port, wait_for  # noqa: E402

_TMP = Path(tempfile.mkdtemp(prefix="mammo-scale-bench-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)  # also after --help or a usage error
_REDIS_PORT = free_port()
os.environ["MEDIA_ROOT"] = str(_TMP / "media")
os.environ["MAMMO_VAR_DIR"] = str(_TMP / "var")
# This process publishes to the benchmark's own Redis (Celery reads the variable first).
os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{_REDIS_PORT}/0"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mammo_portal.settings")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-not-for-production-use")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Max  # noqa: E402
from django.utils import timezone  # noqa: E402

from benchmarks._films import study_files  # noqa: E402

# benchmarks.worklist sets Django up on import, after the environment above.
from benchmarks.worklist import throwaway_database  # noqa: E402
from screening.ai import actions as ai_actions  # noqa: E402
from screening.ai import inference  # noqa: E402
from screening.choices import AIStatus  # noqa: E402
from screening.intake import actions as intake_actions  # noqa: E402
from screening.models import AIResult, ModelVersion, Study  # noqa: E402

SHIPPED = REPO / "models" / "custom_cnn-mias-abnormal-v1"
FILMS_PER_STUDY = 4
STAGES = ("decode", "preprocess", "predict", "gradcam", "write")
STAGE_HEADS = (
    "decode s", "preprocess s", "predict + Grad-CAM pass s", "heatmap assembly s", "write s",
)  # fmt: skip
THREAD_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
FINAL = (AIStatus.DONE, AIStatus.FAILED)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _shield() -> None:
    """From here on the clean-up must finish: a second Ctrl+C must not leave a database."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def upload(admin, label: str, seed: int) -> Study:
    spec = intake_actions.StudySpec(
        accession_number=f"SCALE-{label}", patient_pseudonym=f"SCALE-{label}", synthetic=True
    )
    return intake_actions.upload_study(admin, spec, study_files(seed)).study


def image_results(version: ModelVersion, studies: list[Study]):
    return AIResult.objects.filter(model_version=version, image__study__in=[s.pk for s in studies])


def reset(version: ModelVersion) -> None:
    """Every image result back to queued, as if just uploaded and never sent."""
    AIResult.for_images.filter(model_version=version).update(
        status=AIStatus.QUEUED,
        task_id="",
        attempts=0,
        dispatched_at=None,
        started_at=None,
        finished_at=None,
        probability=None,
        heatmap="",
        timings={},
        error="",
    )


def database_url() -> str:
    db = connection.settings_dict
    user = quote(db["USER"] or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or 5432
    return f"postgres://{user}{password}@{host}:{port}/{quote(db['NAME'], safe='')}"


def worker_env(broker_url: str, tf_threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=broker_url,
        MEDIA_ROOT=os.environ["MEDIA_ROOT"],
        MAMMO_VAR_DIR=os.environ["MAMMO_VAR_DIR"],
        DJANGO_SETTINGS_MODULE="mammo_portal.settings",
        LOG_LEVEL="INFO",  # the worker's "ready." and "succeeded in" lines are read
        LOG_FORMAT="plain",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    if tf_threads:
        env.update({name: str(tf_threads) for name in THREAD_VARS})
    return env


def send(study: Study, version: ModelVersion) -> None:
    if not inference.dispatch(study.pk, version.pk):
        raise RuntimeError("The benchmark's Redis refused a job.")


def wait_final(
    version: ModelVersion, studies: list[Study], workers: list[Worker], seconds: float, what: str
) -> None:
    results = image_results(version, studies)
    expected = len(studies) * FILMS_PER_STUDY

    def finished() -> bool:
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"worker {worker.name} exited; its log:\n{worker.tail()}")
        return results.filter(status__in=FINAL).count() >= expected

    wait_for(finished, seconds, what, every=0.25)


def logged(workers: list[Worker], jobs: int) -> None:
    """Wait (briefly) until the workers' logs show ``jobs`` finished jobs in all."""
    try:
        wait_for(lambda: sum(w.succeeded() for w in workers) >= jobs, 10, "the workers' logs")
    except TimeoutError:
        pass  # the per-worker counts are informative only


def one_round(
    n: int,
    version: ModelVersion,
    warm_studies: list[Study],
    studies: list[Study],
    redis: RedisServer,
    workers: list[Worker],
    tf_threads: int,
) -> dict:
    redis.flush()
    reset(version)
    env = worker_env(redis.url, tf_threads)
    for i in range(n):
        workers.append(Worker(f"scale{n}-{i + 1}", env, _TMP / f"worker-{n}-{i + 1}.log"))
    wait_for(lambda: all(w.ready() for w in workers), 180, f"{n} workers to be ready")

    # Warm-up: one study per worker, each sent once the previous one is claimed, so each
    # cold worker (busy loading the model for seconds, prefetching nothing meanwhile) takes one.
    warm = warm_studies[:n]
    for study in warm:
        send(study, version)
        claimed = image_results(version, [study]).exclude(status=AIStatus.QUEUED)
        wait_for(claimed.exists, 180, f"warm-up study {study.pk} to be claimed")
    wait_final(version, warm, workers, 600, "the warm-up studies")
    warmups = []
    for study in warm:
        span = image_results(version, [study]).aggregate(
            sent=Max("dispatched_at"), done=Max("finished_at")
        )
        warmups.append((span["done"] - span["sent"]).total_seconds())
    logged(workers, n)  # a job's "succeeded" line follows its last row by a moment
    warmed = [w.succeeded() for w in workers]
    cold = [w.name for w, jobs in zip(workers, warmed, strict=True) if jobs < 1]
    if cold:
        print(f"  note: {', '.join(cold)} took no warm-up study: its model load is timed")
    processes = [w.child_status() for w in workers]

    start = timezone.now()
    for study in studies:
        send(study, version)
    films = len(studies) * FILMS_PER_STUDY
    wait_final(version, studies, workers, 180 + 30 * films, f"{films} films scored")
    results = list(image_results(version, studies))
    end = max(r.finished_at for r in results)
    failed = [r for r in results if r.status != AIStatus.DONE]
    if failed:
        raise RuntimeError(f"{len(failed)} films not scored: {failed[0].error}")
    logged(workers, n + len(studies))
    taken = [w.succeeded() - before for w, before in zip(workers, warmed, strict=True)]
    for worker in workers:
        worker.stop()
    workers.clear()

    seconds = (end - start).total_seconds()
    row = {
        "workers": n,
        "films": len(results),
        "seconds": seconds,
        "films_per_s": len(results) / seconds,
        "taken": taken,
        "warmup_s": max(warmups),
        "threads": [p.get("threads") for p in processes],
        "rss_mib": [p.get("rss_mib") for p in processes],
        "patches": statistics.mean(r.timings.get("patches", 0) for r in results),
    }
    for stage in STAGES:
        row[stage] = statistics.mean(r.timings.get(stage, 0.0) for r in results)
    print(
        f"  {n} worker(s): {row['films']} films in {seconds:.1f} s = "
        f"{row['films_per_s']:.2f} films/s (warm-up {row['warmup_s']:.1f} s)",
        flush=True,
    )
    return row


def _same(values: list) -> str:
    shown = sorted({str(v) if v is not None else "?" for v in values})
    return "/".join(shown)


def print_tables(rows: list[dict], header: str, tf_threads: int) -> None:
    base = next((r for r in rows if r["workers"] == 1), rows[0])
    versus = f"speed-up vs {base['workers']}"
    threads = (
        f"TF threads per worker: {tf_threads} ({', '.join(THREAD_VARS)}={tf_threads})"
        if tf_threads
        else f"TF threads per worker: TensorFlow's default (intra-op = all {cores()} cores)"
    )
    print(f"\n{header}\n{threads}\n")
    print(
        f"| workers | films | seconds | films/s | {versus} | mean predict s/film "
        "| studies per worker | warm-up s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['films']} | {r['seconds']:.1f} | {r['films_per_s']:.2f} | "
            f"{r['films_per_s'] / base['films_per_s']:.2f} | {r['predict']:.3f} | "
            f"{'/'.join(str(t) for t in r['taken'])} | {r['warmup_s']:.1f} |"
        )
    print("\nPer film, mean seconds per stage (AIResult.timings), and each worker's pool process\n")
    print(
        "| workers | patches/film | "
        + " | ".join(STAGE_HEADS)
        + " | threads/process | RSS MiB/process |"
    )
    print("|" + "---|" * (len(STAGES) + 4))
    for r in rows:
        stages = " | ".join(f"{r[s]:.3f}" for s in STAGES)
        print(
            f"| {r['workers']} | {r['patches']:.0f} | {stages} | {_same(r['threads'])} | "
            f"{_same(r['rss_mib'])} |"
        )
    most = max(r["workers"] for r in rows)
    if most > cores():
        print(
            f"\nThis machine has {cores()} cores: past {cores()} worker processes they share "
            f"the same cores, so films/s flattens from about {cores()} workers on and the "
            "predict time per film grows. Throughput scales with cores (machines, GPUs), "
            "not with processes on the same cores."
        )


def parse_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts are positive integers, e.g. 1,2,4")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workers",
        type=parse_counts,
        default=[1, 2, 4],
        help="worker process counts, comma-separated (default 1,2,4)",
    )
    parser.add_argument(
        "--studies",
        type=int,
        default=16,
        help=f"timed studies per round, {FILMS_PER_STUDY} films each (default 16)",
    )
    parser.add_argument(
        "--tf-threads",
        type=int,
        default=0,
        metavar="K",
        help="TensorFlow intra/inter-op threads per worker (default: TF's own)",
    )
    args = parser.parse_args()
    if args.studies < 1:
        parser.error("--studies must be at least 1")
    if args.tf_threads < 0:
        parser.error("--tf-threads must be 0 (TensorFlow's default) or more")
    if connection.vendor != "postgresql":
        parser.error("set DATABASE_URL to a PostgreSQL server (postgres://USER@HOST:PORT/NAME)")
    if not shutil.which("redis-server"):
        parser.error("redis-server is not installed")
    if not SHIPPED.is_dir():
        parser.error(f"the shipped model is missing: {SHIPPED}")

    # Also when started with SIGINT ignored (a background job): Ctrl+C / kill -INT clean up.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    began = time.perf_counter()
    load_before = os.getloadavg()
    redis = RedisServer(_TMP / "redis", _REDIS_PORT)
    workers: list[Worker] = []
    rows: list[dict] = []
    try:
        redis.start()
        with throwaway_database():
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SHOW server_version")
                    pg_version = cursor.fetchone()[0]
                admin = get_user_model().objects.create_user("bench-admin", password=None)
                version = ai_actions.register_model_version(admin, str(SHIPPED), activate=True)
                print(
                    f"Database {connection.settings_dict['NAME']} (PostgreSQL {pg_version}), "
                    f"Redis on port {redis.port}; uploading {max(args.workers)} warm-up + "
                    f"{args.studies} studies ...",
                    flush=True,
                )
                warm = [upload(admin, f"WARM-{i}", 9000 + i) for i in range(max(args.workers))]
                studies = [upload(admin, f"{i:04d}", 100 + i) for i in range(args.studies)]
                for n in args.workers:
                    rows.append(
                        one_round(n, version, warm, studies, redis, workers, args.tf_threads)
                    )
            finally:
                _shield()
                for worker in workers:
                    worker.stop()
                workers.clear()
    except KeyboardInterrupt:
        _shield()
        print("\nInterrupted: workers, Redis and the database are removed.", file=sys.stderr)
        return 130
    finally:
        _shield()
        for worker in workers:
            worker.stop()
        redis.stop()
        shutil.rmtree(_TMP, ignore_errors=True)

    load_after = os.getloadavg()
    header = (
        f"{platform.processor() or platform.machine()}, {cores()} cores, PostgreSQL "
        f"{pg_version} and Redis on this machine, shipped custom_cnn, films 1024x832, "
        f"{FILMS_PER_STUDY} per study, {args.studies} studies per round; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"run {time.perf_counter() - began:.0f} s"
    )
    print_tables(rows, header, args.tf_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
