"""Compressed pixel data is decoded strictly at upload (issue 22, finding 2).

An outside probe stored and scored a DICOM whose JPEG baseline stream was cut to 90, 50 and
20 % (the missing part decoded as flat grey), 15 of 22 bit-flipped bare JPEGs, a baseline
stream labelled JPEG Lossless, and a file whose File Meta called it a report while the
dataset called it a mammogram. Each corruption is built here and must be refused with the
reason: 400, no row, no stored file, no AI job queued.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage
from pydicom.uid import (
    JPEG2000,
    ComprehensiveSRStorage,
    DeflatedExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from rest_framework.test import APIClient

from ml.synthetic import generate_film
from screening.choices import AuditAction
from screening.imaging import dicom
from screening.imaging.films import FileRejected
from screening.imaging.pictures import inspect_image
from screening.models import AIResult, AuditEvent, Case, Image, Study
from tests.dicom_files import (
    compressed_dicom,
    cut,
    dicom_bytes,
    flip_bit,
    jpeg_baseline_dicom,
    jpeg_lossless_dicom,
    pixel_stream,
    with_stream,
)
from tests.factories import ModelVersionFactory

URL = "/api/studies/"
FRACTIONS = (0.9, 0.5, 0.2)


def upload(api, *files, **fields):
    return api.post(URL, {**fields, "files": list(files)}, format="multipart")


@pytest.fixture
def admin_api(api, admin_user):
    ModelVersionFactory(is_active=True)  # so an accepted film would be queued for scoring
    api.force_authenticate(admin_user)
    return api


def refused(
    api: APIClient,
    media_root: Path,
    name: str,
    content: bytes,
    callbacks: Callable[[], AbstractContextManager[list[Callable[[], Any]]]],
) -> dict:
    """Upload one file that must be refused: 400, nothing stored, nothing queued."""
    with callbacks() as queued:
        response = upload(
            api, SimpleUploadedFile(name, content), accession_number="A-1", patient_pseudonym="P"
        )
    assert response.status_code == 400, response.json()
    assert name in response.json()["detail"]
    assert (Study.objects.count(), Image.objects.count(), Case.objects.count()) == (0, 0, 0)
    assert AIResult.objects.count() == 0 and queued == []
    assert [p for p in Path(media_root).rglob("*") if p.is_file()] == []
    assert AuditEvent.objects.filter(action=AuditAction.UPLOAD_REJECTED).count() == 1
    return response.json()["files"][0]


def film_jpeg(seed: int = 2, size: int = 256) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(generate_film(seed, size, size * 13 // 16).to_8bit()).save(
        buffer, format="JPEG", quality=92
    )
    return buffer.getvalue()


ENCODINGS = {
    "jpeg-baseline": lambda: jpeg_baseline_dicom(seed=4),
    "jpeg-lossless": lambda: jpeg_lossless_dicom(seed=4),
    "jpeg-ls": lambda: compressed_dicom(JPEGLSLossless, seed=4),
    "j2k": lambda: compressed_dicom(JPEG2000Lossless, seed=4),
    "htj2k": lambda: with_stream(
        compressed_dicom(JPEG2000Lossless, seed=4),
        pixel_stream(compressed_dicom(JPEG2000Lossless, seed=4)),
        HTJ2KLossless,
    ),
    "rle": lambda: compressed_dicom(RLELossless, seed=4),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_whole_compressed_film_is_accepted(admin_api, encoding):
    response = upload(admin_api, SimpleUploadedFile("film.dcm", ENCODINGS[encoding]()))
    assert response.status_code == 201, response.json()


def test_a_whole_deflated_film_is_accepted(admin_api):
    response = upload(admin_api, SimpleUploadedFile("film.dcm", deflated(dicom_bytes(seed=4))))
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize("fraction", FRACTIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_compressed_stream_cut_short_is_refused(
    admin_api, media_root, django_capture_on_commit_callbacks, encoding, fraction
):
    content = ENCODINGS[encoding]()
    broken = with_stream(content, cut(pixel_stream(content), fraction))
    result = refused(admin_api, media_root, "cut.dcm", broken, django_capture_on_commit_callbacks)
    assert result["code"] == "truncated", result
    assert "ends early" in result["message"]


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_a_deflated_file_cut_short_is_refused(
    admin_api, media_root, django_capture_on_commit_callbacks, fraction
):
    content = deflated(dicom_bytes(seed=4))
    broken = content[: int(len(content) * fraction)]
    result = refused(admin_api, media_root, "cut.dcm", broken, django_capture_on_commit_callbacks)
    assert result["code"] == "truncated", result
    assert "deflated pixel data ends early" in result["message"]


def deflated(content: bytes, fixed_uids: bool = False) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(content))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    if fixed_uids:  # the same bytes every run, so a measured rate stays the same
        for number, keyword in enumerate(
            ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
        ):
            setattr(ds, keyword, f"1.2.826.0.1.3680043.10.1042.{number + 1}")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("encoding", "syntax"),
    [
        ("jpeg-baseline", JPEGLosslessSV1),
        ("jpeg-baseline", JPEGLossless),
        ("jpeg-baseline", JPEGLSLossless),
        ("jpeg-baseline", JPEG2000),
        ("jpeg-lossless", JPEGBaseline8Bit),
        ("jpeg-lossless", JPEGExtended12Bit),
        ("jpeg-ls", JPEGLosslessSV1),
        ("j2k", JPEGBaseline8Bit),
        ("j2k", RLELossless),
        ("rle", JPEG2000Lossless),
    ],
)
def test_a_stream_that_does_not_match_its_transfer_syntax_is_refused(
    admin_api, media_root, django_capture_on_commit_callbacks, encoding, syntax
):
    content = ENCODINGS[encoding]()
    relabelled = with_stream(content, pixel_stream(content), syntax)
    result = refused(
        admin_api, media_root, "label.dcm", relabelled, django_capture_on_commit_callbacks
    )
    assert result["code"] == "transfer_syntax_mismatch", result
    assert pydicom.uid.UID(syntax).name in result["message"]


def test_a_stream_of_another_size_than_the_header_declares_is_refused(
    admin_api, media_root, django_capture_on_commit_callbacks
):
    """The frame header says 256 rows, the DICOM header 128: one of them is wrong."""
    other = pixel_stream(jpeg_baseline_dicom(seed=4, size=256))
    content = with_stream(jpeg_baseline_dicom(seed=4), other)
    result = refused(admin_api, media_root, "size.dcm", content, django_capture_on_commit_callbacks)
    assert result["code"] == "transfer_syntax_mismatch"
    assert "256" in result["message"]


def test_two_images_in_one_frame_are_refused(
    admin_api, media_root, django_capture_on_commit_callbacks
):
    content = jpeg_baseline_dicom(seed=4)
    stream = pixel_stream(content).rstrip(b"\0")
    doubled = with_stream(content, stream + stream)
    result = refused(admin_api, media_root, "two.dcm", doubled, django_capture_on_commit_callbacks)
    assert result["code"] == "multi_frame"


def test_a_file_meta_sop_class_that_contradicts_the_dataset_is_refused(
    admin_api, media_root, django_capture_on_commit_callbacks
):
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(seed=4)))
    ds.file_meta.MediaStorageSOPClassUID = ComprehensiveSRStorage
    buffer = io.BytesIO()
    ds.save_as(buffer)
    result = refused(
        admin_api, media_root, "meta.dcm", buffer.getvalue(), django_capture_on_commit_callbacks
    )
    assert result["code"] == "sop_class_mismatch"
    assert "Comprehensive SR Storage" in result["message"]


def test_a_file_meta_sop_instance_that_contradicts_the_dataset_is_refused(
    admin_api, media_root, django_capture_on_commit_callbacks
):
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(seed=4)))
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    result = refused(
        admin_api, media_root, "meta.dcm", buffer.getvalue(), django_capture_on_commit_callbacks
    )
    assert result["code"] == "sop_class_mismatch"


# --- Bit flips ------------------------------------------------------------------------
# A flipped bit in entropy-coded data is detected only where the stream's structure or a
# decoder notices; one that still decodes without complaint to a plausible image cannot be
# told from a real film. These tests hold the measured rates (docs: README, "Bad input").


def flips(stream: bytes, count: int, seed: int = 0) -> list[bytes]:
    """``count`` copies of ``stream``, each with one bit flipped after its headers."""
    rng = np.random.default_rng(seed)
    start = stream.index(b"\xff\xda") + 14 if b"\xff\xda" in stream else len(stream) // 5
    positions = rng.integers(start, len(stream) - 2, count)
    return [flip_bit(stream, int(p), int(rng.integers(8))) for p in positions]


def refused_count(contents: list[bytes]) -> int:
    refusals = 0
    for content in contents:
        try:
            dicom.inspect_dicom(content)
        except FileRejected:
            refusals += 1
    return refusals


# Measured on these streams (40 flips each, after the scan header): what this file holds.
# JPEG-LS: CharLS refuses a broken run or context. JPEG lossless: libjpeg refuses a
# misplaced marker or an impossible difference. JPEG baseline: Huffman codes resynchronise
# within a few symbols and a flip in a coefficient's magnitude bits changes one number and
# nothing else, so the stream stays valid: a different image, not a broken one. JPEG 2000
# and RLE carry no check either (an OpenJPEG decode of a flipped code-block is a picture).
MEASURED_REFUSALS = {
    "jpeg-ls": 35,
    "jpeg-lossless": 20,
    "rle": 1,
}  # JPEG baseline, JPEG 2000: 0 of 40


@pytest.mark.parametrize("encoding", MEASURED_REFUSALS)
def test_bit_flips_are_refused_where_the_stream_or_a_decoder_notices(db, encoding):
    content = ENCODINGS[encoding]()
    broken = [with_stream(content, s) for s in flips(pixel_stream(content), 40)]
    assert refused_count(broken) >= MEASURED_REFUSALS[encoding]


def test_bit_flips_in_a_deflated_file_that_zlib_notices_are_refused(db):
    """DICOM deflate is raw deflate, with no checksum: measured 7 of 40 flips refused (data
    that does not inflate, or a header the checks refuse); the rest inflate to a dataset."""
    content = deflated(dicom_bytes(seed=4), fixed_uids=True)
    start = content.index(DeflatedExplicitVRLittleEndian.encode()) + 24
    rng = np.random.default_rng(0)
    broken = [
        flip_bit(content, int(rng.integers(start, len(content))), int(rng.integers(8)))
        for _ in range(40)
    ]
    assert refused_count(broken) >= 7


def test_bit_flips_in_a_bare_jpeg_the_decoders_notice_are_refused(db):
    """The probe's case: bare baseline JPEGs with one flipped bit after the scan header.
    Measured 4 of 40 refused (libjpeg's complaints, a broken structure); the other 36
    decode, by both decoders, to a whole image."""
    refusals = 0
    for broken in flips(film_jpeg(), 40, seed=1):
        try:
            inspect_image("flip.jpg", len(broken), lambda b=broken: b)
        except FileRejected:
            refusals += 1
    assert refusals >= 4


def test_a_flip_that_breaks_the_marker_structure_is_refused_with_the_reason(db):
    """A flip that turns scan data into a marker ends the scan where no marker may be."""
    stream = film_jpeg()
    scan = stream.index(b"\xff\xda") + 14
    broken = stream[: scan + 40] + b"\xff\xd4" + stream[scan + 42 :]  # a restart out of sequence
    with pytest.raises(FileRejected) as refusal:
        inspect_image("flip.jpg", len(broken), lambda: broken)
    assert refusal.value.code == "corrupt"
    assert "out of sequence" in refusal.value.message
