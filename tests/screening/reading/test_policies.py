"""Site reading policies: each walked from arrival to closed through the real verbs, the
case page and the API; the AI reveal (sequential) and the safety net; the refusals."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from screening.ai import inference
from screening.choices import (
    AIReveal,
    AIStatus,
    AuditAction,
    CaseRoute,
    CaseStatus,
    Decision,
    ReadingPolicy,
    ReadKind,
    RevisionTrigger,
    Role,
)
from screening.errors import DomainError
from screening.models import AIResult, AuditEvent, Case, Image, Read, SitePolicy, UnaidedOpinion
from screening.reading import actions
from tests.factories import (
    ModelVersionFactory,
    UserFactory,
    case_with_images,
    heatmap_png,
    read_case,
    unvalidated_evidence,
)

HIGH, INTERMEDIATE, LOW = 0.9, 0.3, 0.1  # bands of a threshold-0.5 version (0.25 / 0.5 cuts)


@pytest.fixture
def version(db):
    return ModelVersionFactory(is_active=True)


@pytest.fixture
def reader3(db):
    return UserFactory(role=Role.RADIOLOGIST, username="rad3")


def arrive(version, score: float | None) -> Case:
    """A case received now; its AI (if ``score``) arrives through the worker's own step
    (``inference.aggregate_case``), which shows the result and takes the case's route."""
    case = case_with_images(images=1, status=CaseStatus.AWAITING_AI)
    if score is not None:
        for image in Image.objects.filter(study__case=case):
            result = AIResult(
                model_version=version, case=case, image=image, status=AIStatus.DONE,
                probability=score,
            )  # fmt: skip
            result.heatmap.save("h.png", ContentFile(heatmap_png()), save=False)
            result.save()
        inference.aggregate_case(case.pk, version.pk)
    case.refresh_from_db()
    return case


def api_read(api, user, case: Case, recall: bool, reason: str = "", kind: str = ""):
    api.force_authenticate(user)
    payload: dict = {"kind": kind or ReadKind.FIRST, "birads_left": 1, "density": "b"}
    payload["reason"] = reason
    if recall:
        payload["birads_right"] = 4
        payload["findings"] = [{"breast": "R", "finding": "mass", "site": "10"}]
    else:
        payload["birads_right"] = 1
    return api.post(reverse("api-case-reads", args=[case.pk]), payload, format="json")


def page_read(client, user, case: Case, recall: bool, reason: str = ""):
    client.force_login(user)
    page = client.get(reverse("case-detail", args=[case.pk]))
    initial = page.context["form"].initial
    sent = {"kind": initial["kind"], "opened": initial["opened"], "density": "b"}
    sent |= {"birads_left": "1", "reason": reason}
    if recall:
        sent |= {"birads_right": "4", "finding_R": "mass", "site_R": "10"}
    else:
        sent["birads_right"] = "1"
    return client.post(reverse("case-read", args=[case.pk]), sent)


def set_policy(client, admin, policy: str, **options) -> SitePolicy:
    """Through the admin's page, as a site would."""
    client.force_login(admin)
    sent = {"policy": policy, "ai_reveal": AIReveal.CONCURRENT, **options}
    response = client.post(reverse("reading-policy"), sent)
    assert response.status_code == 302, response.content.decode()
    client.logout()
    stored = SitePolicy.objects.first()
    assert stored is not None
    return stored


def test_standard_double_reading_walks_first_second_and_closes(
    client, api, admin_user, radiologist, radiologist2, version
):
    set_policy(client, admin_user, ReadingPolicy.STANDARD)
    case = arrive(version, LOW)
    assert case.policy is not None
    assert (case.policy.policy, case.route) == (ReadingPolicy.STANDARD, CaseRoute.DOUBLE)
    assert api_read(api, radiologist, case, recall=False).status_code == 201
    response = page_read(client, radiologist2, case, recall=False)
    assert response.status_code == 302
    case.refresh_from_db()
    assert (case.status, case.final_decision) == (CaseStatus.CLOSED, Decision.NO_RECALL)


def test_routing_single_reads_the_low_bands_and_double_reads_the_high(
    client, api, admin_user, radiologist, radiologist2, version
):
    api.force_authenticate(admin_user)
    made = api.post(reverse("api-policy-list"), {"policy": ReadingPolicy.ROUTING}, format="json")
    assert made.status_code == 201, made.content
    low, high = arrive(version, INTERMEDIATE), arrive(version, HIGH)
    assert (low.route, high.route) == (CaseRoute.SINGLE, CaseRoute.DOUBLE)
    client.force_login(radiologist)
    assert "Single reading" in client.get(reverse("case-detail", args=[low.pk])).content.decode()
    assert api_read(api, radiologist, low, recall=False).status_code == 201
    low.refresh_from_db()
    assert (low.status, low.final_decision) == (CaseStatus.CLOSED, Decision.NO_RECALL)
    assert api_read(api, radiologist, high, recall=True).status_code == 201
    high.refresh_from_db()
    assert high.status == CaseStatus.FIRST_READ_DONE  # a second reader still reads it
    page_read(client, radiologist2, high, recall=True)
    high.refresh_from_db()
    assert (high.status, high.final_decision) == (CaseStatus.CLOSED, Decision.RECALL)


