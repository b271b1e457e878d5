"""Real Celery workers for tests: a throw-away Redis the test can stop and start, a worker
process against the test database, and waiting for what they do. A plugin of the test suite
(``tests/conftest.py``), so every worker test gets ``redis_broker`` and imports the rest
from here rather than from another test module.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.orthanc import free_port

REPO = Path(__file__).resolve().parents[1]


class RedisServer:
    """A throw-away redis-server the test can stop and start again on the same port."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _accepts(self.port), 20, "redis-server to start")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


class Worker:
    def __init__(
        self,
        broker_url: str,
        media_root: Path,
        log: Path,
        extra_env: dict[str, str],
        queues: str = "inference,default",
        beat_schedule: Path | None = None,
    ):
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker_url,
            "MEDIA_ROOT": str(media_root),
            "SECRET_KEY": "worker-test-secret-key-" + "x" * 40,
            "DJANGO_SETTINGS_MODULE": "mammo_portal.settings",
            **extra_env,
        }
        self.log = log
        # Beat runs as a process of its own, not inside the worker (``--beat``): the worker's
        # only child is then its pool process, the one ``kill_child`` means to kill.
        self.beat = (
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "mammo_portal",
                    "beat",
                    "--schedule",
                    str(beat_schedule),
                    "-l",
                    "INFO",
                ],
                cwd=REPO,
                env=env,
                stdout=log.with_suffix(".beat.log").open("wb"),
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            if beat_schedule
            else None
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "mammo_portal",
                "worker",
                "-Q",
                queues,
                "-c",
                "1",
                "--pool",
                "prefork",
                "-l",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: b"ready." in log.read_bytes() or self.process.poll() is not None,
            60,
            "the worker to be ready",
        )
        assert self.process.poll() is None, log.read_text()

    def kill_child(self) -> int:
        """Kills the pool process (the worker's only child: beat runs apart) mid-task."""
        children = (
            Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        )
        assert len(children) == 1, f"the worker has {len(children)} children, not its pool's one"
        pid = int(children[0])
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill_all(self) -> None:
        """The machine is gone: the main process and its child die at once, nothing acks."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for pid in [int(p) for p in children.read_text().split()] + [self.process.pid]:
            os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        if self.beat is not None:
            self.beat.kill()
            self.beat.wait(10)

    def stop(self) -> None:
        for process in (self.process, self.beat):
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def redis_broker(
    tmp_path: Path, point_app_at: Callable[[str, dict], None]
) -> Iterator[RedisServer]:
    """A Redis of the test's own, started, with this process publishing to it."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    point_app_at(server.url, {"visibility_timeout": 60})
    yield server
    server.stop()
