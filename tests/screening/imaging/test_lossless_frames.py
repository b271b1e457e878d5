"""A film's JPEG-LS lossless frame (issue 24): exact to the bit, made once, never for a film
it would not give back unchanged."""

from __future__ import annotations

import io

import jpeg_ls
import numpy as np
import pydicom
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless, RLELossless

from screening.imaging import lossless
from tests.dicom_files import dicom_bytes
from tests.factories import dicom_case_with_images, present

pytestmark = pytest.mark.django_db


def stored_values(content: bytes) -> np.ndarray:
    return pydicom.dcmread(io.BytesIO(content)).pixel_array


@pytest.mark.parametrize("bits", [12, 16])
def test_the_jpeg_ls_frame_decodes_to_every_stored_pixel(bits: int) -> None:
    content = dicom_bytes(seed=7, size=512, bits=bits)
    frame = lossless.encode(content)
    assert frame is not None and frame[:4] == b"\xff\xd8\xff\xf7"  # SOI, then JPEG-LS SOF55
    decoded = np.asarray(jpeg_ls.decode(np.frombuffer(frame, dtype=np.uint8)))
    assert np.array_equal(decoded, stored_values(content))
    assert len(frame) < len(pydicom.dcmread(io.BytesIO(content)).PixelData)


def test_the_frame_decodes_exactly_through_pydicom_as_a_jpeg_ls_file_too() -> None:
    content = dicom_bytes(seed=8, size=256, bits=16)
    ds = pydicom.dcmread(io.BytesIO(content))
    original = ds.pixel_array.copy()
    ds.PixelData = encapsulate([present(lossless.encode(content))])
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    assert np.array_equal(ds.pixel_array, original)


def test_a_round_trip_that_changed_one_pixel_is_refused() -> None:
    content = dicom_bytes(seed=9, size=256, bits=12)
    frame = lossless.encode(content)
    assert frame is not None
    altered = stored_values(content).copy()
    altered[100, 100] ^= 1
    assert lossless.decodes_to(frame, stored_values(content))
    assert not lossless.decodes_to(frame, altered)


def test_a_film_stored_compressed_gets_none() -> None:
    assert lossless.encode(dicom_bytes(seed=10, size=128, compressed=True)) is None


def test_a_film_with_values_above_its_bits_stored_gets_none() -> None:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(seed=11, size=128, bits=12)))
    values = ds.pixel_array.copy()
    values[0, 0] = 1 << 12  # a bit above Bits Stored, which a viewer may or may not mask
    ds.PixelData = values.astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert lossless.encode(buffer.getvalue()) is None


def test_the_frame_is_made_once_and_kept_under_the_films_digest() -> None:
    image = dicom_case_with_images(images=1).studies.get().images.get()
    made = lossless.compressed_frame(image)
    assert made is not None
    name = f"frames/{image.sha256}.jls"
    assert default_storage.exists(name)
    with default_storage.open(name, "rb") as handle:
        assert handle.read() == made
    with image.file.open("rb") as handle:  # the kept one is served, not made again
        assert lossless.compressed_frame(image) == lossless.encode(handle.read())


def test_a_film_that_gets_none_is_remembered_and_not_tried_again(monkeypatch) -> None:
    image = dicom_case_with_images(images=1).studies.get().images.get()
    with image.file.open("rb") as handle:
        ds = pydicom.dcmread(io.BytesIO(handle.read()))
    ds.compress(RLELossless, generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    image.file.save("image.dcm", ContentFile(buffer.getvalue()))
    assert lossless.compressed_frame(image) is None
    tried: list[bytes] = []
    monkeypatch.setattr(lossless, "encode", lambda content: tried.append(content))
    assert lossless.compressed_frame(image) is None and tried == []


def upload_two_films(admin_user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from screening.intake import actions

    study_uid = pydicom.uid.generate_uid()
    files = [
        SimpleUploadedFile(
            f"{side}.dcm",
            dicom_bytes(seed=20 + i, size=128, laterality=side, study_uid=study_uid),
        )
        for i, side in enumerate("RL")
    ]
    spec = actions.StudySpec(accession_number="", patient_pseudonym="")
    study = actions.upload_study(admin_user, spec, files).study
    assert study.images.count() == 2
    return study


def test_an_upload_makes_the_frames_of_its_films_where_the_site_sends_them(
    admin_user, settings
) -> None:
    settings.DICOMWEB_LOSSLESS_FRAMES = True
    for image in upload_two_films(admin_user).images.all():
        assert default_storage.exists(f"frames/{image.sha256}.jls")


def test_an_upload_on_a_site_that_sends_native_frames_makes_none(admin_user, settings) -> None:
    settings.DICOMWEB_LOSSLESS_FRAMES = False
    for image in upload_two_films(admin_user).images.all():
        assert not default_storage.exists(f"frames/{image.sha256}.jls")
