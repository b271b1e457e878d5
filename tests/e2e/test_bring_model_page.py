"""In headless Chromium: the models page says what each manifest claims (issue 25, point 1)."""

from __future__ import annotations

import pytest

from ml.artifacts import DEFAULT_ARTIFACT
from screening.ai import actions as ai_actions
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import PASSWORD
from tests.factories import UserFactory
from tests.ml.conftest import external_artifact  # noqa: F401  (a session fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_sees_a_brought_model_unvalidated_beside_the_shipped_one(
    live_server,
    browser_page,
    external_artifact,  # noqa: F811
):
    admin = UserFactory(username="site-admin", role="admin")
    shipped = ai_actions.register_model_version(admin, str(DEFAULT_ARTIFACT), activate=True)
    brought = ai_actions.register_model_version(admin, str(external_artifact))
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "site-admin")
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.goto(f"{live_server.url}/models/")
    row = page.inner_text(f"#claims-{brought.pk}")
    assert "Brought-in model" in row and "malignant" in row and "48 px" in row
    assert "2 women" in row and "1 woman" in row and "none: starts unvalidated" in row
    assert "site-admin" in row
    shipped_row = page.inner_text(f"#claims-{shipped.pk}")
    assert "85 women" in shipped_row and "19 women" in shipped_row and "present" in shipped_row
    page.locator("#claims").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "models-manifest-claims.png"), full_page=True)
