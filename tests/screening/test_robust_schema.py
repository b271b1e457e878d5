"""The OpenAPI schema says what the API does: its refusals, their bodies, its media types."""

from __future__ import annotations

import jsonschema
import pytest
import yaml
from django.urls import reverse

from tests.factories import case_with_images


@pytest.fixture
def schema(api, auditor) -> dict:
    api.force_authenticate(auditor)
    return yaml.safe_load(api.get(reverse("api-schema")).content)


def operations(schema: dict, prefix: str = "/api/"):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if path.startswith(prefix):
                yield path, method, operation


def body_schema(schema: dict, path: str, method: str, status: int, media: str) -> dict:
    """The documented body, with the components its references point into."""
    content = schema["paths"][path][method]["responses"][str(status)]["content"]
    return {**content[media]["schema"], "components": schema["components"]}


def test_every_api_operation_documents_its_refusals(schema):
    for path, method, operation in operations(schema):
        documented = set(operation["responses"])
        assert {"401", "403"} <= documented, (method, path)
        if "{id}" in path:
            assert "404" in documented, (method, path)
        if "requestBody" in operation:
            assert "400" in documented, (method, path)
        error = operation["responses"]["403"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}


def test_the_upload_refusal_of_a_bad_field_matches_its_schema(api, admin_user, schema):
    api.force_authenticate(admin_user)
    response = api.post(reverse("api-study-list"), {"birth_year": "1066"}, format="multipart")
    assert response.status_code == 400
    documented = body_schema(schema, "/api/studies/", "post", 400, "application/json")
    jsonschema.validate(response.json(), documented)


def test_the_upload_refusal_of_its_files_matches_its_schema(api, admin_user, schema):
    api.force_authenticate(admin_user)
    response = api.post(reverse("api-study-list"), {"accession_number": "A1"}, format="multipart")
    assert response.status_code == 400 and response.json()["files"] == []
    documented = body_schema(schema, "/api/studies/", "post", 400, "application/json")
    jsonschema.validate(response.json(), documented)


def test_a_refused_filter_matches_its_schema(api, radiologist, schema):
    api.force_authenticate(radiologist)
    response = api.get(reverse("api-case-list"), {"band": "\x00"})
    assert response.status_code == 400
    jsonschema.validate(
        response.json(), body_schema(schema, "/api/cases/", "get", 400, "application/json")
    )


def test_the_image_file_documents_every_format_it_serves(schema):
    served = schema["paths"]["/api/images/{id}/file/"]["get"]["responses"]["200"]["content"]
    assert set(served) == {"image/png", "image/jpeg", "application/dicom"}


def test_the_worklist_documents_its_filters_as_the_vocabulary(schema):
    params = {p["name"]: p for p in schema["paths"]["/api/cases/"]["get"]["parameters"]}
    assert "high" in params["band"]["schema"]["enum"]
    assert "ready" in params["status"]["schema"]["enum"]


def test_a_read_refusal_matches_its_schema(api, radiologist, schema):
    case = case_with_images(images=1, score=0.9)
    api.force_authenticate(radiologist)
    url = reverse("api-case-reads", args=[case.pk])
    response = api.post(url, {"kind": "first", "findings": [{"breast": "X"}]}, format="json")
    assert response.status_code == 400
    documented = body_schema(schema, "/api/cases/{id}/reads/", "post", 400, "application/json")
    jsonschema.validate(response.json(), documented)


def test_the_read_payload_requires_per_breast_categories_and_density(schema):
    """Version 2 of the read payload: a client reading the schema cannot send version 1."""
    body = schema["paths"]["/api/cases/{id}/reads/"]["post"]["requestBody"]["content"]
    read = schema["components"]["schemas"][
        body["application/json"]["schema"]["$ref"].split("/")[-1]
    ]
    assert {"birads_right", "birads_left", "density"} <= set(read["required"])
    assert "birads" not in read["required"] and "decision" not in read["required"]
    (version,) = read["properties"]["payload_version"]["allOf"]
    assert schema["components"]["schemas"][version["$ref"].split("/")[-1]]["enum"] == [2]
    assert "version 1" in read["description"].lower()


