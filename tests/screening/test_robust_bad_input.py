"""Bad input is the caller's error: a 404 or 400 that says why, never a 500.

Found by an outside probe: text where an id belongs, and NUL bytes (which PostgreSQL
refuses in strings) in query parameters, reached the database and answered 500.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from screening.choices import Role
from tests.factories import ModelVersionFactory, UserFactory, case_with_images


@pytest.fixture
def everyone(db):
    """One user holding every role, so each endpoint answers on its merits."""
    user = UserFactory(role=Role.RADIOLOGIST, username="all-roles")
    user.groups.add(*Group.objects.filter(name__in=[Role.ADMIN, Role.AUDITOR]))
    return user


@pytest.fixture
def api_as(api, everyone):
    api.force_authenticate(everyone)
    return api


NOT_IDS = ["AAA", "-1", "0", "%C2%B2", "99999999999999999999999"]


@pytest.mark.parametrize("pk", NOT_IDS)
def test_it_answers_404_with_a_reason_for_a_case_id_that_is_not_a_number(api_as, pk):
    response = api_as.get(f"/api/cases/{pk}/")
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.parametrize("pk", NOT_IDS)
def test_it_answers_404_to_a_read_of_a_case_id_that_is_not_a_number(api_as, pk):
    response = api_as.post(f"/api/cases/{pk}/reads/", {"kind": "first"}, format="json")
    assert response.status_code == 404
    assert "whole numbers" in response.json()["detail"]


@pytest.mark.parametrize("pk", NOT_IDS)
def test_it_answers_404_to_activating_a_model_version_id_that_is_not_a_number(api_as, pk):
    ModelVersionFactory()
    response = api_as.post(f"/api/model-versions/{pk}/activate/")
    assert response.status_code == 404
    assert "whole numbers" in response.json()["detail"]


@pytest.mark.parametrize("param", ["band", "status"])
@pytest.mark.parametrize("value", ["%00", "high%00", "nonsense"])
def test_the_api_worklist_refuses_a_filter_outside_the_vocabulary(api_as, param, value):
    case_with_images(images=1, score=0.9)
    response = api_as.get(f"/api/cases/?{param}={value}")
    assert response.status_code == 400
    assert param in response.json()


def test_the_api_worklist_still_filters_by_a_valid_band(api_as):
    high = case_with_images(images=1, score=0.9)
    case_with_images(images=1, score=0.05)
    body = api_as.get("/api/cases/?band=high&status=").json()
    assert [c["id"] for c in body["results"]] == [high.pk]


@pytest.mark.parametrize(
    "url",
    [
        "/worklist/?band=%00",
        "/worklist/?status=%00",
        "/worklist/?page=%00",
        "/cases/?status=%00",
        "/audit/?action=%00&actor=%00&case=%00",
        "/audit/export/?actor=%00",
        "/audit/?case=99999999999999999999999&date_from=99999-01-01",
        "/reports/?threshold=nan&date_from=0000-00-00",
        "/cases/?page=99999999999999999999999",
        "/reports/?band=%00&reader=%00&model_version=%00&density=%00",
        "/reports/discordant/?direction=%00",
        "/worklist/ai-status/?ids=1,%00",
    ],
)
def test_pages_ignore_or_refuse_nul_bytes_in_the_query(client, everyone, url):
    case_with_images(images=1, score=0.5)
    client.force_login(everyone)
    assert client.get(url).status_code in (200, 400)


@pytest.mark.parametrize("ids", ["99999999999999999999999", "-1", "1.0", "%D9%A3"])
def test_polling_refuses_ids_that_name_no_case(client, everyone, ids):
    client.force_login(everyone)
    response = client.get(f"/worklist/ai-status/?ids=1,{ids}")
    assert response.status_code == 400 and "whole numbers" in response.json()["error"]


@pytest.mark.parametrize(
    "url",
    [
        "/cases/99999999999999999999999/",
        "/cases/99999999999999999999999/ai-status/",
        "/images/99999999999999999999999/file/",
        "/api/images/99999999999999999999999/file/",
        "/api/studies/99999999999999999999999/ai-report/",
    ],
)
def test_ids_beyond_the_database_range_are_not_found(client, everyone, url):
    client.force_login(everyone)
    assert client.get(url).status_code == 404
