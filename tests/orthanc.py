"""A real Orthanc PACS for the tests: Debian's ``Orthanc`` with the DICOMweb plugin, started
from the project's own configuration (deploy/orthanc/orthanc.json and route.lua) with only
what a test machine needs changed: free ports, a storage folder of its own, the portal's
address, and a short StableAge so a routed study is sent within a second or two.

Skips, saying so, where Orthanc is not installed (scripts/test installs it where it can).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "deploy" / "orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
PASSWORD = "test-pacs-password"
PORTAL_AET = "MAMMO_PORTAL"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Orthanc:
    """One running Orthanc: its DICOM port and AE title, and its REST API as JSON."""

    http_port: int
    dicom_port: int
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    ae_title: str = "ORTHANC"
    command: list[str] = field(default_factory=list, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def request(self, method: str, path: str, body: bytes | None = None, **headers: str) -> bytes:
        auth = base64.b64encode(f"mammo:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=body,
            method=method,
            headers={"Authorization": f"Basic {auth}", **headers},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 (http only)
            return bytes(answer.read())

    def get(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def post(self, path: str, body: Any) -> Any:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return json.loads(self.request("POST", path, raw) or b"null")

    def store(self, content: bytes) -> str:
        """Stores one instance through the REST API (as a PACS holding it already); its id."""
        return str(self.post("/instances", content)["ID"])

    def studies(self) -> list[dict[str, Any]]:
        return list(self.get("/studies?expand"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], bool], seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"Orthanc: not in time. Its log:\n{self.log()[-4000:]}")
            time.sleep(0.2)

    def restart(self) -> None:
        """Starts it again after ``stop``: same ports, same storage (a PACS back up)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        self.wait_until_up()

    def wait_until_up(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"Orthanc did not start:\n{self.log()[-4000:]}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def configured_for_test(
    workdir: Path,
    *,
    portal_port: int,
    route: str,
    dicomweb_url: str,
    stable_age: int,
) -> dict[str, Any]:
    """The project's configuration with this machine's ports, folder and portal address."""
    config = json.loads((CONFIG_DIR / "orthanc.json").read_text())
    config.update(
        StorageDirectory=str(workdir / "db"),
        IndexDirectory=str(workdir / "db"),
        HttpPort=free_port(),
        DicomPort=free_port(),
        RemoteAccessAllowed=False,
        StableAge=stable_age,
        LuaScripts=[str(CONFIG_DIR / "route.lua")],
    )
    config["DicomModalities"]["portal"].update(Host="127.0.0.1", Port=portal_port)
    config["DicomWeb"]["Servers"]["portal"]["Url"] = dicomweb_url
    config["MammoPortal"]["Route"] = route
    return config


def start_orthanc(
    workdir: Path,
    *,
    portal_port: int = 11112,  # the node's port (unused where the route is dicomweb)
    route: str = "dimse",
    dicomweb_url: str = "http://127.0.0.1:9/dicomweb/",
    token: str = "",
    stable_age: int = 1,
) -> Orthanc:
    """Starts Orthanc on free ports and waits until its REST API answers."""
    binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(binary).exists() or not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = configured_for_test(
        workdir,
        portal_port=portal_port,
        route=route,
        dicomweb_url=dicomweb_url,
        stable_age=stable_age,
    )
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = workdir / "orthanc.log"
    env = {**os.environ, "ORTHANC_PASSWORD": PASSWORD, "MAMMO_ROUTE_TOKEN": token}
    command = [binary, str(config_path)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    pacs = Orthanc(
        config["HttpPort"], config["DicomPort"], log_path, process, command=command, env=env
    )
    pacs.wait_until_up()
    return pacs


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    """Starts as many Orthancs as a test asks for (``start_orthanc``'s arguments); stops them."""
    started: list[Orthanc] = []

    def start(**options: Any) -> Orthanc:
        pacs = start_orthanc(tmp_path / f"orthanc-{len(started)}", **options)
        started.append(pacs)
        return pacs

    yield start
    for pacs in started:
        pacs.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a PACS takes seconds: it is marked slow wherever it lives, so
    ``scripts/test --fast`` leaves it out and the full run keeps it."""
    for item in items:
        if "orthanc_factory" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
