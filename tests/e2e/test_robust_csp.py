"""In headless Chromium: the reading room works under the Content-Security-Policy.

The page's scripts (case.js, live.js), its images and heatmaps, and the AI panel that
live.js puts in place when a result arrives must all run without one CSP violation; an
inline script injected at the end must be refused, which shows the policy is enforced.
"""

from __future__ import annotations

import pytest

from screening.choices import CaseStatus, Role
from tests.factories import UserFactory, case_with_images, score_case

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"  # the factories' password
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
    window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


def csp_console(page) -> list[str]:
    messages: list[str] = []
    page.on(
        "console",
        lambda m: messages.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return messages


def test_the_case_page_runs_under_the_csp_without_violations(live_server, browser_page):
    UserFactory(username="csp-reader", role=Role.RADIOLOGIST)
    case = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
    page = browser_page
    page.add_init_script(RECORD_VIOLATIONS)
    console = csp_console(page)

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "csp-reader")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/worklist/")
    response = page.goto(f"{live_server.url}/cases/{case.pk}/")
    assert "script-src 'self'" in response.headers["content-security-policy"]

    score_case(case, 0.93)  # live.js fetches the AI panel and puts its HTML in place
    page.wait_for_selector("#accept-ai", timeout=10_000)
    page.wait_for_function("document.querySelectorAll('.panel img.heatmap').length === 2")
    page.keyboard.press("h")  # case.js: the heatmap toggle shortcut
    assert page.eval_on_selector(".panel img.heatmap", "img => img.style.display") == "none"
    page.wait_for_load_state("networkidle")

    assert page.evaluate("window.__csp") == []
    assert console == []

    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__ran = 1'; document.body.appendChild(s); }"
    )
    page.wait_for_function("window.__csp.length > 0")
    assert page.evaluate("window.__ran") is None
    assert page.evaluate("window.__csp")[0].startswith("script-src")
