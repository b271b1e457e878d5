"""WADO-RS retrieve (PS3.18 10.4) of the stored, de-identified DICOM, read by dicomweb-client."""

from __future__ import annotations

import io

import jpeg_ls
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.core.files.base import ContentFile
from rest_framework.authtoken.models import Token

from screening.choices import AuditAction
from screening.models import AuditEvent, Image
from tests.factories import dicom_case_with_images

pytestmark = pytest.mark.django_db


def client_for(live_server, user) -> DICOMwebClient:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    session.headers["Connection"] = "close"  # no live-server thread left holding the DB
    return DICOMwebClient(url=f"{live_server.url}/dicomweb", session=session)


def stored(image: Image) -> pydicom.Dataset:
    with image.file.open("rb") as handle:
        return pydicom.dcmread(io.BytesIO(handle.read()))


def uids(image: Image) -> tuple[str, str, str]:
    ds = stored(image)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("research_mode")  # a privacy check: the pseudonym, never a name
def test_dicomweb_client_retrieves_the_stored_study(live_server, radiologist):
    case = dicom_case_with_images(images=2)
    study = case.studies.get()
    datasets = client_for(live_server, radiologist).retrieve_study(study.study_instance_uid)
    assert sorted(str(ds.SOPInstanceUID) for ds in datasets) == sorted(
        study.images.values_list("sop_instance_uid", flat=True)
    )
    first = study.images.order_by("pk").first()
    assert first is not None
    got = next(ds for ds in datasets if ds.SOPInstanceUID == first.sop_instance_uid)
    assert np.array_equal(got.pixel_array, stored(first).pixel_array)
    assert str(got.PatientName).startswith("DCM-")  # the pseudonym, never a name


@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_reads_instance_metadata_without_pixels(live_server, auditor):
    image = dicom_case_with_images(images=1).studies.get().images.get()
    study_uid, series_uid, sop_uid = uids(image)
    meta = client_for(live_server, auditor).retrieve_instance_metadata(
        study_uid, series_uid, sop_uid
    )
    ds = pydicom.Dataset.from_json(meta)
    assert ds.Rows == image.height and ds.Columns == image.width
    assert ds.ImageLaterality == image.laterality
    assert "PixelData" not in ds
    assert meta["00020010"]["Value"] == [str(stored(image).file_meta.TransferSyntaxUID)]


@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_retrieves_series_instance_and_frames(live_server, radiologist):
    image = dicom_case_with_images(images=1).studies.get().images.get()
    study_uid, series_uid, sop_uid = uids(image)
    client = client_for(live_server, radiologist)
    assert len(client.retrieve_series(study_uid, series_uid)) == 1
    assert client.retrieve_instance(study_uid, series_uid, sop_uid).SOPInstanceUID == sop_uid
    (frame,) = client.retrieve_instance_frames(study_uid, series_uid, sop_uid, [1])
    pixels = stored(image).pixel_array
    assert np.array_equal(np.frombuffer(frame, "<u2").reshape(pixels.shape), pixels)


def test_study_metadata_lists_every_instance(client, radiologist):
    case = dicom_case_with_images(images=2)
    client.force_login(radiologist)
    answer = client.get(f"/dicomweb/studies/{case.studies.get().study_instance_uid}/metadata")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/dicom+json"
    assert len(answer.json()) == 2


