"""In headless Chromium: findings marked on the film (issue 24). A reader marks findings with
Cornerstone3D's tools and records the read with them, stored at the film's pixels they
marked; the arbitrator sees both readers' marks on the film, told apart; the blind second
reader's page draws none of the first reader's, and no JSON the page receives carries them."""

from __future__ import annotations

import json

import pytest

from screening.choices import CaseStatus, ReadKind, Role
from screening.models import Finding, Image
from screening.reading import actions as reading_actions
from screening.reading.actions import ReadInput
from screening.reading.assessment import FindingInput, Mark
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import choose, log_in
from tests.e2e.test_viewer import open_viewer, wait_until
from tests.factories import UserFactory, dicom_screen

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RCC, RMLO = '.panel.current[data-slot="RCC"]', '.panel.current[data-slot="RMLO"]'
LCC = '.panel.current[data-slot="LCC"]'
FIRST_POINT = (123.0, 234.0)  # distinctive: found nowhere else on the page or in its JSON


def film(case, slot: str) -> Image:
    side, view = slot[0], slot[1:]
    return Image.objects.get(study__case=case, laterality=side, view=view)


def to_page(page, panel: str, x: float, y: float) -> tuple[float, float]:
    point = page.evaluate(f"window.mammoViewer.imageToPage('{panel}', {x}, {y})")
    return point["x"], point["y"]


def alone(page, slot: str) -> None:
    """Hang one film alone (the single-film protocol, F to step to it), so the whole 512 px
    film is in view whatever the 1×4 crops at its outer edge."""
    from tests.e2e.test_hanging_protocols import hung

    while not page.inner_text("#layout-name").startswith("Single"):
        page.keyboard.press("l")
    for _ in range(4):
        if page.is_visible(f'.panel.current[data-slot="{slot}"]'):
            break
        page.keyboard.press("f")
    hung(page, [f"current {slot}"])


def test_a_reader_marks_findings_on_the_films_and_records_the_read_with_them(
    live_server, browser_page
):
    UserFactory(username="reader", role=Role.RADIOLOGIST)
    case = dicom_screen()
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, live_server, "reader")
    open_viewer(page, live_server, case)

    alone(page, "RCC")
    page.keyboard.press("k")  # a point on the right CC
    page.mouse.click(*to_page(page, RCC, 200, 300))
    wait_until(page, "() => document.getElementById('id_mark_R').value !== ''")
    assert page.evaluate("document.activeElement.id") == "id_finding_R"  # what it shows, next
    alone(page, "RMLO")
    page.keyboard.press("e")  # an ellipse on the right MLO: a second finding of that breast
    start, end = to_page(page, RMLO, 150, 200), to_page(page, RMLO, 250, 260)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=4)
    page.mouse.move(*end, steps=4)
    page.mouse.up()
    wait_until(page, "() => document.getElementById('id_mark_R_2').value !== ''")
    assert page.is_visible("#id_finding_R_2")
    wait_until(
        page,
        f"() => document.querySelectorAll('{RMLO} svg.finding-marks g.read-this').length === 1",
    )
    alone(page, "RCC")
    wait_until(
        page, f"() => document.querySelectorAll('{RCC} svg.finding-marks g.read-this').length === 1"
    )
    alone(page, "LCC")
    page.keyboard.press("x")  # an arrow on the left CC, pointing where the drag began
    head, tail = to_page(page, LCC, 260, 240), to_page(page, LCC, 330, 180)
    page.mouse.move(*head)
    page.mouse.down()
    page.mouse.move(*tail, steps=6)
    page.mouse.up()
    wait_until(page, "() => document.getElementById('id_mark_L').value !== ''")
    assert "Marked: point on R CC" in page.inner_text("#read-form")
    page.screenshot(path=str(ARTIFACTS / "finding-marks-1-placed.png"))

    rows = {"finding_R": "mass", "site_R": "10", "finding_R_2": "asymmetry", "site_R_2": "UOQ"}
    choose(page, "4", "2", "b", **rows, finding_L="calcification", site_L="UIQ")
    with page.expect_navigation():
        page.click("#record-read")
    assert errors == []
    point, ellipse, arrow = Finding.objects.filter(read__case=case).order_by("pk")
    assert (point.image, point.mark_shape) == (film(case, "RCC"), "point")
    [[x, y]] = point.mark_points
    assert abs(x - 200) <= 2 and abs(y - 300) <= 2  # where the reader clicked, in film pixels
    assert (ellipse.image, ellipse.mark_shape, ellipse.finding) == (
        film(case, "RMLO"),
        "ellipse",
        "asymmetry",
    )
    # Cornerstone's ellipse is dragged from its centre to the corner of its box.
    xs = [p[0] for p in ellipse.mark_points]
    ys = [p[1] for p in ellipse.mark_points]
    assert abs((min(xs) + max(xs)) / 2 - 150) <= 3 and abs((min(ys) + max(ys)) / 2 - 200) <= 3
    assert abs(max(xs) - 250) <= 3 and abs(max(ys) - 260) <= 3
    assert (arrow.image, arrow.mark_shape) == (film(case, "LCC"), "arrow")
    (tail_x, tail_y), (head_x, head_y) = arrow.mark_points
    assert abs(head_x - 260) <= 2 and abs(head_y - 240) <= 2
    assert abs(tail_x - 330) <= 2 and abs(tail_y - 180) <= 2


