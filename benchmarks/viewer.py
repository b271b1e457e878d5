"""Case viewer: time from clicking a case on the worklist to its first film painted (the
preview, issue 16) and to all four views painted by the viewer at full bit depth (issue 14),
for a four-view study of 3328 x 4096 16-bit DICOM films, in headless Chromium on localhost.

    python benchmarks/viewer.py                 # on DATABASE_URL (default SQLite), 7 runs
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mammo_portal python benchmarks/viewer.py
    python benchmarks/viewer.py --busy          # every core kept busy while it measures
    python benchmarks/viewer.py --lossless      # frames sent as JPEG-LS lossless, not native
    python benchmarks/viewer.py --link 1000     # the browser's link throttled to 1000 Mbit/s

``--busy`` starts one spinning process per core (a tight loop at normal priority) before the
browser and stops them after the last run, so the server, the browser's page thread, its
decoding workers and its software WebGL all share the cores with them, as on a reading
station doing other work. ``--link`` throttles the browser's downloads (Chromium's network
emulation): localhost carries a frame faster than any hospital network.

The app runs in a throw-away test database behind Django's threaded live server, with the
production static set-up (collectstatic, hashed and compressed files served by WhiteNoise)
and WADO-RS from the same process; the browser is Debian's Chromium without a GPU, as in CI. The time is the page's own clock
(performance.now() from the navigation the click starts) when the viewer marks the last
of the four films painted: the page, its scripts, the WADO-RS metadata, the four frames
(native, 27 MB each; with ``--lossless`` their JPEG-LS lossless frames, made when the study
is stored as an upload does, ``settings.DICOMWEB_LOSSLESS_FRAMES``) decoded in the worker,
and their first render. The first image
is the earliest paint of a film's preview (``screening/imaging/previews.py``, made when the study
is stored, as an upload does), by the Element Timing API on the same clock; "four
previews" is the latest of the four.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import _live  # noqa: E402

_live.setup_django("viewer-bench")

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

CHROMIUM = _live.CHROMIUM
PASSWORD = "bench-password-123"
ALL_FOUR = "() => document.querySelectorAll('.panel.current[data-loaded=\"1\"]').length === 4"
# The previews' paint times (Element Timing: the page's clock, from the navigation's start).
PREVIEW_PAINTS = """() => new Promise((resolve) => {
  const found = [];
  const observer = new PerformanceObserver((list) => found.push(...list.getEntries()));
  observer.observe({ type: "element", buffered: true });
  setTimeout(() => {
    observer.disconnect();
    resolve(found.filter((e) => e.identifier === "film-preview").map((e) => e.renderTime));
  }, 100);
})"""
# When each film was on its texture and when it was painted (the viewer's marks).
FILM_MARKS = """() => performance.getEntriesByType("mark")
  .filter((m) => m.name.startsWith("film-")).map((m) => [m.name, m.startTime])"""


def seed_case():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from screening.choices import Role
    from screening.imaging import lossless, previews
    from tests.factories import dicom_screen

    reader = get_user_model().objects.create_user("bench-reader", password=PASSWORD)
    reader.groups.add(Group.objects.get_or_create(name=Role.RADIOLOGIST)[0])
    case = dicom_screen(size=4096, bits=16, patient_id="BENCH-VIEWER")
    films = list(case.studies.get().images.all())
    previews.warm(films)  # as an upload does
    if settings.DICOMWEB_LOSSLESS_FRAMES:
        lossless.warm(films)
    return case


def frame_bytes(case) -> tuple[int, int]:
    """(native, JPEG-LS lossless) bytes of the case's four frames."""
    from screening.imaging import lossless

    films = list(case.studies.get().images.all())
    native = sum(f.width * f.height * 2 for f in films)
    if not settings.DICOMWEB_LOSSLESS_FRAMES:
        return native, 0
    return native, sum(len(lossless.compressed_frame(f) or b"") for f in films)


def spinners(count: int) -> list[subprocess.Popen]:
    """``count`` processes each spinning a core at normal priority until stopped."""
    loop = "while True:\n    pass"
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(count)]


