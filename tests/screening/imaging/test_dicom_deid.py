"""De-identification on ingest: no identifying attribute of the original survives anywhere,
at any depth of the file (inside sequence items too)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage
from pydicom.uid import generate_uid

from screening.imaging.dicom import KEPT, KEPT_IN_ITEMS
from screening.models import AuditEvent, Image, Patient, Study
from tests.conftest import SHARED
from tests.dicom_files import (
    GE_VENDOR_FILES,
    IDENTITY,
    NESTED_IDENTITY,
    dicom_bytes,
    identifying_strings,
    with_film_pixels,
)

URL = "/api/studies/"
# Privacy tests: de-identification is research mode's, pinned whatever the run's mode.
pytestmark = pytest.mark.usefixtures("research_mode")

# PS3.15 Annex E Basic Profile attributes a mammogram header may carry (action D, Z, X or
# U): none may survive with its original value; UIDs must be remapped.
ANNEX_E_REMOVED = [
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientAge",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientNames",
    "OtherPatientIDsSequence",
    "PatientMotherBirthName",
    "EthnicGroup",
    "AdditionalPatientHistory",
    "PatientComments",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "NameOfPhysiciansReadingStudy",
    "StationName",
    "DeviceSerialNumber",
    "StudyID",
    "StudyDescription",
    "SeriesDescription",
    "ImageComments",
    "RequestingPhysician",
    "PerformedProcedureStepID",
    "RequestAttributesSequence",
    "ContentCreatorName",
    "AccessionNumber",
]
UIDS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"]
HEADERS = SHARED / "data" / "dicom-mg-headers"
# What a coded entry is written with (from the dictionary, never copied).
CODE_ITEM = {"CodeValue", "CodingSchemeDesignator", "CodeMeaning", "ViewModifierCodeSequence"}
FREE_TEXT_WORDS = ("Explanation", "Comment", "Description")


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def originals(count: int = 4) -> list[bytes]:
    study = generate_uid()
    views = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]
    return [
        dicom_bytes(seed=i, study_uid=study, laterality=side, view=view, compressed=i == 3)
        for i, (side, view) in enumerate(views[:count])
    ]


def upload(api, contents: list[bytes]):
    files = [SimpleUploadedFile(f"IM{i}.dcm", c) for i, c in enumerate(contents)]
    return api.post(URL, {"files": files}, format="multipart")


def nested(ds: Any, depth: int = 0) -> Iterator[tuple[int, Any]]:
    """Every element with its depth: 0 at the top level, 1 inside an item, and so on."""
    for element in ds:
        yield depth, element
        if element.VR == "SQ":
            for item in element.value:
                yield from nested(item, depth + 1)


def assert_nothing_outside_the_allow_lists(ds: Any) -> None:
    for depth, element in nested(ds):
        assert not element.tag.is_private, (depth, element.tag)
        assert not any(word in element.keyword for word in FREE_TEXT_WORDS), element.keyword
        if depth:
            assert element.keyword in KEPT_IN_ITEMS | CODE_ITEM, element.keyword


def original_values(contents: list[bytes]) -> set[str]:
    values = set(identifying_strings())
    for content in contents:
        ds = pydicom.dcmread(io.BytesIO(content))
        values.update(str(ds[k].value) for k in UIDS if k in ds)
    return values


def stored_files(media_root: str) -> tuple[list[Path], list[Path]]:
    """The stored DICOM files and the case page's previews made from them (every file)."""
    files = [p for p in Path(media_root).rglob("*") if p.is_file()]
    previews = [p for p in files if p.parent.name == "previews"]
    return [p for p in files if p not in previews], previews


def assert_previews_carry_no_text(previews: list[Path], secrets: set[str], films: int) -> None:
    """A preview is pixels only: a JPEG with no metadata, none of the originals' values."""
    assert len(previews) == films
    for path in previews:
        raw = path.read_bytes()
        assert not any(value.encode() in raw for value in secrets), path.name
        with PILImage.open(path) as picture:
            assert picture.format == "JPEG"
            assert not set(picture.info) & {"exif", "comment", "xmp", "icc_profile"}, picture.info


def test_no_identifying_attribute_survives_in_any_stored_file(admin_api, media_root):
    contents = originals()
    response = upload(admin_api, contents)
    assert response.status_code == 201, response.json()
    stored, previews = stored_files(media_root)
    assert len(stored) == 4
    secrets = original_values(contents) | {"ACC-DCM-1"}  # the accession stays in the database only
    assert_previews_carry_no_text(previews, secrets, films=4)
    pseudonym = Patient.objects.get().pseudonym
    for path in stored:
        raw = path.read_bytes()
        for value in secrets:
            assert value.encode() not in raw, (path.name, value)
        ds = pydicom.dcmread(path)
        for keyword in ANNEX_E_REMOVED:
            if keyword == "PatientName":
                assert ds.PatientName.family_name == pseudonym
            elif keyword == "PatientID":
                assert ds.PatientID == pseudonym
            else:
                assert not ds.get(keyword), (path.name, keyword)
        assert not any(element.tag.is_private for element in ds.iterall())
        assert_nothing_outside_the_allow_lists(ds)
        assert {element.keyword for element in ds} <= KEPT | set(ANNEX_E_REMOVED) | set(UIDS) | {
            "PatientIdentityRemoved",
            "DeidentificationMethod",
            "DeidentificationMethodCodeSequence",
            "LongitudinalTemporalInformationModified",
            "PatientSex",
        }
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.StudyDate == "20240315"  # the Full Dates option keeps dates
        assert all(str(ds[k].value).startswith("2.25.") for k in UIDS)