def test_the_first_version_read_refusal_matches_its_schema(api, radiologist, schema):
    case = case_with_images(images=1)
    api.force_authenticate(radiologist)
    url = reverse("api-case-reads", args=[case.pk])
    payload = {"expected_status": "ready", "decision": "no_recall", "birads": 2}
    response = api.post(url, payload, format="json")
    assert response.status_code == 400
    documented = body_schema(schema, "/api/cases/{id}/reads/", "post", 400, "application/json")
    jsonschema.validate(response.json(), documented)


def test_an_unknown_format_is_answered_as_documented_and_after_authentication(api, auditor):
    """``?format=`` is no parameter: DRF answered an unknown one 404, before asking who calls."""
    url = reverse("api-model-version-list")
    assert api.get(url, {"format": "AAA"}).status_code == 401
    api.force_authenticate(auditor)
    assert api.get(url, {"format": "AAA"}).status_code == 200
    assert api.get(reverse("dicomweb-studies"), {"format": ""}).status_code == 200


def test_the_schema_document_keeps_its_format_choice(api, auditor):
    api.force_authenticate(auditor)
    assert api.get(reverse("api-schema"), {"format": "json"})["Content-Type"].startswith(
        "application/vnd.oai.openapi+json"
    )
    assert api.get(reverse("api-schema"), {"format": "AAA"}).status_code == 200


@pytest.mark.parametrize("url", ["api-model-version-list", "api-case-list"])
def test_an_empty_page_number_is_refused_as_the_schema_says(api, admin_user, radiologist, url):
    api.force_authenticate(radiologist if url == "api-case-list" else admin_user)
    response = api.get(reverse(url), {"page": ""})
    assert response.status_code == 400 and "page" in response.json()


def test_dicomweb_states_the_dates_and_frames_it_takes(schema):
    import re

    qido = {
        p["name"]: p["schema"] for p in schema["paths"]["/dicomweb/studies"]["get"]["parameters"]
    }
    date = qido["StudyDate"]["pattern"]
    for good in ["", "20240229", "00010101-99991231", "-20260101", "20260101-"]:
        assert re.fullmatch(date, good), good
    for bad in ["20260229", "00000101", "2026-01-01", "-", "20261301"]:
        assert not re.fullmatch(date, bad), bad
    frames_path = next(p for p in schema["paths"] if p.endswith("/frames/{frames}"))
    frames = next(
        p for p in schema["paths"][frames_path]["get"]["parameters"] if p["name"] == "frames"
    )
    assert re.fullmatch(frames["schema"]["pattern"], "1,02") and not re.fullmatch(
        frames["schema"]["pattern"], "0"
    )


def test_a_study_date_the_calendar_lacks_is_refused(api, auditor):
    api.force_authenticate(auditor)
    assert api.get(reverse("dicomweb-studies"), {"StudyDate": "20260230"}).status_code == 400
    assert (
        api.get(reverse("dicomweb-studies"), {"StudyDate": "00010101-99991231"}).status_code == 200
    )


def test_the_api_states_what_its_bodies_need(schema):
    parts = schema["components"]["schemas"]
    assert parts["StudyUploadRequest"]["properties"]["files"]["minItems"] == 1
    assert parts["StudyUploadRequest"]["properties"]["files"]["items"]["format"] == "binary"
    assert "pattern" in parts["Outcome"]["properties"]["accession_number"]


@pytest.mark.parametrize("after", ["0.5_0_1", "1e-05_-99999999999999999_9999999999999999999"])
def test_every_worklist_position_of_the_documented_shape_is_a_page(api, radiologist, after):
    api.force_authenticate(radiologist)
    assert api.get(reverse("api-case-list"), {"after": after}).status_code == 200
    assert api.get(reverse("api-case-list"), {"after": "bm90IGEgY3Vyc29y"}).status_code == 400
