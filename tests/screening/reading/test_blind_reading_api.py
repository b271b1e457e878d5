"""Double reading is blind through the API: a reader sees only what the pathway shows them."""

from __future__ import annotations

from django.urls import reverse

from tests.factories import UserFactory, case_with_images, read_case


def shown_reads(api, user, case) -> list[tuple[str, str]]:
    api.force_authenticate(user)
    body = api.get(reverse("api-case-detail", args=[case.pk])).json()
    return [(read["kind"], read["reader"]) for read in body["reads"]]


def test_the_second_reader_does_not_see_the_first_read(api, radiologist, radiologist2):
    """Reproduction: the API showed the second reader the first read's decision and name."""
    case = case_with_images(score=0.7)
    read_case(radiologist, case.pk, recall=True)
    api.force_authenticate(radiologist2)
    body = api.get(reverse("api-case-detail", args=[case.pk])).json()
    assert body["reads"] == []
    assert body["read_kind_expected"] == "second"
    assert radiologist.username not in str(body)


def test_the_first_reader_sees_their_own_read_only(api, radiologist, radiologist2):
    case = case_with_images(score=0.7)
    read_case(radiologist, case.pk, recall=True)
    read_case(radiologist2, case.pk, recall=False)
    assert shown_reads(api, radiologist, case) == [("first", radiologist.username)]
    assert shown_reads(api, radiologist2, case) == [("second", radiologist2.username)]


def test_the_arbitrator_sees_both_reads_and_after_closing_everyone_does(
    api, radiologist, radiologist2, auditor
):
    case = case_with_images(score=0.7)
    read_case(radiologist, case.pk, recall=True)
    read_case(radiologist2, case.pk, recall=False)
    third = UserFactory(username="rad3", role="radiologist")
    both = [("first", radiologist.username), ("second", radiologist2.username)]
    assert shown_reads(api, third, case) == both
    read_case(third, case.pk, recall=True)
    everyone = [*both, ("arbitration", third.username)]
    for user in (radiologist, radiologist2, third, auditor):
        assert shown_reads(api, user, case) == everyone


def test_an_auditor_sees_every_read_of_an_open_case(api, radiologist, auditor):
    case = case_with_images(score=0.7)
    read_case(radiologist, case.pk, recall=False)
    assert shown_reads(api, auditor, case) == [("first", radiologist.username)]


def test_the_case_page_hides_the_first_read_from_the_second_reader(
    client, radiologist, radiologist2
):
    case = case_with_images(score=0.7)
    read_case(radiologist, case.pk, recall=True)
    client.force_login(radiologist2)
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert radiologist.username not in page and "You read this case" not in page
    assert "Second read" in page and "Blind" in page


def test_a_disagreeing_reader_is_told_about_arbitration_and_gets_no_form(
    client, radiologist, radiologist2
):
    case = case_with_images(score=0.7)
    read_case(radiologist, case.pk, recall=True)
    read_case(radiologist2, case.pk, recall=False)
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert 'id="read-form"' not in page
    assert "nobody here gave neither read" in page  # only two readers: said on the page
    assert "grant the arbitrator role" in page
    UserFactory(username="rad3", role="radiologist")
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert "you read this case, so you cannot" in page
    assert radiologist2.username not in page


def test_a_radiologist_who_is_also_an_auditor_is_still_blind(api, radiologist):
    """Found by the property tests: the auditor role let a second reader see the first read."""
    from django.contrib.auth.models import Group

    both = UserFactory(username="rad_and_auditor", role="radiologist")
    both.groups.add(Group.objects.get(name="auditor"))
    case = case_with_images(score=0.7)
    read_case(radiologist, case.pk, recall=True)
    assert shown_reads(api, both, case) == []
