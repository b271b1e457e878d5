"""The blank-film rule (``films.refuse_blank``): real films always pass, blanks never do."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFile

from ml.synthetic import generate_film
from screening.imaging import dicom
from screening.imaging.films import FileRejected, refuse_blank
from screening.imaging.pictures import inspect_image
from tests.conftest import SHARED
from tests.dicom_files import dicom_bytes

MINI_MIAS = SHARED / "data" / "mini-mias" / "images"


def inspect(content: bytes, name: str = "film.png"):
    return inspect_image(name, len(content), lambda: content)


@pytest.mark.slow  # decodes every shared mini-MIAS film
def test_every_mini_mias_film_is_accepted():
    """The films the model learnt from: decoded and checked exactly as an upload is."""
    paths = sorted(MINI_MIAS.glob("*.png"))
    if not paths:
        pytest.skip(f"{MINI_MIAS} is not available (the mini-MIAS films)")
    for path in paths:
        assert inspect(path.read_bytes(), path.name).width == 1024, path.name


@pytest.mark.parametrize("size", [32, 64, 256, 1024])
def test_synthetic_films_of_any_size_and_view_are_accepted(size):
    for seed in range(12 if size < 1024 else 2):
        for laterality, view in (("L", "CC"), ("R", "MLO")):
            masses = seed % 2 if size >= 64 else 0  # a mass needs a radius of a pixel or more
            film = generate_film(seed, size, size * 13 // 16, laterality, view, masses=masses)
            refuse_blank(film.to_8bit())  # raises if refused


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("voi", ["window", "lut", None])
def test_synthetic_dicom_films_are_accepted_through_their_rendition(db, photometric, voi):
    content = dicom_bytes(seed=3, size=64, photometric=photometric, voi=voi)
    assert dicom.inspect_dicom(content).width == 52


@pytest.mark.parametrize(
    ("pixels", "words"),
    [
        (np.zeros((64, 52), np.uint8), "every pixel shows the same grey level"),
        (np.full((64, 52), 255, np.uint8), "every pixel shows the same grey level"),
        (np.tile(np.array([0, 255], np.uint8), (64, 26)), "only 2 grey levels"),
        (np.tile(np.arange(52, dtype=np.uint8) % 15 + 100, (64, 1)), "only 15 grey levels"),
        (np.tile(np.arange(52, dtype=np.uint8) % 16 + 100, (64, 1)), "within 15 grey levels"),
    ],
    ids=["black", "white", "two-levels", "fifteen-levels", "narrow-spread"],
)
def test_a_rendition_with_nothing_on_it_is_refused_with_the_reason(pixels, words):
    pixels = pixels.copy()
    if "within" in words:
        pixels[0, 0] = 0  # one dark and one bright pixel: percentiles, not min and max
        pixels[0, 1] = 255
    with pytest.raises(FileRejected) as refusal:
        refuse_blank(pixels)
    assert refusal.value.code == "blank_image"
    assert words in refusal.value.message


def test_the_narrowest_film_allowed_is_accepted():
    """17 levels, 1st to 99th percentile 16 apart: exactly at the line."""
    refuse_blank(np.tile(np.arange(52, dtype=np.uint8) % 17 + 100, (64, 1)))


def test_pillow_never_loads_truncated_images():
    """The app and its ML package leave Pillow's global truncated-image switch off."""
    import ml.data  # noqa: F401
    import ml.gradcam  # noqa: F401
    import ml.predictor  # noqa: F401
    import screening.ai.inference  # noqa: F401

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_an_upload_fails_loudly_if_truncated_images_are_allowed(monkeypatch):
    """Someone switching it on would make every cut JPEG look whole: not silently."""
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    buffer = io.BytesIO()
    PILImage.fromarray(generate_film(1, 64, 52).to_8bit()).save(buffer, format="JPEG")
    with pytest.raises(ImproperlyConfigured):
        inspect(buffer.getvalue(), "a.jpg")
