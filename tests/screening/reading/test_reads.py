"""Double reading: first, second and arbitration reads, overrides, and conflicts."""

from __future__ import annotations

import re
import threading

import pytest
import requests
from django.db import connection
from django.urls import reverse
from rest_framework.authtoken.models import Token

from screening.choices import AuditAction, CaseStatus, Decision, ReadKind
from screening.errors import Conflict, DomainError
from screening.models import AuditEvent, Case, Read, ReaderSettings
from screening.reading import actions as reading_actions
from screening.reading.actions import ReadInput
from tests.conftest import requires_postgres
from tests.factories import UserFactory, case_with_images, read_case, read_input

RECALL = read_input(True)
NO_RECALL = read_input(False)


def second(read: ReadInput) -> ReadInput:
    return ReadInput(**{**read.__dict__, "kind": ReadKind.SECOND})


def test_accepting_a_high_risk_ai_records_agreement(radiologist):
    case = case_with_images(score=0.9)
    read = reading_actions.submit_read(radiologist, case.pk, RECALL)
    assert isinstance(read, Read)
    case.refresh_from_db()
    assert (read.kind, read.agrees_with_ai, case.status) == (
        ReadKind.FIRST,
        True,
        CaseStatus.FIRST_READ_DONE,
    )
    assert read.ai_result == case.ai_result


def test_the_stored_read_is_exactly_the_read_given(radiologist):
    case = case_with_images(score=0.9)
    read = reading_actions.submit_read(radiologist, case.pk, RECALL)
    assert isinstance(read, Read)
    read.refresh_from_db()
    assert (read.birads_right, read.birads_left, read.density) == (4, 1, "b")
    assert (read.decision, read.birads) == (Decision.RECALL, 4)
    finding = read.findings.get()
    assert (finding.breast, finding.finding, finding.site, finding.depth) == (
        "R",
        "mass",
        "10",
        "middle",
    )


def test_the_decision_is_derived_from_the_most_concerning_breast(radiologist):
    case = case_with_images()
    data = ReadInput(kind=ReadKind.FIRST, birads_right=2, birads_left=0, density="c")
    read = reading_actions.submit_read(radiologist, case.pk, data)
    assert (read.decision, read.birads) == (Decision.RECALL, 0)


def test_a_decision_that_does_not_fit_the_categories_is_refused(radiologist):
    case = case_with_images(score=0.9)
    given = ReadInput(**{**RECALL.__dict__, "decision": Decision.NO_RECALL, "reason": "x"})
    with pytest.raises(DomainError, match="mean recall, not no recall"):
        reading_actions.submit_read(radiologist, case.pk, given)
    assert not Read.objects.exists()


def test_a_recalled_breast_must_name_its_finding(radiologist):
    case = case_with_images()
    data = ReadInput(kind=ReadKind.FIRST, birads_right=4, birads_left=1, density="a")
    with pytest.raises(DomainError, match="record what you saw"):
        reading_actions.submit_read(radiologist, case.pk, data)


def test_a_structured_read_needs_the_density(radiologist):
    case = case_with_images()
    data = ReadInput(kind=ReadKind.FIRST, birads_right=1, birads_left=1)
    with pytest.raises(DomainError, match="density"):
        reading_actions.submit_read(radiologist, case.pk, data)


def test_overriding_the_ai_needs_a_reason(radiologist):
    case = case_with_images(score=0.9)
    silent = ReadInput(**{**NO_RECALL.__dict__, "reason": ""})
    with pytest.raises(DomainError, match="reason is required"):
        reading_actions.submit_read(radiologist, case.pk, silent)
    assert not Read.objects.exists()


def test_an_override_with_a_reason_is_recorded_as_disagreement(radiologist):
    case = case_with_images(score=0.1)
    read = reading_actions.submit_read(radiologist, case.pk, RECALL)
    assert isinstance(read, Read)
    assert read.agrees_with_ai is False
    event = AuditEvent.objects.get(action=AuditAction.READ_RECORDED)
    assert event.detail["overrode_ai"] is True
    assert (event.detail["birads_right"], event.detail["birads_left"]) == (4, 1)


