"""The worklist: highest AI risk first, then longest waiting; AI-pending cases last."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse
from django.utils import timezone

from screening.choices import AIStatus, CaseStatus, RiskBand
from screening.models import Case
from screening.reading import queries as reading_queries
from screening.reading.queries import WorklistFilter
from tests.factories import (
    ModelVersionFactory,
    UserFactory,
    case_with_images,
    read_case,
    score_case,
)


def received(case: Case, hours_ago: float) -> Case:
    Case.objects.filter(pk=case.pk).update(
        received_at=timezone.now() - dt.timedelta(hours=hours_ago)
    )
    return case


def test_it_orders_by_risk_then_waiting_time_with_pending_last(radiologist):
    pending_old = received(case_with_images(status=CaseStatus.AWAITING_AI), 50)
    low = received(case_with_images(score=0.1), 10)
    high_new = received(case_with_images(score=0.9), 1)
    high_old = received(case_with_images(score=0.9), 5)
    mid = received(case_with_images(score=0.5), 2)
    order = list(reading_queries.worklist(radiologist).values_list("pk", flat=True))
    assert order == [high_old.pk, high_new.pk, mid.pk, low.pk, pending_old.pk]


def test_it_hides_closed_cases_and_my_own_first_reads(radiologist, radiologist2):
    mine = case_with_images(score=0.8)
    read_case(radiologist, mine.pk, recall=True)
    closed = case_with_images(score=0.7, status=CaseStatus.CLOSED)
    open_case = case_with_images(score=0.2)
    assert list(reading_queries.worklist(radiologist)) == [open_case]
    # The other radiologist sees the case for its second read.
    assert set(reading_queries.worklist(radiologist2)) == {mine, open_case}
    assert closed not in reading_queries.worklist(radiologist2)


def test_it_filters_by_risk_band_and_status(radiologist):
    high = case_with_images(score=0.9)
    low = case_with_images(score=0.05)
    pending = case_with_images(status=CaseStatus.AWAITING_AI)
    assert list(reading_queries.worklist(radiologist, WorklistFilter(band="high"))) == [high]
    assert list(reading_queries.worklist(radiologist, WorklistFilter(band="low"))) == [low]
    assert list(reading_queries.worklist(radiologist, WorklistFilter(band="pending"))) == [pending]
    assert list(reading_queries.worklist(radiologist, WorklistFilter(status="awaiting_ai"))) == [
        pending
    ]


def test_bands_follow_the_threshold_of_the_version_that_scored_the_case(radiologist):
    strict = ModelVersionFactory(threshold=0.8)
    cases = {s: case_with_images(images=1) for s in (0.85, 0.5, 0.3)}
    for score, case in cases.items():
        score_case(case, score, strict)
    failed = case_with_images(images=1, score=0.9)
    assert failed.ai_result is not None
    failed.ai_result.status = AIStatus.FAILED
    failed.ai_result.save()
    failed.show_ai_result(failed.ai_result)
    failed.save()

    def band(name: str) -> list[Case]:
        return list(reading_queries.worklist(radiologist, WorklistFilter(band=name)))

    assert band("high") == [cases[0.85]]
    assert band("intermediate") == [cases[0.5]]  # 0.4 <= 0.5 < 0.8
    assert band("low") == [cases[0.3]]
    assert band("failed") == [failed]
    stored = Case.objects.values_list("risk_band", flat=True).get(pk=cases[0.5].pk)
    assert stored == RiskBand.INTERMEDIATE


def test_the_page_and_api_show_the_same_order(client, api, radiologist):
    cases = [case_with_images(images=1, score=s) for s in (0.3, 0.95, 0.6)]
    client.force_login(radiologist)
    page = client.get(reverse("worklist"))
    assert [c.pk for c in page.context["page"]] == [cases[1].pk, cases[2].pk, cases[0].pk]
    html = page.content.decode()
    assert "0.95 · High" in html
    api.force_authenticate(radiologist)
    body = api.get(reverse("api-case-list")).json()
    assert [c["id"] for c in body["results"]] == [cases[1].pk, cases[2].pk, cases[0].pk]
    assert body["results"][0]["risk_band"] == "high"


def test_synthetic_and_pending_cases_are_labelled(client, radiologist):
    case_with_images(status=CaseStatus.AWAITING_AI, is_synthetic=True)
    client.force_login(radiologist)
    html = client.get(reverse("worklist")).content.decode()
    assert "synthetic" in html and "AI pending" in html


def test_it_paginates(client, radiologist, settings):
    settings.WORKLIST_PAGE_SIZE = 2
    for score in (0.1, 0.2, 0.3):
        case_with_images(images=0, score=score)
    client.force_login(radiologist)
    second = client.get(reverse("worklist"), {"page": 2})
    assert len(second.context["page"].object_list) == 1


def test_disagreeing_readers_never_see_their_case_for_arbitration(radiologist, radiologist2):
    case = case_with_images(score=0.8)
    read_case(radiologist, case.pk, recall=True)
    read_case(radiologist2, case.pk, recall=False)
    third = UserFactory(role="radiologist")
    assert case not in reading_queries.worklist(radiologist)
    assert case not in reading_queries.worklist(radiologist2)
    assert case in reading_queries.worklist(third)


def test_a_granted_arbitrator_sees_only_cases_awaiting_arbitration(radiologist, radiologist2):
    disputed = case_with_images(score=0.8)
    read_case(radiologist, disputed.pk, recall=True)
    read_case(radiologist2, disputed.pk, recall=False)
    case_with_images(score=0.9)  # waits for a first read: a radiologist's, not theirs
    arbitrator = UserFactory(role="arbitrator")
    assert list(reading_queries.worklist(arbitrator)) == [disputed]
