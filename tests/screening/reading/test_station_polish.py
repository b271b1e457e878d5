"""The small things a reading station trips over (issue 24, point 8): the icon every page
asks for, the audit trail's detail in words, the admin's refusal, the 405 page, the words of
a refused read, findings right first, the weekly trend's dates, a read kept over a 409."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse

from screening import pathway
from screening.audit.plots import week_positions
from screening.choices import AuditAction, Decision, ReadKind
from screening.models import AuditEvent, Read
from screening.reading import actions as reading_actions
from screening.reading.actions import ReadInput
from screening.reading.assessment import FindingInput
from screening.roles import Person
from tests.factories import case_with_images, read_case

ICO_MAGIC = b"\x00\x00\x01\x00"


def test_the_favicon_is_served_to_anyone(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    assert response.content.startswith(ICO_MAGIC)


def test_every_page_names_the_icon(client, radiologist):
    client.force_login(radiologist)
    assert (
        '<link rel="icon" href="/favicon.ico"' in client.get(reverse("worklist")).content.decode()
    )


def test_the_audit_trail_prints_an_events_detail_as_words_not_a_dict(client, auditor):
    AuditEvent.objects.create(
        actor_name="rad1",
        action=AuditAction.READ_RECORDED,
        object_type="case",
        object_id="7",
        detail={"kind": "first", "ai": {"agrees": False}, "films": [1, 2]},
    )
    client.force_login(auditor)
    body = client.get(reverse("audit-trail")).content.decode()
    assert "ai.agrees: no · films: 1, 2 · kind: first" in body
    assert "{&#x27;kind&#x27;" not in body and "{'kind'" not in body


def test_a_signed_in_reader_opening_the_admin_gets_the_apps_403(client, radiologist):
    client.force_login(radiologist)
    for url in (reverse("admin:index"), reverse("admin:login")):
        response = client.get(url)
        assert response.status_code == 403, url
        body = response.content.decode()
        assert "Not allowed" in body and "your role does not open it" in body
        assert 'name="password"' not in body


def test_a_stranger_opening_the_admin_still_gets_its_sign_in(client, db):
    response = client.get(reverse("admin:index"), follow=True)
    assert response.status_code == 200 and 'name="password"' in response.content.decode()


def test_a_page_opened_with_the_wrong_method_gets_a_page_saying_so(client, radiologist):
    case = case_with_images()
    client.force_login(radiologist)
    response = client.get(reverse("case-read", args=[case.pk]), HTTP_ACCEPT="text/html")
    assert response.status_code == 405 and response["Allow"] == "POST"
    body = response.content.decode()
    assert "Not available this way" in body and "Nothing was recorded" in body
    assert f'href="{reverse("worklist")}"' in body  # in the site's layout


def test_the_api_keeps_its_own_405_answer(client, radiologist):
    client.force_login(radiologist)
    response = client.delete("/api/cases/", HTTP_ACCEPT="application/json")
    assert response.status_code == 405 and response["Content-Type"] == "application/json"


def test_a_refused_read_names_the_read_with_the_right_article(db):
    me = Person(id=1, roles=frozenset({"radiologist"}))
    try:
        pathway.read_role(
            me, "first_read_done", [pathway.GivenRead("first", 2, "recall")], "arbitration"
        )
    except pathway.ReadNotAllowed as refusal:
        message = str(refusal.args[0])
    assert "not a arbitration" not in message
    assert "now waits for the second read, not the arbitration you opened it for" in message


def test_your_read_lists_the_right_breast_before_the_left(client, radiologist):
    case = case_with_images()
    findings = (
        FindingInput(breast="L", finding="calcification", site="UOQ"),
        FindingInput(breast="R", finding="mass", site="10"),
    )
    read = ReadInput(
        kind=ReadKind.FIRST, birads_right=4, birads_left=4, density="b", findings=findings
    )
    reading_actions.submit_read(radiologist, case.pk, read)
    client.force_login(radiologist)
    mine = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    mine = mine.split('id="my-read"')[1].split("</div>")[0]
    assert mine.index("right") < mine.index("left"), mine


def test_the_weekly_trend_stands_each_bar_inside_its_own_week() -> None:
    monday = dt.date(2026, 11, 30)
    (middle,), (label,) = week_positions([monday])
    bar = (middle - dt.timedelta(days=3), middle + dt.timedelta(days=3))  # width 6 days
    start = dt.datetime.combine(monday, dt.time())
    assert start <= bar[0] and bar[1] <= start + dt.timedelta(days=7)
    friday = dt.datetime(2026, 12, 4, 15)
    assert bar[0] <= friday <= bar[1]
    assert label == "week of 30 Nov 2026"


def test_a_read_refused_with_409_is_kept_as_a_draft_for_the_reopened_case(
    client, radiologist, radiologist2
):
    """Another reader records the first read while this reader fills theirs in: the button
    answers 409, and reopening the case (now this reader's second read) puts back what they
    had entered, with a line saying so."""
    case = case_with_images()
    client.force_login(radiologist)
    initial = client.get(reverse("case-detail", args=[case.pk])).context["form"].initial
    entered = {"birads_right": "2", "birads_left": "1", "density": "c", "reason": "Stable cyst"}
    assert client.post(reverse("case-draft", args=[case.pk]), entered).status_code == 200
    read_case(radiologist2, case.pk, recall=False)

    sent = {**entered, "kind": initial["kind"], "opened": initial["opened"], "decision": ""}
    refused = client.post(reverse("case-read", args=[case.pk]), sent)
    assert refused.status_code == 409
    reopened = client.get(reverse("case-detail", args=[case.pk]))
    assert reopened.context["read_kind"] == ReadKind.SECOND and reopened.context["draft_restored"]
    assert {
        k: str(v) for k, v in reopened.context["form"].initial.items() if k in entered
    } == entered
    assert "Your unsaved read was kept" in reopened.content.decode()
    assert Read.objects.get().decision == Decision.NO_RECALL  # only the other reader's read