def test_normal_triage_tags_the_low_band_and_single_reads_it_where_chosen(
    client, api, admin_user, radiologist, version
):
    set_policy(client, admin_user, ReadingPolicy.NORMAL_TRIAGE, single_read_normal="on")
    normal, middling = arrive(version, LOW), arrive(version, INTERMEDIATE)
    assert (normal.ai_normal, normal.route) == (True, CaseRoute.SINGLE)
    assert (middling.ai_normal, middling.route) == (False, CaseRoute.DOUBLE)
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[normal.pk])).content.decode()
    assert 'id="ai-normal">AI: normal' in page and "single-read AI-normal exams" in page
    assert page_read(client, radiologist, normal, recall=False).status_code == 302
    normal.refresh_from_db()
    assert (normal.status, normal.final_decision) == (CaseStatus.CLOSED, Decision.NO_RECALL)


def test_normal_triage_without_the_option_tags_but_still_double_reads(client, admin_user, version):
    set_policy(client, admin_user, ReadingPolicy.NORMAL_TRIAGE)
    case = arrive(version, LOW)
    assert (case.ai_normal, case.route) == (True, CaseRoute.DOUBLE)


def test_ai_as_second_reader_closes_on_agreement_and_sends_disagreement_to_arbitration(
    client, api, admin_user, radiologist, radiologist2, version
):
    set_policy(client, admin_user, ReadingPolicy.AI_SECOND_READER)
    agreed, disputed = arrive(version, HIGH), arrive(version, HIGH)
    assert (agreed.route, agreed.ai_decision) == (CaseRoute.AI_SECOND, Decision.RECALL)
    assert api_read(api, radiologist, agreed, recall=True).status_code == 201
    agreed.refresh_from_db()
    assert (agreed.status, agreed.final_decision) == (CaseStatus.CLOSED, Decision.RECALL)

    answer = api_read(api, radiologist, disputed, recall=False, reason="Benign-looking")
    assert answer.status_code == 201
    disputed.refresh_from_db()
    assert disputed.status == CaseStatus.ARBITRATION
    detail = api.get(reverse("api-case-detail", args=[disputed.pk])).json()
    assert detail["route"] == CaseRoute.AI_SECOND
    client.force_login(radiologist2)
    page = client.get(reverse("case-detail", args=[disputed.pk])).content.decode()
    assert "The first read and the AI, as second reader (recall), disagree" in page
    response = page_read(client, radiologist2, disputed, recall=True)
    assert response.status_code == 302
    disputed.refresh_from_db()
    assert (disputed.status, disputed.final_decision) == (CaseStatus.CLOSED, Decision.RECALL)
    assert [r.kind for r in Read.objects.filter(case=disputed)] == [
        ReadKind.FIRST,
        ReadKind.ARBITRATION,
    ]


def test_the_safety_net_questions_a_no_recall_on_a_high_band_exam_once(
    client, api, admin_user, radiologist, radiologist2, version
):
    set_policy(client, admin_user, ReadingPolicy.SAFETY_NET)
    case = arrive(version, HIGH)
    held = page_read(client, radiologist, case, recall=False)
    assert held.status_code == 302 and not Read.objects.exists()
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert 'id="revision-prompt"' in page and "Safety net" in page
    confirmed = page_read(client, radiologist, case, recall=False, reason="Known scar")
    assert confirmed.status_code == 302
    opinion = UnaidedOpinion.objects.get()
    assert opinion.trigger == RevisionTrigger.SAFETY_NET
    assert opinion.read is not None
    assert (opinion.decision, opinion.read.decision, opinion.changed) == (
        Decision.NO_RECALL,
        Decision.NO_RECALL,
        False,
    )
    # A recall on the same exam is not questioned: the second reader records it at once.
    assert api_read(api, radiologist2, case, recall=True, kind=ReadKind.SECOND).status_code == 201
    case.refresh_from_db()
    assert case.status == CaseStatus.ARBITRATION
    actions.submit_read(UserFactory(role=Role.RADIOLOGIST), case.pk, _recall(ReadKind.ARBITRATION))
    case.refresh_from_db()
    assert case.status == CaseStatus.CLOSED
    assert AuditEvent.objects.filter(action=AuditAction.OPINION_COMMITTED).count() == 1


