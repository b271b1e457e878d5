"""A film's preview (issue 16): the small picture the case page paints at once, hung as
the viewer hangs the film, made at upload and kept."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from screening.imaging import previews
from screening.imaging.dicom import inspect_dicom
from screening.imaging.pictures import display_pixels
from screening.models import Image
from tests.dicom_files import dicom_bytes
from tests.factories import StudyFactory, stored_dicom_image

pytestmark = pytest.mark.django_db


def film(side: str, size: int = 128, orientation: list[str] | None = None) -> Image:
    content = dicom_bytes(seed=5, size=size, laterality=side)
    if orientation is not None:
        ds = pydicom.dcmread(io.BytesIO(content))
        ds.PatientOrientation = orientation
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        content = buffer.getvalue()
    return stored_dicom_image(StudyFactory(), inspect_dicom(content))


def picture(content: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(content)) as img:
        assert img.format == "JPEG"
        return np.asarray(img.convert("L")).astype(np.float64)


def inner_edge_brighter(pixels: np.ndarray, side: str) -> bool:
    band = pixels.shape[1] // 10
    left, right = pixels[:, :band].mean(), pixels[:, -band:].mean()
    return right > left if side == "R" else left > right


def test_both_sides_hang_with_the_chest_wall_in_the_middle(client, radiologist, media_root):
    # The same stored pixels as a right and as a left film: one of the two must be turned.
    client.force_login(radiologist)
    for side in ("R", "L"):
        answer = client.get(f"/images/{film(side).pk}/preview/")
        assert answer.status_code == 200
        assert answer["Content-Type"] == "image/jpeg"
        assert answer["Cache-Control"] == "private, no-store"
        assert inner_edge_brighter(picture(answer.content), side), side


def test_the_header_orientation_decides_over_the_tissue(media_root):
    # PatientOrientation row "A": columns run forwards, so the chest wall is the left edge
    # and a left film hangs as stored; "P": the wall is on the right, so it is turned.
    forwards, backwards = film("L", orientation=["A", "F"]), film("L", orientation=["P", "F"])
    with forwards.file.open("rb") as handle:
        as_stored = display_pixels(handle.read()).astype(np.float64)
    assert np.abs(picture(previews.make(forwards)) - as_stored).mean() < 2
    assert np.abs(picture(previews.make(backwards)) - as_stored[:, ::-1]).mean() < 2
    assert np.abs(as_stored - as_stored[:, ::-1]).mean() > 5  # the turn is visible


def test_a_large_film_is_scaled_to_the_preview_height(media_root):
    pixels = picture(previews.make(film("R", size=2048)))
    assert pixels.shape == (previews.HEIGHT, round(2048 * 13 // 16 * previews.HEIGHT / 2048))


def test_the_preview_is_kept_and_served_from_what_is_kept(client, radiologist, media_root):
    image = film("R")
    client.force_login(radiologist)
    first = client.get(f"/images/{image.pk}/preview/").content
    assert default_storage.exists(previews.name_of(image))
    default_storage.delete(previews.name_of(image))
    default_storage.save(previews.name_of(image), ContentFile(b"kept"))
    assert client.get(f"/images/{image.pk}/preview/").content == b"kept"
    assert first != b"kept"


def test_an_upload_makes_its_films_previews(api, admin_user, media_root):
    api.force_authenticate(admin_user)
    upload = SimpleUploadedFile("R_CC.dcm", dicom_bytes(seed=3, laterality="R"))
    assert api.post("/api/studies/", {"files": [upload]}, format="multipart").status_code == 201
    assert default_storage.exists(previews.name_of(Image.objects.get()))


@pytest.mark.parametrize("who", ["admin_user", "roleless"])
def test_only_those_who_view_cases_get_a_preview(client, request, who, media_root):
    image = film("R")
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/images/{image.pk}/preview/").status_code == 403
    assert not default_storage.exists(previews.name_of(image))
