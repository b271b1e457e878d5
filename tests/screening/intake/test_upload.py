"""Uploads: every bad input gets a clear 4xx naming the file, and nothing is half-stored."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse
from PIL import Image as PILImage

from ml.synthetic import generate_film
from screening.choices import AuditAction, CaseStatus, Laterality, View
from screening.models import AuditEvent, Case, Image, Study
from tests.conftest import requires_postgres
from tests.factories import ImageFactory, png_bytes

URL = "/api/studies/"


def upload(api, *files, **fields):
    data = {"accession_number": "ACC-1", "patient_pseudonym": "P-1", **fields}
    data["files"] = list(files)
    return api.post(URL, data, format="multipart")


def png(name: str = "L_CC.png", seed: int = 1) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(seed=seed), content_type="image/png")


def jpeg(name: str = "R_MLO.jpg") -> SimpleUploadedFile:
    film = generate_film(2, height=50, width=40).to_8bit()
    return SimpleUploadedFile(name, encoded(film, "JPEG"), content_type="image/jpeg")


def encoded(pixels: np.ndarray, image_format: str = "PNG", mode: str | None = None) -> bytes:
    image = PILImage.fromarray(pixels)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, format=image_format)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_cut_before_iend() -> bytes:
    """Every pixel there, the IEND chunk missing: Pillow decodes it without complaint."""
    content = png_bytes(seed=5)
    return content[: content.rindex(b"IEND") - 4]


def png_with_a_broken_chunk_after_the_pixels() -> bytes:
    content = png_bytes(seed=5)
    end = content.rindex(b"IEND") - 4
    return content[:end] + _chunk(b"tEXt", b"Comment\0x", crc=0) + content[end:]


def blank_film_with_label() -> np.ndarray:
    """Black but for a burned-in, anti-aliased label on under 1% of the pixels."""
    pixels = np.zeros((128, 104), np.uint8)
    pixels[4:7, 4:44] = np.linspace(0, 255, 40).astype(np.uint8)
    return pixels


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR (correct CRC) that declares an enormous image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def stored_files(media_root: Path) -> list[Path]:
    return [p for p in Path(media_root).rglob("*") if p.is_file()]


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def assert_nothing_stored(media_root) -> None:
    assert Study.objects.count() == 0
    assert Image.objects.count() == 0
    assert Case.objects.count() == 0
    assert stored_files(media_root) == []


def test_it_stores_a_study_with_laterality_and_view_from_file_names(admin_api, media_root):
    response = upload(admin_api, png("L_CC.png", 1), jpeg("RMLO.jpeg"))
    assert response.status_code == 201, response.json()
    study = Study.objects.get()
    assert study.case is not None
    assert study.case.status == CaseStatus.AWAITING_AI
    images = {(i.laterality, i.view) for i in study.images.all()}
    assert images == {(Laterality.LEFT, View.CC), (Laterality.RIGHT, View.MLO)}
    # Two films and their two previews (screening.imaging.previews), none named as uploaded.
    assert len(stored_files(media_root)) == 4
    assert sum(p.parent.name == "previews" for p in stored_files(media_root)) == 2
    assert all("L_CC" not in str(p) and "RMLO" not in str(p) for p in stored_files(media_root))
    assert [f["accepted"] for f in response.json()["files"]] == [True, True]


def test_it_records_16_bit_depth_and_size(admin_api):
    content = png_bytes(seed=3, size=80, bit16=True)
    response = upload(admin_api, SimpleUploadedFile("a.png", content))
    assert response.status_code == 201
    image = Image.objects.get()
    assert (image.width, image.height, image.bit_depth) == (65, 80, 16)


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"%PDF-1.4 this is not an image", "not_an_image"),
        (b"", "empty"),
        (png_bytes(seed=5)[:200], "corrupt"),
        (b"GIF89a" + b"\x00" * 40, "not_an_image"),
    ],
    ids=["not-an-image", "empty", "truncated-png", "garbage-gif"],
)
def test_it_rejects_a_bad_file_naming_it(admin_api, media_root, content, code):
    response = upload(admin_api, SimpleUploadedFile("scan-7.png", content))
    assert response.status_code == 400
    body = response.json()
    assert "scan-7.png" in body["detail"]
    assert body["files"][0]["code"] == code
    assert_nothing_stored(media_root)


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (encoded(np.full((64, 52), 128, np.uint8)), "blank_image"),
        (encoded(np.full((64, 52), 1000, np.uint16)), "blank_image"),
        (encoded(np.full((64, 52), 128, np.uint8), "JPEG"), "blank_image"),
        (encoded(blank_film_with_label()), "blank_image"),
        (encoded(np.tile(np.arange(52, dtype=np.uint8) % 8 + 60, (64, 1))), "blank_image"),
        (png_cut_before_iend(), "corrupt"),
        (png_with_a_broken_chunk_after_the_pixels(), "corrupt"),
        (encoded(generate_film(3, 64, 52).to_8bit(), mode="P"), "not_grayscale"),
        (encoded(generate_film(3, 64, 52).to_8bit(), mode="1"), "not_grayscale"),
        (encoded(generate_film(3, 64, 52).to_8bit(), "JPEG", mode="CMYK"), "not_grayscale"),
    ],
    ids=[
        "constant-png",
        "constant-16-bit-png",
        "constant-jpeg",
        "black-but-a-burned-in-label",
        "eight-grey-levels",
        "png-cut-before-iend",
        "png-broken-chunk-after-the-pixels",
        "palette-png",
        "bilevel-png",
        "cmyk-jpeg",
    ],
)
def test_it_refuses_an_image_that_is_not_a_whole_grey_film(admin_api, media_root, content, code):
    response = upload(admin_api, png("good.png", 9), SimpleUploadedFile("scan-7.png", content))
    assert response.status_code == 400
    body = response.json()
    assert "scan-7.png" in body["detail"]
    assert [f["code"] for f in body["files"]] == ["not_stored", code]
    assert_nothing_stored(media_root)
    event = AuditEvent.objects.get(action=AuditAction.UPLOAD_REJECTED)
    assert event.detail["rejections"] == [{"position": 1, "code": code, "status": 400}]


@pytest.mark.parametrize("mode", ["LA", "RGB", "RGBA"])
def test_it_accepts_a_film_whose_first_plane_is_its_grey_level(admin_api, mode):
    content = encoded(generate_film(3, 64, 52).to_8bit(), mode=mode)
    response = upload(admin_api, SimpleUploadedFile("L_CC.png", content))
    assert response.status_code == 201, response.json()


def test_it_rejects_a_truncated_jpeg(admin_api, media_root):
    buffer = io.BytesIO()
    PILImage.effect_noise((300, 300), 60).save(buffer, format="JPEG", quality=95)
    response = upload(admin_api, SimpleUploadedFile("cut.jpg", buffer.getvalue()[:3000]))
    assert response.status_code == 400
    assert response.json()["files"][0]["code"] == "corrupt"
    assert_nothing_stored(media_root)


def test_it_rejects_a_decompression_bomb_before_decoding(admin_api, media_root):
    response = upload(admin_api, SimpleUploadedFile("bomb.png", png_declaring(100_000, 100_000)))
    assert response.status_code == 400
    assert response.json()["files"][0]["code"] in {"decompression_bomb", "too_many_pixels"}
    assert_nothing_stored(media_root)


def test_it_refuses_images_above_the_pixel_cap(admin_api, media_root, settings):
    settings.UPLOAD_MAX_PIXELS = 1000
    response = upload(admin_api, png("big.png"))
    assert response.status_code == 400
    assert response.json()["files"][0]["code"] == "too_many_pixels"
    assert_nothing_stored(media_root)


def test_it_answers_413_for_a_file_over_the_size_limit(admin_api, media_root, settings):
    settings.UPLOAD_MAX_FILE_BYTES = 100
    response = upload(admin_api, png("huge.png"))
    assert response.status_code == 413
    assert "huge.png" in response.json()["detail"]
    assert_nothing_stored(media_root)


def test_it_answers_413_for_a_request_over_the_body_limit(admin_api, media_root, settings):
    settings.UPLOAD_MAX_REQUEST_BYTES = 1000
    response = upload(admin_api, png("a.png"), png("b.png", 2))
    assert response.status_code == 413
    assert_nothing_stored(media_root)


def test_it_refuses_more_files_than_allowed(admin_api, media_root, settings):
    settings.UPLOAD_MAX_FILES = 2
    response = upload(admin_api, png("a.png", 1), png("b.png", 2), png("c.png", 3))
    assert response.status_code == 400
    assert "at most 2" in response.json()["detail"]
    assert_nothing_stored(media_root)


def test_it_refuses_a_file_already_stored_as_a_duplicate(admin_api, media_root):
    existing = ImageFactory()
    content = existing.file.open("rb").read()
    response = upload(admin_api, SimpleUploadedFile("again.png", content))
    assert response.status_code == 409
    assert response.json()["files"][0]["code"] == "duplicate"
    assert Image.objects.count() == 1


def test_it_refuses_the_same_file_twice_in_one_upload(admin_api, media_root):
    response = upload(admin_api, png("a.png", 9), png("b.png", 9))
    assert response.status_code == 409
    assert "a.png" in response.json()["files"][1]["message"]
    assert_nothing_stored(media_root)


def test_it_answers_404_for_an_unknown_accession(admin_api, media_root):
    response = upload(admin_api, png(), accession_number="NOPE", new_study=False)
    assert response.status_code == 404
    assert "Unknown accession" in response.json()["detail"]
    assert_nothing_stored(media_root)


def test_it_adds_images_to_an_existing_study(admin_api):
    assert upload(admin_api, png("L_CC.png", 1)).status_code == 201
    response = upload(admin_api, png("R_CC.png", 2), new_study=False)
    assert response.status_code == 201
    assert Study.objects.get().images.count() == 2


def test_it_refuses_a_new_study_with_a_taken_accession(admin_api):
    assert upload(admin_api, png("a.png", 1)).status_code == 201
    response = upload(admin_api, png("b.png", 2))
    assert response.status_code == 409
    assert Image.objects.count() == 1


def test_one_bad_file_refuses_the_whole_upload(admin_api, media_root):
    response = upload(admin_api, png("good.png"), SimpleUploadedFile("bad.png", b"nope"))
    assert response.status_code == 400
    files = response.json()["files"]
    assert [f["code"] for f in files] == ["not_stored", "not_an_image"]
    assert_nothing_stored(media_root)
    rejected = AuditEvent.objects.get(action=AuditAction.UPLOAD_REJECTED)
    assert rejected.detail["rejections"] == [{"position": 1, "code": "not_an_image", "status": 400}]
    assert "bad.png" not in str(rejected.detail)


def test_a_storage_failure_leaves_no_rows_and_no_files(admin_api, media_root, monkeypatch):
    from screening import events

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(events, "study_uploaded", broken)
    with pytest.raises(OSError):
        upload(admin_api, png("a.png", 1), png("b.png", 2))
    assert_nothing_stored(media_root)


def test_the_upload_page_lists_each_file_result(client, admin_user, media_root):
    client.force_login(admin_user)
    data = {
        "target": "new",
        "accession_number": "A-9",
        "patient_pseudonym": "P-9",
        "modality": "MG",
        "files": [png("ok.png"), SimpleUploadedFile("broken.png", b"xx")],
    }
    response = client.post(reverse("upload"), data)
    assert response.status_code == 400
    html = response.content.decode()
    assert "broken.png" in html and "Not a PNG or JPEG image" in html
    assert "Nothing was stored" in html
    assert_nothing_stored(media_root)


def test_names_with_markup_are_shown_escaped(client, admin_user):
    client.force_login(admin_user)
    data = {
        "target": "new",
        "accession_number": "A-1",
        "patient_pseudonym": "P-1",
        "modality": "MG",
        "files": [SimpleUploadedFile("<img src=x onerror=alert(1)>.png", b"xx")],
    }
    html = client.post(reverse("upload"), data).content.decode()
    assert "<img src=x onerror" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html


@pytest.mark.django_db(transaction=True)
def test_the_same_study_uploaded_in_parallel_is_stored_once(admin_user):
    requires_postgres()
    from rest_framework.test import APIClient

    contents = [png_bytes(seed=s) for s in (11, 12, 13, 14)]
    statuses: list[int] = []

    def send() -> None:
        client = APIClient()
        client.force_authenticate(admin_user)
        files = [SimpleUploadedFile(f"{i}.png", c) for i, c in enumerate(contents)]
        statuses.append(upload(client, *files, accession_number="PAR-1").status_code)
        connection.close()

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses).count(201) == 1, statuses
    assert set(statuses) <= {201, 409}
    assert Study.objects.count() == 1
    assert Study.objects.get().images.count() == 4
