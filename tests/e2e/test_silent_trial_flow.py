"""In headless Chromium: an admin starts and stops a silent trial on the models page, and a
reader's worklist and case page show the active version's result alone (issue 25)."""

from __future__ import annotations

import pytest

from screening.ai import inference
from screening.choices import AIStatus, CaseStatus, SilentTrial
from screening.models import AIResult, Case, ModelVersion
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_reading_flow import log_in, open_case
from tests.factories import ModelVersionFactory, UserFactory, case_with_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TRIAL_SCORE = 0.987654321


def scored_by(case: Case, version: ModelVersion, probability: float) -> None:
    """Per-image results as the worker records them, then its case step."""
    for image in case.studies.get().images.all():
        AIResult.objects.create(
            image=image,
            case=case,
            model_version=version,
            status=AIStatus.DONE,
            probability=probability,
        )
    inference.aggregate_case(case.pk, version.pk)


def test_a_trial_started_on_the_models_page_stays_out_of_the_readers_sight(
    live_server, browser_page
):
    UserFactory(username="admin", role="admin")
    UserFactory(username="reader", role="radiologist")
    active = ModelVersionFactory(is_active=True, version="1.0-active")
    trial = ModelVersionFactory(version="2.0-candidate")
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{live_server.url}/models/")
    row = page.locator(f"#model-versions tr[data-version='{trial.pk}']")
    row.get_by_role("button", name="Start silent trial").click()
    page.wait_for_load_state()
    row = page.locator(f"#model-versions tr[data-version='{trial.pk}']")
    assert row.locator(".state").inner_text() == "Silent trial"
    assert ModelVersion.objects.get(pk=trial.pk).silent_trial == SilentTrial.RUNNING
    page.screenshot(path=str(ARTIFACTS / "silent-trial-models.png"), full_page=True)

    both = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
    trial_only = case_with_images(images=2, status=CaseStatus.AWAITING_AI)
    scored_by(both, trial, TRIAL_SCORE)
    scored_by(both, active, 0.2)
    scored_by(trial_only, trial, TRIAL_SCORE)

    reader = page.context.browser.new_context(viewport={"width": 1600, "height": 1000})
    seen = reader.new_page()
    log_in(seen, live_server, "reader")
    worklist = seen.content()
    pending = seen.locator(f"#worklist tr[data-case='{trial_only.pk}'] .band").inner_text()
    assert pending == "AI pending"
    assert "2.0-candidate" not in worklist and "0.988" not in worklist
    seen.screenshot(path=str(ARTIFACTS / "silent-trial-worklist-reader.png"), full_page=True)
    for case in (both, trial_only):
        open_case(seen, live_server, case)
        html = seen.content()
        assert "2.0-candidate" not in html and "0.988" not in html and "0.987" not in html
    open_case(seen, live_server, trial_only)
    seen.screenshot(path=str(ARTIFACTS / "silent-trial-case-reader.png"), full_page=True)
    reader.close()

    page.goto(f"{live_server.url}/models/")
    row = page.locator(f"#model-versions tr[data-version='{trial.pk}']")
    row.get_by_role("button", name="Stop silent trial").click()
    page.wait_for_load_state()
    row = page.locator(f"#model-versions tr[data-version='{trial.pk}']")
    assert row.locator(".state").inner_text() == "Silent trial stopped"
