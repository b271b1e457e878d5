"""Identity modes (settings.IDENTITY_MODE): clinical keeps who the woman is and the
hospital's UIDs, and shows her readers name, ID and age; research de-identifies; a study
keeps the mode it was ingested in, so a switch never re-identifies it."""

from __future__ import annotations

import io
import logging

import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.uid import generate_uid

from screening.choices import IdentityMode, Role
from screening.intake.actions import StudySpec, upload_study
from screening.interop.read_report import report_study_uid
from screening.models import AuditEvent, Image, Patient, Study
from tests.conftest import login
from tests.dicom_files import IDENTITY, NESTED_IDENTITY, PRIVATE_VALUE, dicom_bytes
from tests.factories import UserFactory

URL = "/api/studies/"
NAME_SHOWN = "DOE, Jane Quinn"  # PatientName "Doe^Jane^Quinn" as a reader reads it
# Attributes the clinical file keeps besides the de-identified allow-list.
KEPT_IDENTITY = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientAge")
# What clinical mode still drops: nothing beyond who she is and the study's own UIDs.
STILL_DROPPED = (
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientNames",
    "InstitutionName",
    "OperatorsName",
    "StationName",
    "StudyDescription",
    "ImageComments",
)
UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


@pytest.fixture
def clinical(settings):
    settings.IDENTITY_MODE = IdentityMode.CLINICAL


def films(accession: str = "ACC-ID-1", **kwargs: object) -> list[bytes]:
    study = generate_uid()
    views = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]
    return [
        dicom_bytes(seed=i, study_uid=study, laterality=side, view=view, accession=accession)
        for i, (side, view) in enumerate(views)
    ]


def upload(api, contents: list[bytes]):
    files = [SimpleUploadedFile(f"IM{i}.dcm", c) for i, c in enumerate(contents)]
    response = api.post(URL, {"files": files}, format="multipart")
    assert response.status_code == 201, response.json()
    return Study.objects.get(pk=response.json()["study_id"])


def header(content: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(content))


def stored(image: Image) -> pydicom.Dataset:
    with image.file.open("rb") as handle:
        return header(handle.read())


def test_clinical_mode_keeps_the_womans_identifiers_and_the_original_uids(
    admin_api, clinical
) -> None:
    originals = films()
    study = upload(admin_api, originals)
    sent = {str(header(c).SOPInstanceUID): header(c) for c in originals}
    assert study.identity_mode == IdentityMode.CLINICAL
    assert study.study_instance_uid == str(header(originals[0]).StudyInstanceUID)
    assert (study.patient_name, study.patient_id, study.patient_age) == (
        NAME_SHOWN,
        IDENTITY["PatientID"],
        59,
    )
    assert study.accession_number == "ACC-ID-1"
    assert set(study.images.values_list("sop_instance_uid", flat=True)) == set(sent)
    for image in study.images.all():
        ds = stored(image)
        original = sent[image.sop_instance_uid]
        for keyword in (*KEPT_IDENTITY, *UIDS):
            assert str(ds[keyword].value) == str(original[keyword].value), keyword
        # Still rebuilt from the allow-list: no private tag, no free text, no address.
        raw = image.file.open("rb").read()
        for keyword in STILL_DROPPED:
            assert keyword not in ds, keyword
        assert PRIVATE_VALUE.encode() not in raw
        assert NESTED_IDENTITY["window_explanation"].encode() not in raw
        assert "PatientIdentityRemoved" not in ds
    # The patient row stays pseudonymous: who she is lives on the clinical study only.
    patient = Patient.objects.get()
    assert patient.pseudonym.startswith("DCM-") and IDENTITY["PatientID"] not in patient.pseudonym
    assert report_study_uid(study) == str(header(originals[0]).StudyInstanceUID)


def test_research_mode_changes_nothing(admin_api, research_mode) -> None:
    originals = films()
    study = upload(admin_api, originals)
    assert study.identity_mode == IdentityMode.RESEARCH
    assert (study.patient_name, study.patient_id, study.patient_age) == ("", "", None)
    assert study.study_instance_uid != str(header(originals[0]).StudyInstanceUID)
    assert report_study_uid(study) == study.study_instance_uid
    for image in study.images.all():
        ds = stored(image)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.PatientID == study.case.patient.pseudonym
        assert not ds.PatientBirthDate and "PatientAge" not in ds


