"""Worklist pages by keyset (issue 16): every case once, in order, whatever the ties; the
count stops at its cap; the session's idle timeout without a write per request."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from screening.choices import CaseStatus
from screening.models import Case
from screening.reading import queries as reading_queries
from screening.reading import worklist_pages
from tests.factories import ModelVersionFactory, case_with_images, score_case, unvalidated_evidence


def seeded(scores: list[float | None], same_time: bool = False) -> list[Case]:
    """Cases with these scores (None: AI pending); arrival times tie when ``same_time``."""
    version = ModelVersionFactory()
    now = timezone.now()
    cases = []
    for i, score in enumerate(scores):
        if score is None:
            case = case_with_images(images=0, status=CaseStatus.AWAITING_AI)
        else:
            case = case_with_images(images=0)
            score_case(case, score, version)
        arrived = now if same_time else now - dt.timedelta(minutes=i)
        Case.objects.filter(pk=case.pk).update(received_at=arrived)
        cases.append(case)
    return cases


def walk(user, size: int) -> list[int]:
    seen, after = [], ""
    while True:
        page = (
            reading_queries.worklist_page(user, after=after)
            if after
            else reading_queries.worklist_page(user)
        )
        seen += [c.pk for c in page.object_list]
        assert len(page.object_list) <= size
        if not page.next_cursor:
            return seen
        after = page.next_cursor


@pytest.mark.parametrize("same_time", [False, True])
def test_following_next_visits_every_case_once_in_worklist_order(radiologist, settings, same_time):
    settings.WORKLIST_PAGE_SIZE = 3
    # ties on score (0.5 three times) and on pending (-1), with and without equal arrival times
    seeded([0.5, 0.9, None, 0.5, 0.1, None, 0.5, 0.7, None, 0.3, 0.5], same_time)
    expected = list(reading_queries.worklist(radiologist).values_list("pk", flat=True))
    assert walk(radiologist, 3) == expected
    assert len(expected) == 11


def test_an_unvalidated_version_pages_by_waiting_time(radiologist, settings):
    settings.WORKLIST_PAGE_SIZE = 2
    version = ModelVersionFactory(evidence=unvalidated_evidence())
    now = timezone.now()
    cases = []
    for minutes, score in [(5, 0.9), (50, 0.1), (20, 0.5), (35, 0.99), (1, 0.2)]:
        case = case_with_images(images=0)
        score_case(case, score, version)
        Case.objects.filter(pk=case.pk).update(received_at=now - dt.timedelta(minutes=minutes))
        cases.append((minutes, case.pk))
    assert walk(radiologist, 2) == [pk for _, pk in sorted(cases, reverse=True)]


def test_the_count_stops_at_its_cap(radiologist, monkeypatch):
    seeded([0.1, 0.2, 0.3, 0.4, 0.5])
    monkeypatch.setattr(worklist_pages, "COUNT_CAP", 3)
    assert worklist_pages.bounded_count(reading_queries.worklist(radiologist), 3) == (3, True)
    assert worklist_pages.bounded_count(reading_queries.worklist(radiologist), 5) == (5, False)


def test_the_page_links_next_and_first_and_says_more_than(client, radiologist, settings):
    settings.WORKLIST_PAGE_SIZE = 2
    cases = seeded([0.9, 0.8, 0.7])
    client.force_login(radiologist)
    first = client.get(reverse("worklist"))
    html = first.content.decode()
    assert "3 cases to read" in html and 'id="next-page"' in html and 'id="first-page"' not in html
    after = first.context["page"].next_cursor
    second = client.get(reverse("worklist"), {"after": after})
    assert [c.pk for c in second.context["page"].object_list] == [cases[2].pk]
    assert 'id="first-page"' in second.content.decode()
    bad = client.get(reverse("worklist"), {"after": "not-a-cursor"})
    assert bad.status_code == 200 and "start again from the first page" in bad.content.decode()


def test_the_api_pages_by_next_link_and_refuses_a_forged_cursor(api, radiologist, settings):
    settings.WORKLIST_PAGE_SIZE = 2
    cases = seeded([0.9, 0.8, 0.7])
    api.force_authenticate(radiologist)
    body = api.get(reverse("api-case-list")).json()
    assert (body["count"], body["count_capped"], body["first"]) == (3, False, None)
    assert [c["id"] for c in body["results"]] == [cases[0].pk, cases[1].pk]
    body = api.get(body["next"]).json()
    assert [c["id"] for c in body["results"]] == [cases[2].pk] and body["next"] is None
    assert body["first"].endswith(reverse("api-case-list"))
    assert api.get(reverse("api-case-list"), {"after": "x" * 30}).status_code == 400
    assert api.get(reverse("api-case-list"), {"page": 2}).json()["results"][0]["id"] == cases[2].pk


def test_a_session_is_saved_at_most_once_a_minute_and_still_times_out(
    client, radiologist, settings
):
    client.force_login(radiologist)
    client.get(reverse("worklist"))
    session = Session.objects.get()
    expiry = session.expire_date
    client.get(reverse("worklist"))
    assert Session.objects.get().expire_date == expiry  # no write within the minute
    stored = session.get_decoded()
    stored["_touched"] -= settings.SESSION_TOUCH_SECONDS
    Session.objects.filter(pk=session.pk).update(
        session_data=Session.objects.encode(stored), expire_date=expiry
    )
    client.get(reverse("worklist"))
    assert Session.objects.get().expire_date > expiry  # an active reader stays signed in
    Session.objects.update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    response = client.get(reverse("worklist"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
