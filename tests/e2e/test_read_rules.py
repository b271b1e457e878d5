"""The case page explains a read by the rules the server sends, and holds no copy of its own.

The page's BI-RADS order, recall categories and categories that need (or refuse) a finding
come from ``reading.assessment.browser_rules`` (json_script). Serving the page altered
rules and watching its explanation follow them shows case.js decides nothing by itself:
with its own copy, the altered rules would change nothing on the page.
"""

from __future__ import annotations

import pytest

from screening.reading import assessment
from tests.e2e.test_reading_flow import choose
from tests.e2e.test_station_keys import open_case, sign_in
from tests.factories import case_with_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def serve_rules(monkeypatch, **changed: object) -> None:
    rules = {**assessment.browser_rules(), **changed}
    monkeypatch.setattr(assessment, "browser_rules", lambda: rules)


def summary_after(page, live_server, right: str, left: str) -> str:
    sign_in(page, live_server)
    open_case(page, live_server, case_with_images(images=2))
    choose(page, right, left, "b")
    return page.inner_text("#read-summary")


def test_the_page_says_no_recall_for_categories_the_server_does_not_recall(
    live_server, browser_page, monkeypatch
):
    serve_rules(monkeypatch, recall=[0, 5, 6], needs_finding=[])
    assert "Your read: no recall (right 4, left 1)" in summary_after(
        browser_page, live_server, "4", "1"
    )


def test_the_page_ranks_the_breasts_by_the_servers_concern_order(
    live_server, browser_page, monkeypatch
):
    # 2 ranked above 3 and only 2 recalled: right 3, left 2 means the left breast's recall.
    serve_rules(monkeypatch, concern=[1, 3, 2, 6, 0, 4, 5], recall=[2], needs_finding=[])
    assert "Your read: recall (right 3, left 2)" in summary_after(
        browser_page, live_server, "3", "2"
    )


def test_the_page_asks_for_a_finding_where_the_server_needs_one(
    live_server, browser_page, monkeypatch
):
    serve_rules(monkeypatch, needs_finding=[2])
    summary = summary_after(browser_page, live_server, "2", "1")
    assert "the finding in the right breast (BI-RADS 2)" in summary


def test_the_page_follows_the_servers_rules_as_sent(live_server, browser_page):
    """Unaltered, the same reads come out as the server's own rules say."""
    summary = summary_after(browser_page, live_server, "4", "1")
    assert "the finding in the right breast (BI-RADS 4)" in summary