def test_a_read_without_ai_has_no_agreement_flag(radiologist):
    case = case_with_images(status=CaseStatus.AWAITING_AI)
    read = reading_actions.submit_read(radiologist, case.pk, NO_RECALL)
    assert isinstance(read, Read)
    assert read.agrees_with_ai is None and read.ai_result is None


@pytest.mark.parametrize(("decision", "birads"), [(Decision.NO_RECALL, 1), (Decision.RECALL, 4)])
def test_a_whole_case_birads_alone_is_refused_by_the_verb(radiologist, decision, birads):
    """Before: the first-version read (decision and one category) was stored without
    per-breast categories or density, and the auditor's density figures missed it."""
    case = case_with_images()
    data = ReadInput(kind=ReadKind.FIRST, decision=decision, birads=birads, density="b")
    with pytest.raises(DomainError, match="each breast"):
        reading_actions.submit_read(radiologist, case.pk, data)
    assert not Read.objects.exists()


def test_a_read_must_say_which_read_it_is(radiologist):
    case = case_with_images()
    unstated = ReadInput(**{**NO_RECALL.__dict__, "kind": ""})
    with pytest.raises(DomainError, match="State which read"):
        reading_actions.submit_read(radiologist, case.pk, unstated)


def test_the_first_reader_cannot_give_the_second_read(radiologist):
    case = case_with_images()
    reading_actions.submit_read(radiologist, case.pk, NO_RECALL)
    with pytest.raises(Conflict, match="independent"):
        reading_actions.submit_read(radiologist, case.pk, second(NO_RECALL))


def test_a_first_read_given_after_someone_else_read_first_is_refused(radiologist, radiologist2):
    case = case_with_images()
    reading_actions.submit_read(radiologist, case.pk, NO_RECALL)
    with pytest.raises(Conflict, match="another reader got there first"):
        reading_actions.submit_read(radiologist2, case.pk, NO_RECALL)
    case.refresh_from_db()
    assert case.status == CaseStatus.FIRST_READ_DONE and Read.objects.count() == 1


def test_agreeing_second_read_closes_the_case(radiologist, radiologist2):
    case = case_with_images()
    reading_actions.submit_read(radiologist, case.pk, NO_RECALL)
    read = reading_actions.submit_read(radiologist2, case.pk, second(NO_RECALL))
    case.refresh_from_db()
    assert read.kind == ReadKind.SECOND
    assert (case.status, case.final_decision) == (CaseStatus.CLOSED, Decision.NO_RECALL)
    assert case.closed_at is not None


def test_disagreeing_reads_go_to_arbitration_which_decides(radiologist, radiologist2):
    case = case_with_images()
    read_case(radiologist, case.pk, False)
    read_case(radiologist2, case.pk, True)
    case.refresh_from_db()
    assert case.status == CaseStatus.ARBITRATION
    arbiter = UserFactory(role="radiologist")
    read = read_case(arbiter, case.pk, True)
    case.refresh_from_db()
    assert read.kind == ReadKind.ARBITRATION
    assert (case.status, case.final_decision) == (CaseStatus.CLOSED, Decision.RECALL)


@pytest.mark.parametrize("which", [0, 1])
def test_neither_disagreeing_reader_may_arbitrate(radiologist, radiologist2, which):
    case = case_with_images()
    read_case(radiologist, case.pk, False)
    read_case(radiologist2, case.pk, True)
    with pytest.raises(Conflict, match="arbitration must be by someone who gave neither read"):
        read_case([radiologist, radiologist2][which], case.pk, True)
    case.refresh_from_db()
    assert case.status == CaseStatus.ARBITRATION and case.final_decision == ""


def test_a_granted_arbitrator_arbitrates_but_gives_no_first_read(radiologist, radiologist2):
    arbitrator = UserFactory(role="arbitrator")
    fresh = case_with_images()
    with pytest.raises(DomainError, match="role does not give the first read") as refused:
        read_case(arbitrator, fresh.pk, False)
    assert refused.value.status == 403
    case = case_with_images()
    read_case(radiologist, case.pk, False)
    read_case(radiologist2, case.pk, True)
    assert read_case(arbitrator, case.pk, False).kind == ReadKind.ARBITRATION