def marked_reads(case) -> None:
    """A first read with a point on the right CC, a second (disagreeing) with an arrow on it."""
    rcc = film(case, "RCC")
    first = UserFactory(username="rad_one", role=Role.RADIOLOGIST)
    point = Mark(rcc.pk, "point", (FIRST_POINT,))
    reading_actions.submit_read(first, case.pk, ReadInput(
        kind=ReadKind.FIRST, birads_right=4, birads_left=1, density="b", reason="r1",
        findings=(FindingInput("R", "mass", "10", mark=point),),
    ))  # fmt: skip


def second_read(case) -> None:
    rcc = film(case, "RCC")
    second = UserFactory(username="rad_two", role=Role.RADIOLOGIST)
    arrow = Mark(rcc.pk, "arrow", ((400.0, 100.0), (300.0, 150.0)))
    reading_actions.submit_read(second, case.pk, ReadInput(
        kind=ReadKind.SECOND, birads_right=2, birads_left=1, density="b", reason="r2",
        findings=(FindingInput("R", "calcification", "UOQ", mark=arrow),),
    ))  # fmt: skip


def drawn(page, panel: str) -> list[str]:
    return page.eval_on_selector_all(
        f"{panel} svg.finding-marks g.finding-mark", "gs => gs.map(g => g.dataset.read)"
    )


def test_the_arbitrator_sees_each_readers_marks_on_the_film_told_apart(live_server, browser_page):
    case = dicom_screen()
    marked_reads(case)
    second_read(case)
    case.refresh_from_db()
    assert case.status == CaseStatus.ARBITRATION
    UserFactory(username="arbiter", role=Role.ARBITRATOR)
    page = browser_page
    log_in(page, live_server, "arbiter")
    open_viewer(page, live_server, case)
    wait_until(page, f"() => document.querySelectorAll('{RCC} g.finding-mark').length === 2")
    assert drawn(page, RCC) == ["first", "second"]
    colours = page.eval_on_selector_all(
        f"{RCC} g.finding-mark path", "ps => ps.map(p => getComputedStyle(p).stroke)"
    )
    assert colours[0] != colours[1]  # each reader's own colour
    # The first reader's point is drawn where it is on the film, through the viewer's fit.
    mark = page.locator(f"{RCC} g.finding-mark[data-read=first] path").bounding_box()
    x, y = to_page(page, RCC, *FIRST_POINT)
    assert (
        abs(mark["x"] + mark["width"] / 2 - x) < 2 and abs(mark["y"] + mark["height"] / 2 - y) < 2
    )
    page.screenshot(path=str(ARTIFACTS / "finding-marks-2-arbitration.png"))


def test_the_blind_second_reader_is_shown_none_of_the_first_readers_marks(
    live_server, browser_page
):
    case = dicom_screen()
    marked_reads(case)
    UserFactory(username="second", role=Role.RADIOLOGIST)
    page = browser_page
    bodies: list[str] = []

    def keep(response) -> None:
        if "json" in (response.headers.get("content-type") or ""):
            bodies.append(response.text())

    page.on("response", keep)
    log_in(page, live_server, "second")
    open_viewer(page, live_server, case)
    url = f"/api/cases/{case.pk}/"  # the API, as this reader signed in
    status, body = page.evaluate(f"fetch('{url}').then(async r => [r.status, await r.text()])")
    assert status == 200 and json.loads(body)["reads"] == []
    assert drawn(page, ".panel.current") == []
    assert json.loads(page.text_content("#film-marks") or "null") == []
    html = page.content()
    assert "rad_one" not in html and "123.0" not in html
    assert bodies and not any("123.0" in body or "rad_one" in body for body in bodies)
