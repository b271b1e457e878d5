"""Refused uploads, imported outcomes and the model versions page leave the trail they should."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from screening.choices import AuditAction, Outcome
from screening.models import AuditEvent, Case
from tests.factories import ModelVersionFactory, png_bytes

API_URL = "/api/studies/"


def png(name: str = "L_CC.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(seed=1), content_type="image/png")


def rejections() -> list[dict]:
    return [
        e.detail["rejections"]
        for e in AuditEvent.objects.filter(action=AuditAction.UPLOAD_REJECTED)
    ]


def test_an_api_upload_with_a_bad_field_is_audited(api, admin_user):
    api.force_authenticate(admin_user)
    data = {"accession_number": "ACC-1", "study_date": "not-a-date", "files": [png()]}
    response = api.post(API_URL, data, format="multipart")
    assert response.status_code == 400 and "study_date" in response.json()
    assert rejections() == [
        [{"position": -1, "code": "invalid_fields", "status": 400, "fields": ["study_date"]}]
    ]


def test_an_api_upload_declaring_too_large_a_body_is_audited(api, admin_user):
    api.force_authenticate(admin_user)
    forged = str(django_settings.UPLOAD_MAX_REQUEST_BYTES + 1)
    response = api.post(
        API_URL,
        {"accession_number": "ACC-1", "files": [png()]},
        format="multipart",
        CONTENT_LENGTH=forged,
    )
    assert response.status_code == 413
    assert rejections() == [[{"position": -1, "code": "request_too_large", "status": 413}]]


def test_a_page_upload_with_a_bad_field_is_audited(client, admin_user):
    client.force_login(admin_user)
    data = {"target": "new", "accession_number": "ACC-1", "modality": "MG", "study_date": "nope"}
    response = client.post(reverse("upload"), {**data, "files": [png()]})
    assert response.status_code == 400
    assert rejections() == [
        [{"position": -1, "code": "invalid_fields", "status": 400, "fields": ["study_date"]}]
    ]


def test_a_page_upload_declaring_too_large_a_body_is_audited(client, admin_user):
    client.force_login(admin_user)
    forged = str(django_settings.UPLOAD_MAX_REQUEST_BYTES + 1)
    response = client.post(reverse("upload"), {"files": [png()]}, CONTENT_LENGTH=forged)
    assert response.status_code == 413
    assert rejections() == [[{"position": -1, "code": "request_too_large", "status": 413}]]


@pytest.mark.django_db
def test_importing_mini_mias_records_each_outcome_in_the_audit_trail(tmp_path, admin_user):
    (tmp_path / "images").mkdir()
    for seed, name in enumerate(["mdb001.png", "mdb002.png", "mdb003.png", "mdb004.png"]):
        (tmp_path / "images" / name).write_bytes(png_bytes(seed=seed))
    (tmp_path / "labels.csv").write_text(
        "refnum,background,abnormality,severity,x,y,radius,png\n"
        "mdb001,G,CIRC,B,535,425,197,mdb001.png\n"
        "mdb002,G,NORM,,,,,mdb002.png\n"
        "mdb003,D,SPIC,M,1,1,1,mdb003.png\n"
        "mdb004,D,NORM,,,,,mdb004.png\n"
    )
    call_command(
        "import_studies",
        str(tmp_path),
        "--mini-mias",
        "--as-user",
        "admin1",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    events = AuditEvent.objects.filter(action=AuditAction.OUTCOME_RECORDED).order_by("pk")
    by_case = {int(e.object_id): e for e in events}
    assert set(by_case) == set(Case.objects.values_list("pk", flat=True))
    for case in Case.objects.all():
        event = by_case[case.pk]
        assert event.actor_id == admin_user.pk
        assert event.detail["screening_outcome"] == case.outcome
        assert event.detail["previous"] == ""
    assert {c.outcome for c in Case.objects.all()} == {Outcome.BENIGN, Outcome.MALIGNANT}


def test_auditors_see_model_versions_read_only(client, auditor):
    version = ModelVersionFactory()
    client.force_login(auditor)
    response = client.get(reverse("model-versions"))
    assert response.status_code == 200
    page = response.content.decode()
    assert version.version in page
    assert reverse("model-activate", args=[version.pk]) not in page
    assert client.post(reverse("model-activate", args=[version.pk])).status_code == 403


def test_admins_still_activate_from_the_model_versions_page(client, admin_user):
    version = ModelVersionFactory()
    client.force_login(admin_user)
    page = client.get(reverse("model-versions")).content.decode()
    assert reverse("model-activate", args=[version.pk]) in page
