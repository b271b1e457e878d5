"""The hanging protocols' server side (issue 24, point 1): the rules the viewer hangs by are
sent with the page, the site's 1×4 order is a setting checked at start, and each reader's
default protocol is kept for them on the server. The hanging itself is measured in
Chromium (tests/e2e/test_hanging_protocols.py)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from screening.choices import HangingProtocol
from screening.models import ReaderSettings
from tests.factories import case_with_images
from tests.screening.ops.test_settings import PRODUCTION, manage

pytestmark = pytest.mark.django_db


def rules_sent(client, case) -> dict:
    content = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    start = content.index('<script id="hanging-rules" type="application/json">')
    body = content[content.index(">", start) + 1 : content.index("</script>", start)]
    return json.loads(body)


def test_the_page_sends_the_protocols_the_sites_order_and_the_readers_default(
    client, radiologist, settings
):
    settings.HANGING_ROW_ORDER = ["RCC", "LCC", "RMLO", "LMLO"]
    client.force_login(radiologist)
    rules = rules_sent(client, case_with_images())
    assert rules == {
        "protocols": [[p.value, p.label] for p in HangingProtocol],
        "pair_views": {"cc": "CC", "mlo": "MLO"},
        "row_order": ["RCC", "LCC", "RMLO", "LMLO"],
        "default": "row",
    }


def test_a_reader_saves_a_default_protocol_without_leaving_the_case(
    client, radiologist, radiologist2
):
    case = case_with_images()
    client.force_login(radiologist)
    response = client.post(
        reverse("reading-settings"),
        {"hanging_protocol": "mlo"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200 and response.json() == {"hanging_protocol": "mlo"}
    own = ReaderSettings.objects.get(user=radiologist)
    assert own.hanging_protocol == HangingProtocol.MLO
    assert own.open_next_after_read is True  # not sent, so not changed
    assert rules_sent(client, case)["default"] == "mlo"
    client.force_login(radiologist2)
    assert rules_sent(client, case)["default"] == "row"


def test_the_open_next_switch_leaves_the_protocol_as_it_was(client, radiologist):
    ReaderSettings.objects.create(user=radiologist, hanging_protocol=HangingProtocol.SINGLE)
    client.force_login(radiologist)
    client.post(reverse("reading-settings"), {"open_next": "off"})
    own = ReaderSettings.objects.get(user=radiologist)
    assert (own.hanging_protocol, own.open_next_after_read) == (HangingProtocol.SINGLE, False)


def test_an_unknown_protocol_is_refused_and_nothing_is_kept(client, radiologist):
    client.force_login(radiologist)
    response = client.post(
        reverse("reading-settings"), {"hanging_protocol": "2x2", "open_next": "off"}
    )
    assert response.status_code == 400
    assert not ReaderSettings.objects.exists()


def test_an_auditor_keeps_no_reading_settings(client, auditor):
    client.force_login(auditor)
    response = client.post(reverse("reading-settings"), {"hanging_protocol": "cc"})
    assert response.status_code == 403
    assert not ReaderSettings.objects.exists()


def test_a_row_order_without_the_four_views_refuses_to_start() -> None:
    result = manage("check", env={**PRODUCTION, "HANGING_ROW_ORDER": "RMLO,LMLO,RCC,RCC"})
    assert result.returncode != 0
    assert "HANGING_ROW_ORDER must name RCC, LCC, RMLO and LMLO once each" in result.stderr
