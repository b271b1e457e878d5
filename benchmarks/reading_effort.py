"""Reading effort: how many actions (keys + clicks) and how long a reader needs for a normal
read, a recall with one finding and an arbitration, through the real case pages on a live
server in headless Chromium at a 1920×1080 screen (issue 24, point 7; target: a normal read
in at most 2 actions).

    python benchmarks/reading_effort.py                  # 3 runs of each, films 1024 rows
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mammo_portal python benchmarks/reading_effort.py --runs 5

Each read starts where a reader is once the previous read has opened this case: on the case
page, its films painted. An action is one key pressed or one click (choosing from a list is
two: open it, pick); typing a reason would count each key, and none of these reads needs one.
The reads, as a reader at the keyboard gives them:

- normal read: N (BI-RADS 1 both breasts, no recall), then b for the density: recorded, and
  the next case opens;
- recall with one finding: 4 and 1 (right then left category), the finding and its site
  from their lists, the density with a click, A (the AI suggests recall: Accept AI);
- arbitration: the two disagreeing reads are on the page; the arbitrator recalls as the
  first reader did, with the same keys and lists as the recall.

Time is the wall clock from the first action to the next page loaded (the read recorded,
the next case's form shown), and from opening the case to its four films painted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _live  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

SCREEN: ViewportSize = {"width": 1920, "height": 1080}
FILMS_PAINTED = "() => document.getElementById('viewer').dataset.ready === '1'"


@dataclass
class Reader:
    """A reader's hands on the page: every key and click counted."""

    page: object
    keys: int = 0
    clicks: int = 0
    first_at: float = field(default=0.0)

    def _start(self) -> None:
        if not self.first_at:
            self.first_at = time.perf_counter()

    def press(self, key: str) -> None:
        self._start()
        self.keys += 1
        self.page.keyboard.press(key)  # type: ignore[attr-defined]

    def click(self, selector: str) -> None:
        self._start()
        self.clicks += 1
        self.page.click(selector)  # type: ignore[attr-defined]

    def choose(self, selector: str, value: str) -> None:
        """A value from a list: a click to open it, a click on the value."""
        self._start()
        self.clicks += 2
        self.page.select_option(selector, value)  # type: ignore[attr-defined]


def normal_read(reader: Reader) -> None:
    reader.press("n")
    reader.press("b")


def recall_with_a_finding(reader: Reader) -> None:
    reader.press("4")
    reader.press("1")
    reader.choose("#id_finding_R", "mass")
    reader.choose("#id_site_R", "10")
    reader.click("input[name=density][value=b]")
    reader.press("a")


TASKS: dict[str, tuple[Callable[[Reader], None], str]] = {
    "normal read": (normal_read, "≤ 2"),
    "recall with one finding": (recall_with_a_finding, ""),
    "arbitration (recall, one finding)": (recall_with_a_finding, ""),
}


def seed(runs: int, size: int) -> dict[str, list[int]]:
    """Cases for each task and run, each a four-view DICOM screen scored by a version
    validated for triage (so the AI suggests recall or not); arbitration cases carry a
    recall first read and a normal second read. One spare of each, so a next case (one the
    reader may read) always opens."""
    from screening.choices import Role
    from screening.models import ModelVersion
    from tests.factories import ModelVersionFactory, dicom_screen, read_case, score_case
    from tests.screening.ai.test_ai_evidence import scored_evidence

    first = _live.user("first-reader", Role.RADIOLOGIST)
    second = _live.user("second-reader", Role.RADIOLOGIST)
    _live.user("reader", Role.RADIOLOGIST)
    _live.user("arbitrator", Role.ARBITRATOR)
    version: ModelVersion = ModelVersionFactory(is_active=True, evidence=scored_evidence())
    cases: dict[str, list[int]] = {task: [] for task in TASKS}
    serial = 0
    for task in [*TASKS] * (runs + 1):
        serial += 1
        case = dicom_screen(
            patient_id=f"EFFORT-{serial}", seed=500 + 4 * serial, size=size, bits=16
        )
        score_case(case, 0.1 if task == "normal read" else 0.9, version)
        if task.startswith("arbitration"):
            read_case(first, case.pk, recall=True)
            read_case(second, case.pk, recall=False)
        cases[task].append(case.pk)
    return cases


def measure(url: str, cases: dict[str, list[int]], runs: int) -> dict[str, list[dict]]:
    from playwright.sync_api import sync_playwright

    found: dict[str, list[dict]] = {task: [] for task in TASKS}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_live.CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        for task, (steps, _) in TASKS.items():
            who = "arbitrator" if task.startswith("arbitration") else "reader"
            context = browser.new_context(viewport=SCREEN)
            page = context.new_page()
            _live.sign_in(page, url, who)
            for case_id in cases[task][:runs]:
                opened = time.perf_counter()
                page.goto(f"{url}/cases/{case_id}/")
                page.wait_for_selector("#read-form")
                wait(page, FILMS_PAINTED)
                painted = time.perf_counter() - opened
                if task.startswith("arbitration"):
                    assert page.locator("#reads li").count() == 2, "the two reads are shown"
                reader = Reader(page)
                with page.expect_navigation():
                    steps(reader)
                page.wait_for_selector("#read-form, #my-read")
                done = time.perf_counter() - reader.first_at
                assert not page.url.endswith(f"/cases/{case_id}/"), "the next case opened"
                found[task].append(
                    {
                        "case": case_id,
                        "reader": who,
                        "keys": reader.keys,
                        "clicks": reader.clicks,
                        "painted": painted,
                        "done": done,
                    }
                )
            context.close()
        browser.close()
    return found


def recorded(found: dict[str, list[dict]]) -> None:
    """Each read as the database has it (asked here, outside Playwright's loop, whose
    context would hold a connection of its own past the end)."""
    from screening.models import Read

    for rows in found.values():
        for row in rows:
            read = Read.objects.get(case_id=row["case"], reader__username=row["reader"])
            row["decision"] = read.get_decision_display().lower()


def wait(page, predicate: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(predicate)
        page.wait_for_timeout(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024, help="film rows (columns 13/16 of it)")
    args = parser.parse_args()
    _live.setup_django("reading-effort")
    from django.db import connection

    with _live.serving() as url:
        started = time.perf_counter()
        cases = seed(args.runs, args.size)
        seeded = time.perf_counter() - started
        found = measure(url, cases, args.runs)
        recorded(found)
    print(
        f"\nReading effort: {args.runs} runs of each read, four-view DICOM screens of "
        f"{args.size * 13 // 16}×{args.size} 16-bit films (seeded in {seeded:.0f} s), "
        f"{connection.vendor}, Chromium --disable-gpu at 1920×1080, {os.cpu_count()} CPU cores\n"
    )
    print(
        "| read | actions (keys + clicks) | keys | clicks | target | recorded as "
        "| open → films painted, median (s) | first action → next case open, median (s) |"
        "\n|---|---|---|---|---|---|---|---|"
    )
    for task, rows in found.items():
        actions = {row["keys"] + row["clicks"] for row in rows}
        (count,) = actions  # the same read takes the same actions every run
        row = rows[0]
        painted = statistics.median(r["painted"] for r in rows)
        done = statistics.median(r["done"] for r in rows)
        target = TASKS[task][1] or "–"
        print(
            f"| {task} | {count} | {row['keys']} | {row['clicks']} | {target} | "
            f"{row['decision']} | {painted:.2f} | {done:.2f} |"
        )


if __name__ == "__main__":
    main()