def test_a_closed_case_takes_no_more_reads(radiologist, radiologist2):
    case = case_with_images()
    read_case(radiologist, case.pk, False)
    read_case(radiologist2, case.pk, False)
    with pytest.raises(Conflict, match="closed"):
        reading_actions.submit_read(UserFactory(role="radiologist"), case.pk, second(NO_RECALL))
    assert AuditEvent.objects.filter(action=AuditAction.READ_CONFLICT).count() == 1


def page_read(form_initial: dict, **fields: object) -> dict:
    """A read as the case page's form posts it."""
    return {
        "kind": form_initial["kind"],
        "opened": form_initial["opened"],
        "birads_right": 1,
        "birads_left": 1,
        "density": "b",
        **fields,
    }


def test_a_stale_page_gets_a_conflict_page_not_an_overwrite(client, radiologist, radiologist2):
    case = case_with_images(score=0.2)
    client.force_login(radiologist2)
    page = client.get(reverse("case-detail", args=[case.pk]))
    stale_form = page.context["form"].initial
    reading_actions.submit_read(radiologist, case.pk, NO_RECALL)
    response = client.post(
        reverse("case-read", args=[case.pk]), page_read(stale_form, decision="no_recall")
    )
    assert response.status_code == 409
    body = response.content.decode()
    assert "another reader got there first" in body and "Nothing was saved" in body
    assert reverse("case-detail", args=[case.pk]) in body  # the way back
    assert Read.objects.count() == 1


def test_the_page_form_preselects_no_category(client, radiologist):
    case = case_with_images(score=0.95)
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[case.pk]))
    initial = page.context["form"].initial
    assert set(initial) == {"kind", "opened"}
    form = page.content.decode().split('id="read-form"')[1].split("</form>")[0]
    assert not re.search(r'value="[^"]+" selected', form), "a category is preselected"
    assert "checked" not in form, "a density is preselected"


def test_the_page_read_shows_the_readers_own_read_and_the_next_case(client, radiologist):
    """For a reader who chose to stay on the case after recording a read."""
    top = case_with_images(score=0.95)
    following = case_with_images(score=0.5)
    ReaderSettings.objects.create(user=radiologist, open_next_after_read=False)
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[top.pk]))
    form = page.context["form"].initial
    response = client.post(
        reverse("case-read", args=[top.pk]),
        page_read(
            form,
            birads_left=2,
            decision="no_recall",
            reason="Benign calcifications only",
        ),
    )
    assert response.status_code == 302 and response.url == reverse("case-detail", args=[top.pk])
    read = Read.objects.get()
    assert read.agrees_with_ai is False and read.seconds_taken is not None
    assert (read.birads_right, read.birads_left, read.birads) == (1, 2, 2)
    after = client.get(response.url).content.decode()
    assert "You read this case" in after and "BI-RADS R 1, L 2" in after
    assert reverse("case-detail", args=[following.pk]) in after
    assert 'id="read-form"' not in after


def test_the_api_answers_409_on_conflict_and_201_on_success(api, radiologist):
    case = case_with_images()
    api.force_authenticate(radiologist)
    url = reverse("api-case-reads", args=[case.pk])
    payload = {"kind": "first", "birads_right": 1, "birads_left": 1, "density": "a"}
    first = api.post(url, payload, format="json")
    assert first.status_code == 201 and first.json()["kind"] == "first"
    assert first.json()["decision"] == "no_recall"
    again = api.post(url, payload, format="json")
    assert again.status_code == 409