def test_the_age_comes_from_the_birth_date_when_the_header_gives_none(admin_api, clinical) -> None:
    contents = []
    for content in films():
        ds = header(content)
        del ds.PatientAge
        ds.PatientBirthDate, ds.StudyDate = "19650316", "20240315"  # a day short of 59
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        contents.append(buffer.getvalue())
    assert upload(admin_api, contents).patient_age == 58


@pytest.mark.parametrize("role", [Role.RADIOLOGIST, Role.ARBITRATOR])
def test_readers_see_name_id_and_age_of_a_clinical_study(admin_api, clinical, client, role) -> None:
    study = upload(admin_api, films())
    reader = UserFactory(role=role, username=f"reader-{role}")
    page = login(client, reader).get(f"/cases/{study.case_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert NAME_SHOWN in html and IDENTITY["PatientID"] in html
    assert 'data-identity="age">59<' in html
    assert "different women" not in html


def test_an_auditor_is_not_shown_who_the_woman_is(admin_api, clinical, client, auditor) -> None:
    study = upload(admin_api, films())
    page = login(client, auditor).get(f"/cases/{study.case_id}/")
    assert page.status_code == 200
    assert NAME_SHOWN not in page.content.decode()
    assert "data-identity" not in page.content.decode()


def test_switching_to_clinical_never_reidentifies_a_research_study(
    admin_api, client, radiologist, settings
) -> None:
    settings.IDENTITY_MODE = IdentityMode.RESEARCH
    before = upload(admin_api, films("ACC-ID-R"))
    remapped = before.study_instance_uid
    settings.IDENTITY_MODE = IdentityMode.CLINICAL
    after = upload(admin_api, films("ACC-ID-C"))  # a later study, stored in clinical mode
    before.refresh_from_db()
    assert before.identity_mode == IdentityMode.RESEARCH
    assert report_study_uid(before) == remapped
    research_page = login(client, radiologist).get(f"/cases/{before.case_id}/").content.decode()
    assert NAME_SHOWN not in research_page and IDENTITY["PatientID"] not in research_page
    assert "data-identity" not in research_page
    clinical_page = client.get(f"/cases/{after.case_id}/").content.decode()
    assert NAME_SHOWN in clinical_page


def test_a_case_whose_films_name_two_women_warns_the_reader(
    admin_api, clinical, client, radiologist
) -> None:
    study = upload(admin_api, films())
    other = films("ACC-ID-2")
    ds = header(other[0])
    ds.PatientName, ds.PatientID = "Roe^Joan", "HOSP-0099-1111"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    second = upload(admin_api, [buffer.getvalue()])
    second.case = study.case
    second.save()  # both studies on one case (as a merge of records would leave them)
    html = login(client, radiologist).get(f"/cases/{study.case_id}/").content.decode()
    assert NAME_SHOWN in html and "ROE, Joan" in html
    assert "different women" in html


def test_who_she_is_never_reaches_a_url_a_log_or_the_audit_trail(
    admin_api, clinical, client, radiologist, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    study = upload(admin_api, films())
    page = login(client, radiologist).get(f"/cases/{study.case_id}/")
    html = page.content.decode()
    hrefs = [part.split('"')[0] for part in html.split('href="')[1:]]
    hrefs += [part.split('"')[0] for part in html.split('src="')[1:]]
    secrets = [IDENTITY["PatientID"], "Doe", "DOE", "Jane", IDENTITY["PatientBirthDate"]]
    for secret in secrets:
        assert secret not in caplog.text, secret
        assert not any(secret in href for href in hrefs), secret
        for event in AuditEvent.objects.all():
            assert secret not in str(event.detail), secret


def test_a_stow_resend_in_clinical_mode_is_answered_as_stored(
    admin_api, admin_user, clinical
) -> None:
    """The same original rebuilt the same way: its bytes and UID match the stored copy."""
    originals = films()
    study = upload(admin_api, originals)
    files = [SimpleUploadedFile(f"IM{i}.dcm", c) for i, c in enumerate(originals)]
    spec = StudySpec(accession_number="", dicom_only=True, resend_is_stored=True)
    answer = upload_study(admin_user, spec, files)
    assert {r.code for r in answer.results} == {"already_stored"}
    assert answer.study == study and Study.objects.count() == Image.objects.count() // 4 == 1
