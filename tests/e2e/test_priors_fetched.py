"""In headless Chromium: a prior that lived only in the PACS (Debian's Orthanc), fetched by the
DICOM node when the woman's new screen arrived, is painted beside the screen on the case page.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from screening.choices import AuditAction
from screening.models import AuditEvent, Study
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import log_in
from tests.e2e.test_viewer import open_viewer, wait_until
from tests.factories import UserFactory
from tests.screening.interop.test_orthanc_routing import storescu
from tests.screening.interop.test_priors_pacs import keep_in_pacs, pacs_with_node, screen, write

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pacs_and_node(orthanc_factory, admin_user):
    with pacs_with_node(orthanc_factory, admin_user) as running:
        yield running


def test_the_case_page_paints_the_prior_fetched_from_the_pacs_beside_the_screen(
    pacs_and_node, live_server, browser_page, tmp_path: Path
) -> None:
    pacs, _ = pacs_and_node
    keep_in_pacs(pacs, screen("20220310", 10, "ACC-2022"))
    storescu(pacs, write(tmp_path / "current", screen("20240315", 20, "ACC-2024")))
    pacs.wait_for(lambda: AuditEvent.objects.filter(action=AuditAction.PRIORS_FETCHED).exists(), 90)
    current = Study.objects.get(case__isnull=False).case
    prior = Study.objects.get(case__isnull=True)

    UserFactory(username="reader", role="radiologist")
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, live_server, "reader")
    open_viewer(page, live_server, current)
    assert "prior study (history" in page.inner_text("#priors")
    assert "2022-03-10" in page.inner_text("#priors")
    page.keyboard.press("c")  # current and prior of one view, back to back
    wait_until(
        page,
        "() => { const ps = [...document.querySelectorAll('.panel.prior:not([hidden])')];"
        " return ps.length > 0 && ps.every(p => p.dataset.loaded === '1'); }",
    )
    shown = page.eval_on_selector_all(
        ".panel.prior:not([hidden])", "ps => ps.map(p => [p.dataset.slot, p.dataset.case])"
    )
    assert len(shown) == 1
    slot, key = shown[0]
    assert key == f"study-{prior.pk}"
    current_slots = page.eval_on_selector_all(
        ".panel.current:not([hidden])", "ps => ps.map(p => p.dataset.slot)"
    )
    assert current_slots == [slot]  # the same view of the screen beside it
    label = page.inner_text(f'.panel.prior[data-slot="{slot}"] .vp-date')
    assert "Prior · 2022-03-10" in label
    page.screenshot(path=str(ARTIFACTS / "viewer-fetched-prior.png"))
    assert errors == []