def test_the_first_version_api_payload_is_refused_naming_the_missing_fields(api, radiologist):
    """Before: this payload was answered 201 and stored with no per-breast categories and
    no density."""
    case = case_with_images()
    api.force_authenticate(radiologist)
    payload = {"expected_status": "ready", "decision": "no_recall", "birads": 2}
    response = api.post(reverse("api-case-reads", args=[case.pk]), payload, format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert set(body) == {"birads_right", "birads_left", "density"}
    assert "version 2" in body["density"][0] and "birads alone" in body["density"][0]
    assert not Read.objects.exists()
    assert Case.objects.get().status == CaseStatus.READY


def test_per_breast_fields_sent_empty_are_refused_as_missing(api, radiologist):
    case = case_with_images()
    api.force_authenticate(radiologist)
    payload = {"kind": "first", "birads_right": None, "birads_left": 1, "density": ""}
    response = api.post(reverse("api-case-reads", args=[case.pk]), payload, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"birads_right", "density"}
    assert not Read.objects.exists()


def test_a_read_stating_payload_version_1_is_refused_and_version_2_taken(api, radiologist):
    case = case_with_images()
    api.force_authenticate(radiologist)
    url = reverse("api-case-reads", args=[case.pk])
    payload = {"kind": "first", "birads_right": 1, "birads_left": 2, "density": "c"}
    old = api.post(url, {**payload, "payload_version": 1}, format="json")
    assert old.status_code == 400
    assert "version 1 is not taken" in old.json()["payload_version"][0]
    assert not Read.objects.exists()
    new = api.post(url, {**payload, "payload_version": 2}, format="json")
    assert new.status_code == 201, new.json()
    read = Read.objects.get()
    assert (read.birads_right, read.birads_left, read.density, read.birads) == (1, 2, "c", 2)


def test_a_read_stored_under_the_first_version_stays_as_it_was_given(api, radiologist, auditor):
    case = case_with_images()
    old = Read.objects.create(
        case=case, reader=radiologist, kind=ReadKind.FIRST, decision=Decision.NO_RECALL, birads=2
    )
    api.force_authenticate(auditor)
    response = api.get(reverse("api-case-detail", args=[case.pk]))
    assert response.status_code == 200
    (shown,) = response.json()["reads"]
    assert (shown["id"], shown["birads"], shown["birads_right"], shown["density"]) == (
        old.pk, 2, None, "",
    )  # fmt: skip


def test_the_page_form_refuses_a_read_without_density(client, radiologist):
    case = case_with_images()
    client.force_login(radiologist)
    form = client.get(reverse("case-detail", args=[case.pk])).context["form"].initial
    posted = page_read(form)
    del posted["density"]
    response = client.post(reverse("case-read", args=[case.pk]), posted)
    assert response.status_code == 400
    assert "Breast density (ACR): This field is required." in response.content.decode()
    assert not Read.objects.exists()


def test_an_api_read_that_does_not_say_which_read_it_is_is_refused(api, radiologist):
    case = case_with_images()
    api.force_authenticate(radiologist)
    payload = {"birads_right": 1, "birads_left": 1, "density": "a"}
    response = api.post(reverse("api-case-reads", args=[case.pk]), payload, format="json")
    assert response.status_code == 400
    assert "State which read" in response.json()["detail"]
    assert not Read.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stated", ["kind", "expected_status"])
def test_two_readers_posting_a_first_read_at_once_one_wins_the_other_gets_409(
    role_groups, live_server, stated
):
    """Reproduction: with the role left out, both got 201 and the case closed unchosen."""
    requires_postgres()
    case = case_with_images()
    readers = [UserFactory(role="radiologist") for _ in range(4)]
    tokens = [Token.objects.create(user=r).key for r in readers]
    payload = {"birads_right": 1, "birads_left": 1, "density": "b"}
    payload[stated] = "first" if stated == "kind" else "ready"
    url = live_server.url + reverse("api-case-reads", args=[case.pk])
    codes: list[int] = []
    barrier = threading.Barrier(len(readers))

    def post(token: str) -> None:
        barrier.wait()
        answer = requests.post(
            url, json=payload, headers={"Authorization": f"Token {token}"}, timeout=30
        )
        codes.append(answer.status_code)

    threads = [threading.Thread(target=post, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201, 409, 409, 409], codes
    case.refresh_from_db()
    assert case.status == CaseStatus.FIRST_READ_DONE
    assert list(Read.objects.filter(case=case).values_list("kind", flat=True)) == ["first"]


@pytest.mark.django_db(transaction=True)
def test_two_readers_deciding_at_once_one_wins_the_other_gets_a_conflict(role_groups):
    requires_postgres()
    case = case_with_images()
    readers = [UserFactory(role="radiologist") for _ in range(4)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(readers))

    def decide(reader) -> None:
        barrier.wait()
        try:
            reading_actions.submit_read(reader, case.pk, NO_RECALL)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(r,)) for r in readers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # All four opened the case while it was ready to read: exactly one first read lands.
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"], outcomes
    assert Read.objects.filter(case=case).count() == 1
    case.refresh_from_db()
    assert case.status == CaseStatus.FIRST_READ_DONE


def test_recording_a_read_opens_the_next_case_by_default(client, radiologist):
    top = case_with_images(score=0.95)
    following = case_with_images(score=0.5)
    client.force_login(radiologist)
    form = client.get(reverse("case-detail", args=[top.pk])).context["form"].initial
    response = client.post(
        reverse("case-read", args=[top.pk]),
        page_read(form, birads_left=2, decision="no_recall", reason="Benign calcifications"),
    )
    assert response.status_code == 302
    assert response.url == reverse("case-detail", args=[following.pk])
    assert Read.objects.get().case_id == top.pk


def test_the_last_case_of_the_worklist_stays_open_after_its_read(client, radiologist):
    only = case_with_images(score=0.95)
    client.force_login(radiologist)
    form = client.get(reverse("case-detail", args=[only.pk])).context["form"].initial
    response = client.post(
        reverse("case-read", args=[only.pk]),
        page_read(form, birads_left=2, decision="no_recall", reason="Benign calcifications"),
    )
    assert response.url == reverse("case-detail", args=[only.pk])


def test_the_open_next_setting_is_kept_per_reader_on_the_server(client, radiologist, radiologist2):
    case = case_with_images()
    back = reverse("case-detail", args=[case.pk])
    client.force_login(radiologist)
    response = client.post(reverse("reading-settings"), {"open_next": "off", "next": back})
    assert response.status_code == 302 and response.url == back
    assert ReaderSettings.objects.get(user=radiologist).open_next_after_read is False
    assert not ReaderSettings.objects.filter(user=radiologist2).exists()
    client.post(reverse("reading-settings"), {"open_next": "on"})
    assert ReaderSettings.objects.get(user=radiologist).open_next_after_read is True


def test_the_open_next_setting_never_sends_the_reader_off_site(client, radiologist):
    client.force_login(radiologist)
    response = client.post(
        reverse("reading-settings"), {"open_next": "on", "next": "https://evil.example/"}
    )
    assert response.url == reverse("worklist")


def test_the_page_sends_the_servers_read_rules_for_its_keys(client, radiologist):
    """The browser's BI-RADS order, recall and finding rules are the server's own, sent with
    json_script, never a copy in case.js that could drift."""
    import json

    from screening.choices import (
        BIRADS_CONCERN_ORDER,
        BIRADS_FOR_DECISION,
        BIRADS_NEEDING_FINDINGS,
        BIRADS_REFUSING_FINDINGS,
        BiRads,
        Density,
    )

    case = case_with_images()
    client.force_login(radiologist)
    html = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    sent = json.loads(html.split('id="read-rules" type="application/json">')[1].split("<")[0])
    assert sent["concern"] == list(BIRADS_CONCERN_ORDER)
    assert set(sent["recall"]) == BIRADS_FOR_DECISION[Decision.RECALL]
    assert set(sent["needs_finding"]) == BIRADS_NEEDING_FINDINGS
    assert sent["categories"] == list(BiRads.values) and sent["normal"] == BiRads.NEGATIVE
    assert sent["densities"] == list(Density.values)
    assert set(sent["refuses_finding"]) == BIRADS_REFUSING_FINDINGS
    assert sent["decisions"] == {"recall": Decision.RECALL, "no_recall": Decision.NO_RECALL}


def test_case_js_restates_no_bi_rads_rule() -> None:
    from pathlib import Path

    script = (Path(__file__).resolve().parents[3] / "static/js/case.js").read_text()
    assert not re.search(r"\[\s*1,\s*2,\s*3|\[\s*0,\s*3,\s*4|\[\s*3,\s*4,\s*5", script)
    # no category compared by hand
    assert not re.search(r"[=!]==\s*[0-6]\b|\b[0-6]\s*[=!]==", script)
    assert '"no_recall"' not in script and "'no_recall'" not in script  # decisions as sent
