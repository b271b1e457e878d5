"""Screenshots of each hanging protocol for the README (docs/hanging-*.png): a synthetic
four-view DICOM screen with a prior of the same woman, read in headless Chromium at
1920×1080 (and the 1×4 at 1366×768), each protocol reached with the reader's keys.

    python scripts/hanging_screenshots.py            # writes docs/hanging-*.png
    python scripts/hanging_screenshots.py --out /tmp --size 4096

The shots are scaled to two thirds (1280 px wide) to keep the repository light.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _live  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
FULL_HD = {"width": 1920, "height": 1080}
STATION = {"width": 1366, "height": 768}
# (file, keys pressed from the 1×4, screen, what the shot shows)
SHOTS = [
    ("hanging-1-1x4.png", [], FULL_HD),
    ("hanging-2-cc-pair.png", ["l"], FULL_HD),
    ("hanging-3-mlo-pair.png", ["l", "l"], FULL_HD),
    ("hanging-4-current-and-prior.png", ["c"], FULL_HD),
    ("hanging-5-single.png", ["Shift+L"], FULL_HD),
    ("hanging-6-1x4-1366x768.png", [], STATION),
]
ALL_HUNG = """() => [...document.querySelectorAll('.panel:not([hidden])')].every(p => {
  if (p.dataset.loaded !== '1') return false;
  const f = p.querySelector('.layers').getBoundingClientRect();
  const v = p.querySelector('.viewport').getBoundingClientRect();
  return Math.abs(f.height - v.height) <= 2;
})"""


def seed(size: int) -> int:
    from screening.choices import CaseStatus, Role
    from tests.factories import ModelVersionFactory, dicom_screen, score_case
    from tests.screening.ai.test_ai_evidence import scored_evidence

    _live.user("reader", Role.RADIOLOGIST)
    dicom_screen(study_date="20220310", seed=400, size=size, bits=16, status=CaseStatus.CLOSED)
    current = dicom_screen(study_date="20240315", seed=300, size=size, bits=16)
    score_case(current, 0.9, ModelVersionFactory(is_active=True, evidence=scored_evidence()))
    return current.pk


def wait(page, predicate: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(predicate)
        page.wait_for_timeout(50)


def shoot(url: str, case_id: int, out: Path) -> None:
    from PIL import Image as PILImage
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_live.CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport=FULL_HD)
        _live.sign_in(page, url, "reader")
        for name, keys, screen in SHOTS:
            page.set_viewport_size(screen)
            page.goto(f"{url}/cases/{case_id}/")
            wait(page, "() => document.getElementById('viewer').dataset.ready === '1'")
            for key in keys:
                page.keyboard.press(key)
            page.wait_for_timeout(300)
            wait(page, ALL_HUNG)
            page.mouse.move(0, screen["height"] - 1)  # no hover highlight on a film
            path = out / name
            page.screenshot(path=str(path))
            shot = PILImage.open(path)
            scale = 1280 / FULL_HD["width"]
            shot = shot.resize((round(shot.width * scale), round(shot.height * scale)))
            shot.save(path, optimize=True)
            print(f"{path} ({page.inner_text('#layout-name')})")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--size", type=int, default=2048, help="film rows (columns 13/16 of it)")
    args = parser.parse_args()
    _live.setup_django("hanging-shots")
    with _live.serving() as url:
        case_id = seed(args.size)
        shoot(url, case_id, args.out)


if __name__ == "__main__":
    main()
