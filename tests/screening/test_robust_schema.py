"""The OpenAPI schema says what the API does: its refusals, their bodies, its media types."""

from __future__ import annotations

import jsonschema
import pytest
import yaml
from django.urls import reverse

from tests.factories import case_with_images


@pytest.fixture
def schema(api, auditor) -> dict:  # type: ignore[no-untyped-def]
    api.force_authenticate(auditor)
    return yaml.safe_load(api.get(reverse("api-schema")).content)


def operations(schema: dict, prefix: str = "/api/"):  # type: ignore[no-untyped-def]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if path.startswith(prefix):
                yield path, method, operation


def body_schema(schema: dict, path: str, method: str, status: int, media: str) -> dict:
    """The documented body, with the components its references point into."""
    content = schema["paths"][path][method]["responses"][str(status)]["content"]
    return {**content[media]["schema"], "components": schema["components"]}


def test_every_api_operation_documents_its_refusals(schema):  # type: ignore[no-untyped-def]
    for path, method, operation in operations(schema):
        documented = set(operation["responses"])
        assert {"401", "403"} <= documented, (method, path)
        if "{id}" in path:
            assert "404" in documented, (method, path)
        if "requestBody" in operation:
            assert "400" in documented, (method, path)
        error = operation["responses"]["403"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}


def test_the_upload_refusal_of_a_bad_field_matches_its_schema(api, admin_user, schema):  # type: ignore[no-untyped-def]
    api.force_authenticate(admin_user)
    response = api.post(reverse("api-study-list"), {"birth_year": "1066"}, format="multipart")
    assert response.status_code == 400
    documented = body_schema(schema, "/api/studies/", "post", 400, "application/json")
    jsonschema.validate(response.json(), documented)


def test_the_upload_refusal_of_its_files_matches_its_schema(api, admin_user, schema):  # type: ignore[no-untyped-def]
    api.force_authenticate(admin_user)
    response = api.post(reverse("api-study-list"), {"accession_number": "A1"}, format="multipart")
    assert response.status_code == 400 and response.json()["files"] == []
    documented = body_schema(schema, "/api/studies/", "post", 400, "application/json")
    jsonschema.validate(response.json(), documented)


def test_a_refused_filter_matches_its_schema(api, radiologist, schema):  # type: ignore[no-untyped-def]
    api.force_authenticate(radiologist)
    response = api.get(reverse("api-case-list"), {"band": "\x00"})
    assert response.status_code == 400
    jsonschema.validate(
        response.json(), body_schema(schema, "/api/cases/", "get", 400, "application/json")
    )


def test_the_image_file_documents_every_format_it_serves(schema):  # type: ignore[no-untyped-def]
    served = schema["paths"]["/api/images/{id}/file/"]["get"]["responses"]["200"]["content"]
    assert set(served) == {"image/png", "image/jpeg", "application/dicom"}


def test_the_worklist_documents_its_filters_as_the_vocabulary(schema):  # type: ignore[no-untyped-def]
    params = {p["name"]: p for p in schema["paths"]["/api/cases/"]["get"]["parameters"]}
    assert "high" in params["band"]["schema"]["enum"]
    assert "ready" in params["status"]["schema"]["enum"]


def test_a_read_refusal_matches_its_schema(api, radiologist, schema):  # type: ignore[no-untyped-def]
    case = case_with_images(images=1, score=0.9)
    api.force_authenticate(radiologist)
    url = reverse("api-case-reads", args=[case.pk])
    response = api.post(url, {"kind": "first", "findings": [{"breast": "X"}]}, format="json")
    assert response.status_code == 400
    documented = body_schema(schema, "/api/cases/{id}/reads/", "post", 400, "application/json")
    jsonschema.validate(response.json(), documented)


def test_the_read_payload_requires_per_breast_categories_and_density(schema):  # type: ignore[no-untyped-def]
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


def test_the_first_version_read_refusal_matches_its_schema(api, radiologist, schema):  # type: ignore[no-untyped-def]
    case = case_with_images(images=1)
    api.force_authenticate(radiologist)
    url = reverse("api-case-reads", args=[case.pk])
    payload = {"expected_status": "ready", "decision": "no_recall", "birads": 2}
    response = api.post(url, payload, format="json")
    assert response.status_code == 400
    documented = body_schema(schema, "/api/cases/{id}/reads/", "post", 400, "application/json")
    jsonschema.validate(response.json(), documented)