def wait(page, predicate: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(predicate)
        page.wait_for_timeout(20)


def run(
    url: str, case_id: int, runs: int, link_mbit: float = 0
) -> tuple[list[dict[str, float]], dict]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        if link_mbit:
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            rate = link_mbit * 1e6 / 8  # bytes per second
            cdp.send(
                "Network.emulateNetworkConditions",
                {
                    "offline": False,
                    "latency": 0,
                    "downloadThroughput": rate,
                    "uploadThroughput": rate,
                },
            )
        response = page.goto(f"{url}/accounts/login/")
        assert response and response.ok, (
            response.status if response else None,
            page.content()[:500],
        )
        page.fill("#id_username", "bench-reader")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/worklist/")
        for _ in range(runs):
            page.goto(f"{url}/worklist/")
            page.click(f'tr[data-case="{case_id}"] a')
            wait(page, ALL_FOUR)
            previews = page.evaluate(PREVIEW_PAINTS)
            marks = page.evaluate(FILM_MARKS)
            loaded = [ms for name, ms in marks if name.startswith("film-loaded-")]
            times.append(
                {
                    "first_image": min(previews) if previews else float("nan"),
                    "four_previews": max(previews) if len(previews) == 4 else float("nan"),
                    "on_texture": max(loaded) if loaded else float("nan"),
                    "four_views": float(
                        page.evaluate("document.getElementById('viewer').dataset.readyMs")
                    ),
                }
            )
        rendering = page.evaluate("window.mammoViewer.describe('.panel.current')")
        rendering["resources"] = page.evaluate(
            "performance.getEntriesByType('resource').map(e => [e.name.split('/').slice(-3).join('/'), "
            "Math.round(e.startTime), Math.round(e.responseStart), Math.round(e.responseEnd)])"
        )
        browser.close()
    return times, rendering


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--busy", action="store_true", help="keep every core busy meanwhile")
    parser.add_argument("--lossless", action="store_true", help="send JPEG-LS lossless frames")
    parser.add_argument("--link", type=float, default=0, help="throttle to this many Mbit/s")
    args = parser.parse_args()
    settings.DICOMWEB_LOSSLESS_FRAMES = args.lossless
    with _live.serving() as url:
        started = time.perf_counter()
        case = seed_case()
        seeded = time.perf_counter() - started
        sizes = frame_bytes(case)
        busy = spinners(os.cpu_count() or 1) if args.busy else []
        try:
            time.sleep(1 if busy else 0)  # the spinners at full speed before the first run
            load_before = os.getloadavg()[0]
            times, rendering = run(url, case.pk, args.runs, args.link)
            load_after = os.getloadavg()[0]
        finally:
            for process in busy:
                process.terminate()
                process.wait()
    how = "CPU fallback" if rendering["cpu"] else "WebGL (software, no GPU)"
    frames = (
        f"native ({sizes[0] / 1e6:.0f} MB)"
        if not args.lossless
        else f"JPEG-LS lossless ({sizes[1] / 1e6:.0f} MB of {sizes[0] / 1e6:.0f} MB native)"
    )
    print(
        f"\nClick on a case to all four views painted: 4 x 3328 x 4096 16-bit DICOM "
        f"(seeded in {seeded:.0f} s), {connection.vendor}, Chromium --disable-gpu, "
        f"rendering: {how}, {os.cpu_count()} CPU cores; frames {frames}; "
        f"link {f'{args.link:g} Mbit/s' if args.link else 'localhost'}; "
        f"{f'{len(busy)} spinning processes' if busy else 'no added load'}, "
        f"load average {load_before:.1f} before and {load_after:.1f} after the runs\n"
    )
    columns = ("first_image", "four_previews", "on_texture", "four_views")
    print(
        "| run | first image painted (preview) | four previews painted "
        "| four films decoded, on their textures | four views painted |\n|---|---|---|---|---|"
    )
    for i, row in enumerate(times, 1):
        cells = " | ".join(f"{row[c]:.0f}" for c in columns)
        print(f"| {i}{' (cold)' if i == 1 else ''} | {cells} |")
    if os.environ.get("VIEWER_BENCH_RESOURCES"):
        for name, start, first_byte, end in rendering["resources"]:
            print(f"  {name[-60:]:<60} {start:>6} {first_byte:>6} {end:>6}")
    warm = times[1:] or times
    print("\nwarm runs (ms):")
    for column in columns:
        values = sorted(row[column] for row in warm)
        print(
            f"  {column.replace('_', ' '):<14} median {statistics.median(values):.0f}, "
            f"worst {values[-1]:.0f}"
        )


if __name__ == "__main__":
    main()
