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


NEEDS_NODE = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def run_patches(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as an ES module with viewer/patches.mjs imported as ``p``."""
    module = "import * as p from './patches.mjs';\n" + script
    return subprocess.run(
        ["node", "--input-type=module", "-e", module],
        cwd=VIEWER,
        capture_output=True,
        text=True,
        timeout=60,
    )


@NEEDS_NODE
def test_a_patch_refuses_a_package_version_it_was_not_written_for() -> None:
    done = run_patches("p.checkVersions(() => '0.0.1');")
    assert done.returncode != 0
    assert "written for @cornerstonejs/tools 4.22.13, installed 0.0.1" in done.stderr


@NEEDS_NODE
def test_every_patch_names_the_version_the_lockfile_installs() -> None:
    import json

    lock = json.loads((VIEWER / "package-lock.json").read_text())["packages"]
    done = run_patches("console.log(JSON.stringify(p.PATCHES.map((x) => [x.package, x.version])));")
    assert done.returncode == 0, done.stderr
    for package, version in json.loads(done.stdout):
        assert lock[f"node_modules/{package}"]["version"] == version, package


@NEEDS_NODE
def test_a_patch_whose_text_is_gone_fails_instead_of_building() -> None:
    done = run_patches("p.applyPatch(p.PATCHES[0], 'upgraded source', 'drawTextBox.js');")
    assert done.returncode != 0
    assert "expects its text 1 time(s), found 0: it no longer applies" in done.stderr
