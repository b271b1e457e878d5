"""PNG and JPEG files are stored as pixels only (issue 22, finding 3).

An outside probe found tEXt/iTXt/eXIf chunks and EXIF/COM markers (a patient name, a
comment) stored byte for byte and served back by ``/api/images/{id}/file/``. Every test
here writes a woman's name into one place a PNG or JPEG can carry text, uploads it, and
reads the stored file, the served file and the decoded pixels.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage
from PIL import PngImagePlugin

from ml.synthetic import generate_film
from screening.imaging import streams
from screening.models import Image

NAME = "Doe^Jane Quinn"
URL = "/api/studies/"
# Privacy tests: de-identification is research mode's, pinned whatever the run's mode.
pytestmark = pytest.mark.usefixtures("research_mode")
PNG_PIXEL_CHUNKS = {b"IHDR", b"IDAT", b"IEND"}
# What a JPEG needs to be decoded: the frame, its tables and its scan (no APPn, no COM).
JPEG_PIXEL_MARKERS = {0xD8, 0xDB, 0xC4, 0xC0, 0xC1, 0xC2, 0xDD, 0xDA, 0xD9}


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def upload(api, name: str, content: bytes, accession: str = "ACC-PX"):
    return api.post(
        URL,
        {
            "accession_number": accession,
            "patient_pseudonym": "P-1",
            "files": [SimpleUploadedFile(name, content)],
        },
        format="multipart",
    )


def film(mode: str = "L", seed: int = 3) -> PILImage.Image:
    pixels = generate_film(seed, 96, 78)
    if mode == "I;16":
        return PILImage.fromarray(pixels.pixels.astype(np.uint16))
    return PILImage.fromarray(pixels.to_8bit()).convert(mode)


def exif_naming() -> PILImage.Exif:
    exif = PILImage.Exif()
    exif[0x013B] = NAME  # Artist
    exif[0x010E] = f"Screening film of {NAME}"  # ImageDescription
    return exif


def icc_naming() -> bytes:
    """Not a colour profile a viewer could use: only the place a name can hide."""
    return b"\0\0\0\x80" + b"desc" + NAME.encode() + b"\0" * 100


def png_with(where: str, mode: str = "L", seed: int = 3) -> bytes:
    info = PngImagePlugin.PngInfo()
    options: dict[str, object] = {}
    if where == "tEXt":
        info.add_text("Author", NAME)
    elif where == "iTXt":
        info.add_itxt("Description", f"Patient {NAME}", lang="en", tkey="Beschreibung")
    elif where == "zTXt":
        info.add_text("Comment", f"Patient {NAME}", zip=True)
    elif where == "eXIf":
        options["exif"] = exif_naming()
    elif where == "iCCP":
        options["icc_profile"] = icc_naming()
    buffer = io.BytesIO()
    film(mode, seed).save(buffer, format="PNG", pnginfo=info, **options)
    content = buffer.getvalue()
    if where == "after IEND":
        content += NAME.encode()
    return content


def jpeg_with(where: str, mode: str = "L", seed: int = 3) -> bytes:
    options: dict[str, object] = {"quality": 95}
    if where == "EXIF":
        options["exif"] = exif_naming()
    elif where == "COM":
        options["comment"] = f"Patient {NAME}"
    elif where == "ICC":
        options["icc_profile"] = icc_naming()
    elif where == "XMP":
        options["xmp"] = f"<x:xmpmeta><dc:creator>{NAME}</dc:creator></x:xmpmeta>".encode()
    buffer = io.BytesIO()
    film(mode, seed).save(buffer, format="JPEG", **options)
    content = buffer.getvalue()
    if where == "after EOI":
        content += NAME.encode()
    return content


def png_chunks(content: bytes) -> list[bytes]:
    chunks, position = [], 8
    while position < len(content):
        (length,) = struct.unpack_from(">I", content, position)
        chunks.append(content[position + 4 : position + 8])
        position += 12 + length
    return chunks


def jpeg_markers(content: bytes) -> set[int]:
    markers, position = {0xD8}, 2
    while True:
        marker = content[position + 1]
        markers.add(marker)
        if marker == 0xD9:
            return markers
        (length,) = struct.unpack_from(">H", content, position + 2)
        position += 2 + length
        if marker == 0xDA:
            position = streams._scan_end(content, position, "JPEG", ls=False)


def names_anywhere(content: bytes) -> bool:
    """The name in the bytes, or inside any zlib stream of a PNG chunk."""
    if NAME.encode() in content or b"Doe" in content:
        return True
    if content.startswith(b"\x89PNG"):
        position = 8
        while position < len(content):
            (length,) = struct.unpack_from(">I", content, position)
            body = content[position + 8 : position + 8 + length]
            try:
                if b"Doe" in zlib.decompress(body[body.find(b"\0") + 2 :]):
                    return True
            except zlib.error:
                pass
            position += 12 + length
    return False


def stored_and_served(api, radiologist, content: bytes, name: str) -> tuple[bytes, bytes]:
    response = upload(api, name, content)
    assert response.status_code == 201, response.json()
    image = Image.objects.get()
    stored = Path(image.file.path).read_bytes()
    api.force_authenticate(radiologist)
    served = b"".join(api.get(f"/api/images/{image.pk}/file/").streaming_content)
    return stored, served


def decoded(content: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(content)) as img:
        img.load()
        return np.asarray(img)


@pytest.mark.parametrize("where", ["tEXt", "iTXt", "zTXt", "eXIf", "iCCP", "after IEND"])
def test_a_png_is_stored_and_served_without_its_text(admin_api, radiologist, where):
    content = png_with(where)
    assert names_anywhere(content)  # the test puts the name where it says
    stored, served = stored_and_served(admin_api, radiologist, content, "L_CC.png")
    assert served == stored
    assert set(png_chunks(stored)) <= PNG_PIXEL_CHUNKS
    assert not names_anywhere(stored)
    assert np.array_equal(decoded(stored), decoded(content))


@pytest.mark.parametrize("where", ["EXIF", "COM", "ICC", "XMP", "after EOI"])
def test_a_jpeg_is_stored_and_served_without_its_text(admin_api, radiologist, where):
    content = jpeg_with(where)
    assert NAME.encode() in content
    stored, served = stored_and_served(admin_api, radiologist, content, "L_CC.jpg")
    assert served == stored
    assert jpeg_markers(stored) <= JPEG_PIXEL_MARKERS
    assert not names_anywhere(stored)
    assert np.array_equal(decoded(stored), decoded(content))


def test_a_jpeg_keeps_its_compressed_data_byte_for_byte(admin_api, radiologist):
    """No re-encoding: a lossy JPEG encoded again would lose more of the film."""
    content = jpeg_with("EXIF")
    stored, _ = stored_and_served(admin_api, radiologist, content, "L_CC.jpg")
    scan = content[content.index(b"\xff\xda") :]
    assert stored.endswith(scan)


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "LA"])
def test_a_png_keeps_every_pixel_in_its_own_mode(admin_api, radiologist, mode):
    content = png_with("tEXt", mode)
    stored, _ = stored_and_served(admin_api, radiologist, content, "L_CC.png")
    with PILImage.open(io.BytesIO(stored)) as img:
        assert img.mode == mode
    assert np.array_equal(decoded(stored), decoded(content))
    image = Image.objects.get()
    assert image.bit_depth == (16 if mode == "I;16" else 8)


def test_an_rgb_jpeg_decodes_to_the_same_pixels_without_its_markers(admin_api, radiologist):
    content = jpeg_with("EXIF", mode="RGB")
    stored, _ = stored_and_served(admin_api, radiologist, content, "L_CC.jpg")
    assert np.array_equal(decoded(stored), decoded(content))


def test_the_stored_file_is_named_by_the_hash_of_its_clean_bytes(admin_api, radiologist):
    import hashlib

    stored, _ = stored_and_served(admin_api, radiologist, png_with("tEXt"), "L_CC.png")
    image = Image.objects.get()
    assert image.sha256 == hashlib.sha256(stored).hexdigest()
    assert image.file.name is not None and image.sha256 in image.file.name


def test_the_same_film_with_other_metadata_is_a_duplicate(admin_api):
    """What is stored is the pixels, so two copies differing only in text are one film."""
    assert upload(admin_api, "L_CC.png", png_with("tEXt")).status_code == 201
    response = upload(admin_api, "L_CC.png", png_with("iTXt"), accession="ACC-2")
    assert response.status_code == 409
    assert response.json()["files"][0]["code"] == "duplicate"
    assert Image.objects.count() == 1


@pytest.mark.parametrize("encoding", ["jpeg-baseline", "jpeg-lossless", "jpeg-ls"])
def test_a_jpeg_stream_inside_dicom_is_stored_without_its_text(admin_api, encoding):
    """De-identification keeps the pixel data: a COM or APP1 segment inside it must go too."""
    import pydicom

    from tests.dicom_files import pixel_stream, with_stream
    from tests.screening.imaging.test_strict_decoding import ENCODINGS

    content = ENCODINGS[encoding]()
    stream = pixel_stream(content).rstrip(b"\0")
    text = b"\xff\xfe" + struct.pack(">H", len(NAME) + 2) + NAME.encode()
    exif = b"\xff\xe1" + struct.pack(">H", len(NAME) + 8) + b"Exif\0\0" + NAME.encode()
    named = with_stream(content, stream[:2] + text + exif + stream[2:])
    assert NAME.encode() in named
    response = admin_api.post(
        URL, {"files": [SimpleUploadedFile("a.dcm", named)]}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    stored = Path(Image.objects.get().file.path).read_bytes()
    assert NAME.encode() not in stored
    original = pydicom.dcmread(io.BytesIO(content)).pixel_array
    assert np.array_equal(pydicom.dcmread(io.BytesIO(stored)).pixel_array, original)


def test_a_jpeg_2000_stream_inside_dicom_is_stored_without_its_comments(admin_api):
    """Comments in the main header and in a tile-part header (whose length then changes)."""
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    from tests.dicom_files import compressed_dicom, pixel_stream, with_stream

    content = compressed_dicom(JPEG2000Lossless, seed=4)
    stream = pixel_stream(content).rstrip(b"\0")
    comment = b"\xff\x64" + struct.pack(">HH", len(NAME) + 4, 1) + NAME.encode()
    siz_end = 4 + struct.unpack_from(">H", stream, 4)[0]
    stream = stream[:siz_end] + comment + stream[siz_end:]
    sot = stream.index(b"\xff\x90")
    (declared,) = struct.unpack_from(">I", stream, sot + 6)
    length = struct.pack(">I", declared + len(comment)) if declared else struct.pack(">I", 0)
    stream = stream[: sot + 6] + length + stream[sot + 10 : sot + 12] + comment + stream[sot + 12 :]
    named = with_stream(content, stream)
    assert pydicom.dcmread(io.BytesIO(named)).pixel_array.shape == (128, 104)  # still valid
    response = admin_api.post(
        URL, {"files": [SimpleUploadedFile("a.dcm", named)]}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    stored = Path(Image.objects.get().file.path).read_bytes()
    assert NAME.encode() not in stored
    original = pydicom.dcmread(io.BytesIO(content)).pixel_array
    assert np.array_equal(pydicom.dcmread(io.BytesIO(stored)).pixel_array, original)
