"""Refused and missing pages keep the site's layout and say why, without leaking the request."""

from __future__ import annotations

from http import HTTPStatus

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import Client, RequestFactory
from django.urls import reverse
from django.views import defaults

from screening.http import conflict_page
from tests.factories import case_with_images

# Markers from base.html that Django's bare error pages lack.
TOPBAR = 'class="topbar"'
FOOTER = "AI scores support, never replace"
HOME_LINK = f'href="{reverse("home")}"'


def anonymous_get(path: str):
    request = RequestFactory().get(path)
    request.user = AnonymousUser()
    return request


def test_a_wrong_role_gets_a_refusal_page_in_the_layout(client, admin_user):
    client.force_login(admin_user)
    response = client.get(reverse("worklist"))
    body = response.content.decode()
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert TOPBAR in body and FOOTER in body
    assert f'href="{reverse("upload")}"' in body  # the admin's own navigation
    assert "Your role does not allow this page." in body
    assert HOME_LINK in body


def test_a_refusal_without_a_sentence_gives_a_generic_reason(db):
    response = defaults.permission_denied(anonymous_get("/somewhere/"), PermissionDenied())
    body = response.content.decode()
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "Your account does not have access to it." in body
    assert TOPBAR in body


def test_a_missing_case_gets_a_not_found_page_in_the_layout(client, radiologist):
    client.force_login(radiologist)
    response = client.get(reverse("case-detail", args=[999999]))
    body = response.content.decode()
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert TOPBAR in body and FOOTER in body
    assert f'href="{reverse("worklist")}"' in body
    assert "does not exist, or it has been removed" in body
    assert "999999" not in body


def test_an_unknown_address_gets_a_not_found_page_without_echoing_it(client, db):
    response = client.get("/no-such-page-xyz/")
    body = response.content.decode()
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert TOPBAR in body and HOME_LINK in body
    assert "no-such-page-xyz" not in body
    assert "Resolver404" not in body
    assert "Sign out" not in body


def test_a_not_found_page_shows_our_reason(db):
    exception = Http404("The stored file is missing.")
    response = defaults.page_not_found(anonymous_get("/images/1/file/"), exception)
    body = response.content.decode()
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert "The stored file is missing." in body
    assert "/images/1/file/" not in body


def test_the_api_keeps_answering_refusals_in_json(api, admin_user):
    api.force_authenticate(admin_user)
    response = api.get("/api/cases/")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()


def test_a_form_failing_its_csrf_check_gets_an_explanation_in_the_layout(radiologist):
    case = case_with_images()
    client = Client(enforce_csrf_checks=True)
    client.force_login(radiologist)
    response = client.post(reverse("case-read", args=[case.pk]), {"decision": "recall"})
    body = response.content.decode()
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert TOPBAR in body and FOOTER in body
    assert "nothing was saved" in body
    assert "Reload the page and try again" in body


def test_a_conflict_page_says_why_and_links_back(radiologist):
    request = RequestFactory().post("/cases/1/read/")
    request.user = radiologist
    response = conflict_page(
        request,
        message="Another reader finished this case first.",
        back_url=reverse("worklist"),
        back_label="Back to the worklist",
    )
    body = response.content.decode()
    assert response.status_code == HTTPStatus.CONFLICT
    assert TOPBAR in body
    assert "<h1>Not saved</h1>" in body
    assert "Another reader finished this case first." in body
    assert f'href="{reverse("worklist")}">Back to the worklist</a>' in body
