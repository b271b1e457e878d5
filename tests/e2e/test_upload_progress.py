"""In headless Chromium: an upload shows its progress and the server's answer in the page
(issue 24, point 6). The upload is slowed to about 1 MB/s (Chromium's network emulation)
so the progress can be seen to move, as it does for a 108 MB study on a hospital network.
"""

from __future__ import annotations

import re

import pytest

from screening.models import Image, Study
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import PASSWORD
from tests.e2e.test_robust_csp import RECORD_VIOLATIONS
from tests.factories import UserFactory, png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

VIEWS = ("R_CC", "L_CC", "R_MLO", "L_MLO")
# Samples the progress bar, the line beside it and the button every 20 ms, across pages.
WATCH = """
window.__seen = [];
setInterval(() => {
    const bar = document.querySelector("#upload-progress progress");
    const button = document.querySelector("#upload-form button[type=submit]");
    if (!bar || !button) return;
    window.__seen.push({
        value: bar.value,
        disabled: button.disabled,
        text: document.querySelector("#upload-progress .upload-sent").textContent,
    });
}, 20);
"""


def signed_in_upload_page(live_server, page):
    UserFactory(username="site-admin", role="admin")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "site-admin")
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.goto(f"{live_server.url}/upload/")
    page.evaluate("window.__same_page = true")  # a form post would load a new page


def slow_upload(page, bytes_per_second: int) -> None:
    session = page.context.new_cdp_session(page)
    session.send("Network.enable")
    session.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )


def test_an_upload_shows_bytes_and_files_sent_then_the_stored_study(live_server, browser_page):
    page = browser_page
    page.add_init_script(WATCH)
    page.add_init_script(RECORD_VIOLATIONS)
    signed_in_upload_page(live_server, page)
    films = [
        {"name": f"{view}.png", "mimeType": "image/png", "buffer": png_bytes(seed=i, size=1024)}
        for i, view in enumerate(VIEWS)
    ]
    total = sum(len(f["buffer"]) for f in films)
    slow_upload(page, bytes_per_second=max(total // 3, 100_000))  # about three seconds
    page.fill("#id_accession_number", "UP-1")
    page.fill("#id_patient_pseudonym", "P-UP-1")
    page.set_input_files("#id_files", files=films)
    page.click("#upload-form button[type=submit]")

    link = page.wait_for_selector("#upload-case-link", timeout=60_000)
    study = Study.objects.get(accession_number="UP-1")
    assert Image.objects.filter(study=study).count() == 4
    assert link.get_attribute("href") == f"/cases/{study.case_id}/"
    assert f"Stored in study {study.pk}" in page.text_content("#upload-outcome")
    assert page.evaluate("window.__same_page") is True
    assert page.evaluate("window.__csp") == []  # upload.js runs under the site's CSP
    assert page.inner_text("#upload-progress .upload-sent").endswith("4 of 4 files")
    assert not page.is_disabled("#upload-form button[type=submit]")
    page.screenshot(path=str(ARTIFACTS / "upload-progress-done.png"), full_page=True)

    seen = page.evaluate("window.__seen")
    sending = [s for s in seen if 0 < s["value"] < 1]
    assert sending, seen[-5:]
    assert all(s["disabled"] for s in sending)
    values = [s["value"] for s in sending]
    assert values == sorted(values) and len(set(values)) >= 3  # it advanced, step by step
    line = re.compile(r"^[\d.]+ of [\d.]+ MB, (\d) of 4 files")
    counts = {int(m.group(1)) for s in sending if (m := line.match(s["text"]))}
    assert len(counts) >= 2 and counts <= {0, 1, 2, 3, 4}, counts  # files counted as they go


def test_a_refused_upload_says_why_in_the_page(live_server, browser_page):
    page = browser_page
    signed_in_upload_page(live_server, page)
    page.fill("#id_accession_number", "UP-2")
    page.fill("#id_patient_pseudonym", "P-UP-2")
    page.set_input_files(
        "#id_files",
        files=[
            {"name": "R_CC.png", "mimeType": "image/png", "buffer": png_bytes(seed=1, size=256)},
            {"name": "notes.png", "mimeType": "image/png", "buffer": b"not a film at all"},
        ],
    )
    page.click("#upload-form button[type=submit]")
    alert = page.wait_for_selector("#upload-outcome [role=alert]", timeout=30_000)
    assert "nothing was stored" in alert.inner_text().lower()
    outcome = page.text_content("#upload-outcome")
    assert "Nothing was stored" in outcome and "notes.png" in outcome
    assert page.evaluate("window.__same_page") is True
    assert not Study.objects.filter(accession_number="UP-2").exists()
    assert not page.is_disabled("#upload-form button[type=submit]")


def test_without_javascript_the_form_still_posts(live_server, browser_page):
    context = browser_page.context.browser.new_context(java_script_enabled=False)
    page = context.new_page()
    UserFactory(username="site-admin", role="admin")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "site-admin")
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.goto(f"{live_server.url}/upload/")
    page.fill("#id_accession_number", "UP-3")
    page.fill("#id_patient_pseudonym", "P-UP-3")
    page.set_input_files(
        "#id_files",
        files=[
            {"name": "L_CC.png", "mimeType": "image/png", "buffer": png_bytes(seed=2, size=256)}
        ],
    )
    with page.expect_navigation():
        page.click("#upload-form button[type=submit]")
    assert page.is_hidden("#upload-progress")
    study = Study.objects.get(accession_number="UP-3")
    assert f"Stored in study {study.pk}" in page.text_content("#upload-outcome")
    context.close()
