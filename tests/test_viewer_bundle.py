"""The committed viewer bundle (static/viewer/) is what viewer/package-lock.json builds.

scripts/run serves the committed files, so a fresh machine needs no node. Where node and the
locked packages are installed (scripts/test runs ``npm ci`` in viewer/ when npm exists), this
rebuilds the bundle and compares it file by file; elsewhere it skips, saying why.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VIEWER = ROOT / "viewer"
BUNDLE = ROOT / "static" / "viewer"


def test_the_bundle_the_case_page_loads_is_committed() -> None:
    for name in ("viewer.js", "decodeImageFrameWorker.js", "codecs/openjpeg.wasm"):
        assert (BUNDLE / name).is_file(), name


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.skipif(
    not (VIEWER / "node_modules" / "esbuild").is_dir(),
    reason="viewer/node_modules is missing (cd viewer && npm ci)",
)
def test_rebuilding_from_the_lockfile_gives_the_committed_bundle() -> None:
    done = subprocess.run(
        ["node", "build.mjs", "--check"], cwd=VIEWER, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