def test_identifiers_inside_sequence_items_and_explanations_do_not_survive(admin_api, media_root):
    """A name and a private tag in a View Code Sequence item, a code meaning typed over,
    window, LUT and rescale text: the items are rebuilt, the free text is dropped."""
    study = generate_uid()
    contents = [
        dicom_bytes(seed=1, voi="window", study_uid=study),
        dicom_bytes(seed=2, voi="lut", view="MLO", study_uid=study),
    ]
    originals_ = [pydicom.dcmread(io.BytesIO(c)) for c in contents]
    assert originals_[0].ViewCodeSequence[0].PatientName == NESTED_IDENTITY["item_patient_name"]
    assert originals_[0].WindowCenterWidthExplanation == NESTED_IDENTITY["window_explanation"]
    assert upload(admin_api, contents).status_code == 201
    stored, previews = stored_files(media_root)
    assert_previews_carry_no_text(previews, set(NESTED_IDENTITY.values()), films=2)
    for path in stored:
        raw = path.read_bytes()
        for value in NESTED_IDENTITY.values():
            assert value.encode() not in raw, (path.name, value)
        ds = pydicom.dcmread(path)
        assert_nothing_outside_the_allow_lists(ds)
        assert "RescaleType" not in ds  # not one of the defined terms
        view = ds.ViewCodeSequence[0]
        assert view.CodingSchemeDesignator == "SCT"
        assert view.CodeValue in {"399162004", "399368009"}  # CC, MLO
        assert view.ViewModifierCodeSequence[0].CodeValue == "399055006"  # spot compression
        assert "Janet" not in view.CodeMeaning + view.ViewModifierCodeSequence[0].CodeMeaning
    lut = pydicom.dcmread(Image.objects.get(view="MLO").file.path).VOILUTSequence[0]
    assert "LUTData" in lut and "LUTExplanation" not in lut


def test_uids_are_remapped_the_same_way_every_time(admin_api):
    contents = originals(2)
    upload(admin_api, contents[:1])
    upload(admin_api, contents[1:])
    study = Study.objects.get()
    files = [pydicom.dcmread(i.file.path) for i in study.images.all()]
    assert {f.StudyInstanceUID for f in files} == {study.study_instance_uid}
    assert {f.SOPInstanceUID for f in files} == set(
        study.images.values_list("sop_instance_uid", flat=True)
    )
    originals_study = pydicom.dcmread(io.BytesIO(contents[0])).StudyInstanceUID
    assert study.study_instance_uid != originals_study


def test_no_identifier_reaches_the_database_the_audit_trail_or_the_logs(admin_api, caplog):
    contents = originals(2)
    bad = dicom_bytes(seed=9, modality="CT")
    with caplog.at_level(logging.DEBUG):
        upload(admin_api, [*contents, bad])
        upload(admin_api, contents)
    ds = pydicom.dcmread(io.BytesIO(contents[0]))
    ds.PatientSex = IDENTITY["PatientName"]  # not a CS: pydicom would warn, quoting it
    ds.SOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with caplog.at_level(logging.DEBUG):
        upload(admin_api, [buffer.getvalue()])
    secrets = original_values(contents) - {"ACC-DCM-1"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Stored images" in logged  # the log was captured
    audit = str(list(AuditEvent.objects.values()))
    rows = str(list(Study.objects.values())) + str(list(Image.objects.values()))
    rows += str(list(Patient.objects.values()))
    for value in secrets:
        assert value not in logged and value not in audit and value not in rows, value
    assert Patient.objects.get().birth_year == int(IDENTITY["PatientBirthDate"][:4])


def test_the_refusal_message_never_quotes_a_header_value(admin_api):
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes()))
    ds.Modality = "Doe^Jane"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    response = upload(admin_api, [buffer.getvalue()])
    assert response.status_code == 400
    assert "only mammography" in response.json()["detail"]
    assert "Doe" not in response.content.decode()
    for value in identifying_strings():
        assert value not in response.content.decode()


@pytest.mark.parametrize("name", GE_VENDOR_FILES)
def test_real_vendor_files_are_stored_without_their_identifiers(admin_api, name):
    path = HEADERS / name
    if not path.exists():
        pytest.skip(f"{path} is not available")
    original = pydicom.dcmread(path)
    response = upload(admin_api, [with_film_pixels(path.read_bytes())])  # a film, not the stub
    assert response.status_code == 201, response.json()
    image = Image.objects.get()
    raw = Path(image.file.path).read_bytes()
    stored = pydicom.dcmread(image.file.path)
    for keyword in ANNEX_E_REMOVED + UIDS:
        value = str(original.get(keyword) or "")
        if len(value) > 3:
            if value != original.StudyDate:  # these test files were "born" on the study day
                assert value.encode() not in raw, keyword
            assert str(stored.get(keyword) or "") != value, keyword
    assert not any(element.tag.is_private for element in stored.iterall())
    assert_nothing_outside_the_allow_lists(stored)
    assert stored.Manufacturer == original.Manufacturer
    # GE's SNOMED RT code (scheme SNM3) is written as its SNOMED CT equivalent.
    code = stored.ViewCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("399162004", "SCT")
    assert code.CodeMeaning == original.ViewCodeSequence[0].CodeMeaning  # a dictionary synonym
