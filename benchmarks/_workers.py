"""Processes a benchmark starts and must stop: a throw-away redis-server and Celery workers.

Each runs in a session of its own, so a Ctrl+C in the terminal reaches the benchmark only,
which then stops them in order (workers before the database they hold connections to).
``stop`` ends only the process group this module started, by its id.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Callable[[], bool], seconds: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {seconds:.0f} s waiting for {what}")


def _stop_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process's group (its own session), SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)
    # The prefork child may outlive its parent by a moment: make sure the group is empty.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class RedisServer:
    """A redis-server of the benchmark's own on a free port: nothing persisted."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.port = port or free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait_for(
            lambda: accepts(self.port) or self.process.poll() is not None,  # type: ignore[union-attr]
            20,
            "redis-server to start",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        if self.process:
            _stop_group(self.process, 10)
            self.process = None


class Worker:
    """``celery -A mammo_portal worker`` as its own process, logging to a file."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log: Path,
        queues: str = "inference",
        concurrency: int = 1,
    ):
        self.name = name
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mammo_portal", "worker", "-Q", queues,
             "-c", str(concurrency), "--pool", "prefork", "-n", f"{name}@%h", "-l", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return self.text()[-chars:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"worker {self.name} exited; its log:\n{self.tail()}")
        return " ready." in self.text()

    def succeeded(self) -> int:
        """Jobs this worker finished, as its log says."""
        return self.text().count("succeeded in")

    def child_pids(self) -> list[int]:
        """The prefork pool's processes (where the model lives)."""
        pid = self.process.pid
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except (FileNotFoundError, ValueError):
            return []

    def child_status(self) -> dict[str, int]:
        """Threads and resident memory (MiB) of the pool process, read from /proc."""
        children = self.child_pids()
        if not children:
            return {}
        fields: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{children[0]}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "Threads":
                    fields["threads"] = int(value)
                elif key == "VmRSS":
                    fields["rss_mib"] = int(value.split()[0]) // 1024
        except FileNotFoundError:
            return {}
        return fields

    def stop(self, grace: float = 30) -> None:
        _stop_group(self.process, grace)