def rle_stored_frame() -> tuple[str, pydicom.Dataset]:
    """A one-film DICOM case whose stored file is RLE Lossless: its frame URL and file."""
    case = dicom_case_with_images(images=1)
    image = case.studies.get().images.get()
    ds = stored(image)
    ds.compress(pydicom.uid.RLELossless, generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    image.file.save("image.dcm", ContentFile(buffer.getvalue()))
    study_uid, series_uid, sop_uid = uids(image)
    return f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/1", ds


def test_a_compressed_frame_is_sent_as_stored_to_a_client_taking_any_syntax(client, radiologist):
    url, ds = rle_stored_frame()
    client.force_login(radiologist)
    as_stored = client.get(
        url, HTTP_ACCEPT="multipart/related; type=application/octet-stream; transfer-syntax=*"
    )
    assert (
        b"Content-Type: image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5" in as_stored.content
    )
    native = client.get(url)  # no syntax asked: decoded, Explicit VR Little Endian
    assert b"transfer-syntax=1.2.840.10008.1.2.1\r\n" in native.content
    assert ds.pixel_array.tobytes() in native.content


def test_retrieving_a_study_is_audited_as_viewing_its_case(client, auditor):
    case = dicom_case_with_images(images=1)
    client.force_login(auditor)
    client.get(f"/dicomweb/studies/{case.studies.get().study_instance_uid}")
    event = AuditEvent.objects.get(action=AuditAction.CASE_OPENED)
    assert (event.actor, event.object_id, event.detail) == (
        auditor,
        str(case.pk),
        {"via": "wado-rs"},
    )


@pytest.mark.parametrize("who", ["admin_user", "roleless"])
def test_roles_that_do_not_view_cases_are_refused(client, request, who):
    case = dicom_case_with_images(images=1)
    client.force_login(request.getfixturevalue(who))
    answer = client.get(f"/dicomweb/studies/{case.studies.get().study_instance_uid}/metadata")
    assert answer.status_code == 403
    assert not AuditEvent.objects.filter(action=AuditAction.CASE_OPENED).exists()


def test_an_anonymous_client_is_refused(client):
    case = dicom_case_with_images(images=1)
    answer = client.get(f"/dicomweb/studies/{case.studies.get().study_instance_uid}")
    assert answer.status_code == 401


def test_an_unknown_study_is_404(client, radiologist):
    client.force_login(radiologist)
    assert client.get("/dicomweb/studies/1.2.3/metadata").status_code == 404


def test_a_frame_past_the_first_is_404(client, radiologist):
    image = dicom_case_with_images(images=1).studies.get().images.get()
    client.force_login(radiologist)
    study_uid, series_uid, sop_uid = uids(image)
    base = f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/"
    assert client.get(base + "2").status_code == 404
    assert client.get(base + "x").status_code == 400


def test_a_client_naming_no_multipart_type_gets_the_bare_frame(client, radiologist):
    # PS3.18 single part: the case viewer asks so, and reads the pixels with no boundary.
    image = dicom_case_with_images(images=1).studies.get().images.get()
    client.force_login(radiologist)
    study_uid, series_uid, sop_uid = uids(image)
    url = f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/1"
    answer = client.get(
        url, HTTP_ACCEPT="application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    )
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    body = b"".join(answer.streaming_content)
    assert body == stored(image).PixelData
    assert int(answer["Content-Length"]) == len(body)
    multipart = client.get(url, HTTP_ACCEPT="multipart/related; type=application/octet-stream")
    assert multipart["Content-Type"].startswith("multipart/related; type=application/octet-stream")


def test_a_compressed_frame_travels_bare_as_stored_or_decoded(client, radiologist):
    url, ds = rle_stored_frame()
    client.force_login(radiologist)
    as_stored = client.get(url, HTTP_ACCEPT="application/octet-stream; transfer-syntax=*")
    assert as_stored["Content-Type"] == "image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5"
    fragments = next(pydicom.encaps.generate_fragmented_frames(ds.PixelData, number_of_frames=1))
    assert as_stored.content == b"".join(fragments)
    decoded = client.get(url, HTTP_ACCEPT="application/octet-stream")
    assert (
        decoded["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    )
    assert decoded.content == ds.pixel_array.tobytes()


def test_the_case_pages_own_retrieve_is_not_a_second_opening(client, radiologist):
    case = dicom_case_with_images(images=1)
    study_uid = case.studies.get().study_instance_uid
    client.force_login(radiologist)
    assert client.get(f"/cases/{case.pk}/").status_code == 200
    client.get(f"/dicomweb/studies/{study_uid}/metadata")  # what the page's viewer asks
    client.get(f"/dicomweb/studies/{study_uid}/metadata")
    opened = AuditEvent.objects.filter(action=AuditAction.CASE_OPENED)
    assert [e.detail for e in opened] == [{"via": "page"}]


def test_each_viewing_over_dicomweb_is_recorded_once_and_a_later_one_again(
    client, radiologist, auditor, monkeypatch
):
    from datetime import timedelta

    from screening import events

    case = dicom_case_with_images(images=1)
    study_uid = case.studies.get().study_instance_uid
    for user in (radiologist, auditor):  # one viewing each: another's event is no excuse
        client.force_login(user)
        client.get(f"/dicomweb/studies/{study_uid}/metadata")
        client.get(f"/dicomweb/studies/{study_uid}", HTTP_ACCEPT="multipart/related")
    opened = AuditEvent.objects.filter(action=AuditAction.CASE_OPENED).order_by("pk")
    assert [(e.actor, e.detail["via"]) for e in opened] == [
        (radiologist, "wado-rs"),
        (auditor, "wado-rs"),
    ]
    monkeypatch.setattr(events, "SAME_VIEWING", timedelta(0))  # the viewing is long past
    client.get(f"/dicomweb/studies/{study_uid}/metadata")
    assert AuditEvent.objects.filter(action=AuditAction.CASE_OPENED, actor=auditor).count() == 2


def frame_url(image: Image) -> str:
    study_uid, series_uid, sop_uid = uids(image)
    return f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/1"


def test_a_film_stored_native_goes_as_its_jpeg_ls_lossless_frame_to_a_client_taking_any(
    client, radiologist, settings
):
    settings.DICOMWEB_LOSSLESS_FRAMES = True
    image = dicom_case_with_images(images=1).studies.get().images.get()
    client.force_login(radiologist)
    answer = client.get(frame_url(image), HTTP_ACCEPT="application/octet-stream; transfer-syntax=*")
    assert answer["Content-Type"] == "image/jls; transfer-syntax=1.2.840.10008.1.2.4.80"
    decoded = jpeg_ls.decode(np.frombuffer(answer.content, dtype=np.uint8))
    assert np.array_equal(decoded, stored(image).pixel_array)
    assert len(answer.content) < len(stored(image).PixelData)
    multipart = client.get(
        frame_url(image),
        HTTP_ACCEPT="multipart/related; type=application/octet-stream; transfer-syntax=*",
    )
    assert multipart["Content-Type"].startswith("multipart/related; type=image/jls; boundary=")
    assert answer.content in multipart.content


def test_a_client_that_names_no_syntax_still_gets_the_native_frame(client, radiologist, settings):
    settings.DICOMWEB_LOSSLESS_FRAMES = True
    image = dicom_case_with_images(images=1).studies.get().images.get()
    client.force_login(radiologist)
    answer = client.get(frame_url(image), HTTP_ACCEPT="application/octet-stream")
    assert answer["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    assert b"".join(answer.streaming_content) == stored(image).PixelData


def test_a_site_that_sends_native_frames_sends_them_to_a_client_taking_any(
    client, radiologist, settings
):
    settings.DICOMWEB_LOSSLESS_FRAMES = False  # the default
    image = dicom_case_with_images(images=1).studies.get().images.get()
    client.force_login(radiologist)
    answer = client.get(frame_url(image), HTTP_ACCEPT="application/octet-stream; transfer-syntax=*")
    assert answer["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    assert b"".join(answer.streaming_content) == stored(image).PixelData