def test_sequential_reveal_hides_the_ai_until_the_unaided_opinion_then_allows_one_revision(
    client, api, admin_user, radiologist, radiologist2, version
):
    set_policy(client, admin_user, ReadingPolicy.STANDARD, ai_reveal=AIReveal.SEQUENTIAL)
    case = arrive(version, HIGH)
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert 'id="ai-hidden"' in page and 'id="ai-summary"' not in page
    assert 'class="heatmap"' not in page
    assert "AI not available" not in page and "AI 0.900" not in page  # film captions
    api.force_authenticate(radiologist)
    listed = api.get(reverse("api-case-list")).json()["results"]
    assert [(c["id"], c["risk_band"], c["ai_score"]) for c in listed] == [(case.pk, None, None)]
    detail = api.get(reverse("api-case-detail", args=[case.pk])).json()
    assert detail["ai_hidden"] and detail["case_ai_result"] is None and detail["risk_band"] is None

    assert "AI after your read" in client.get(reverse("worklist")).content.decode()
    held = api_read(api, radiologist, case, recall=False)
    assert held.status_code == 202 and held.json()["trigger"] == RevisionTrigger.SEQUENTIAL
    detail = api.get(reverse("api-case-detail", args=[case.pk])).json()
    assert not detail["ai_hidden"] and detail["case_ai_result"] is not None
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert 'class="heatmap"' in page and 'id="revision-prompt"' in page
    assert api_read(api, radiologist, case, recall=True).status_code == 400  # no reason
    assert api_read(api, radiologist, case, recall=True, reason="AI mass").status_code == 201
    opinion = UnaidedOpinion.objects.get()
    assert opinion.read is not None
    assert (opinion.decision, opinion.read.decision, opinion.changed, opinion.reason) == (
        Decision.NO_RECALL,
        Decision.RECALL,
        True,
        "AI mass",
    )
    # The second reader is blind to the first read and, until their own opinion, to the AI.
    client.force_login(radiologist2)
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert 'id="ai-hidden"' in page and "AI mass" not in page
    page_read(client, radiologist2, case, recall=True)
    page_read(client, radiologist2, case, recall=True)
    case.refresh_from_db()
    assert (case.status, case.final_decision) == (CaseStatus.CLOSED, Decision.RECALL)


def _recall(kind: str):
    from tests.factories import read_input

    return read_input(True, kind)


@pytest.mark.parametrize("policy", [p for p in ReadingPolicy.values if p != "standard"])
def test_a_policy_using_the_ai_is_refused_without_an_active_version_validated_for_triage(
    client, admin_user, policy
):
    ModelVersionFactory(is_active=True, evidence=unvalidated_evidence())
    with pytest.raises(DomainError, match="validated for triage"):
        actions.set_policy(admin_user, policy)
    client.force_login(admin_user)
    response = client.post(reverse("reading-policy"), {"policy": policy, "ai_reveal": "concurrent"})
    assert response.status_code == 400 and 'id="policy-error"' in response.content.decode()
    assert not SitePolicy.objects.exists()


def test_a_case_keeps_the_policy_it_arrived_under(client, admin_user, radiologist, version):
    set_policy(client, admin_user, ReadingPolicy.ROUTING)
    case = arrive(version, LOW)
    set_policy(client, admin_user, ReadingPolicy.STANDARD)
    case.refresh_from_db()
    assert case.policy is not None
    assert (case.policy.policy, case.route) == (ReadingPolicy.ROUTING, CaseRoute.SINGLE)
    assert arrive(version, LOW).route == CaseRoute.DOUBLE  # the next one: standard


def test_a_case_read_before_its_ai_arrives_is_double_read_and_never_rerouted(
    client, admin_user, radiologist, version
):
    set_policy(client, admin_user, ReadingPolicy.ROUTING)
    case = arrive(version, None)
    read_case(radiologist, case.pk, recall=False)
    for image in Image.objects.filter(study__case=case):
        AIResult.objects.create(
            model_version=version, case=case, image=image, status=AIStatus.DONE, probability=LOW
        )
    inference.aggregate_case(case.pk, version.pk)
    case.refresh_from_db()
    assert (case.route, case.status) == (CaseRoute.DOUBLE, CaseStatus.FIRST_READ_DONE)


def test_a_policy_cannot_start_in_the_past_and_setting_one_is_audited(admin_user, version):
    import datetime as dt

    from django.utils import timezone

    with pytest.raises(DomainError, match="past"):
        actions.set_policy(
            admin_user, ReadingPolicy.ROUTING, starts_at=timezone.now() - dt.timedelta(hours=1)
        )
    actions.set_policy(admin_user, ReadingPolicy.ROUTING)
    event = AuditEvent.objects.get(action=AuditAction.POLICY_SET)
    assert event.detail["policy"] == ReadingPolicy.ROUTING


def test_only_an_admin_sets_a_policy(client, api, radiologist, auditor):
    client.force_login(radiologist)
    assert client.get(reverse("reading-policy")).status_code == 403
    api.force_authenticate(auditor)
    assert api.get(reverse("api-policy-list")).status_code == 200
    made = api.post(reverse("api-policy-list"), {"policy": "standard"}, format="json")
    assert made.status_code == 403
