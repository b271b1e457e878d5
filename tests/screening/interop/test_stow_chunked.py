"""STOW-RS bodies as clients really send them: chunked, studies of real size, no preamble."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid
from rest_framework.authtoken.models import Token
from rest_framework.test import APIRequestFactory, force_authenticate

from screening.interop.dicomweb import MultipartError, StudiesView, decode_chunked, part10
from screening.models import Image, Study
from tests.dicom_files import dataset, dicom_bytes
from tests.screening.interop.test_dicomweb import CONTENT_TYPE, URL, related

VIEWS = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]


def in_memory(
    seed: int, study_uid: str, side: str, view: str, scale: int = 1, accession: str = "ACC-1"
) -> pydicom.Dataset:
    """A 16-bit mammogram built in memory (no preamble), ``scale`` times 256x208 pixels."""
    ds = dataset(
        seed,
        size=256,
        photometric="MONOCHROME2",
        bits=16,
        voi="window",
        laterality=side,
        view=view,
        study_uid=study_uid,
        sop_uid=None,
        accession=accession,
        patient_id=None,
        modality="MG",
        frames=1,
        pixel_data=True,
        study_date="20240315",
    )
    if scale > 1:
        pixels = np.frombuffer(ds.PixelData, "<u2").reshape(ds.Rows, ds.Columns)
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.tobytes()
    return ds


def four_views(scale: int = 1, accession: str = "ACC-1") -> list[pydicom.Dataset]:
    study_uid = generate_uid()
    return [
        in_memory(60 + i, study_uid, side, view, scale, accession)
        for i, (side, view) in enumerate(VIEWS)
    ]


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def dicomweb_client(live_server, user) -> DICOMwebClient:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    return DICOMwebClient(url=f"{live_server.url}/dicomweb", session=session)


def chunked(payload: bytes, size: int = 7, extension: bytes = b"") -> bytes:
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    framed = b"".join(b"%x%s\r\n%s\r\n" % (len(c), extension, c) for c in chunks)
    return framed + b"0\r\n"


def decode(framed: bytes, limit: int = 10**6) -> bytes:
    stream = io.BytesIO(framed)
    return bytes(decode_chunked(stream.read, stream.readline, limit))


@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_pushes_a_full_size_study_in_chunks(live_server, admin_user):
    """Four 3328x4096 16-bit views (27 MB each) built in memory, the client's defaults."""
    datasets = four_views(scale=16)
    assert (datasets[0].Columns, datasets[0].Rows) == (3328, 4096)
    client = dicomweb_client(live_server, admin_user)
    try:
        answer = client.store_instances(datasets)
    finally:
        client._session.close()
    assert len(answer.ReferencedSOPSequence) == 4
    study = Study.objects.get()
    assert {(i.width, i.height, i.bit_depth) for i in study.images.all()} == {(3328, 4096, 16)}


@pytest.mark.django_db(transaction=True)
def test_a_chunked_push_leaves_the_connection_ready_for_the_next(live_server, admin_user):
    client = dicomweb_client(live_server, admin_user)
    client.set_chunk_size(10_000)  # the client chunks a body above this, and keeps alive
    try:
        for accession in ("ACC-1", "ACC-2"):
            client.store_instances(four_views(accession=accession))
    finally:
        client._session.close()
    assert (Study.objects.count(), Image.objects.count()) == (2, 8)


@pytest.mark.django_db(transaction=True)
def test_a_chunked_push_over_the_request_limit_is_413(live_server, admin_user, settings):
    settings.UPLOAD_MAX_REQUEST_BYTES = 100_000
    client = dicomweb_client(live_server, admin_user)
    client.set_chunk_size(10_000)
    try:
        with pytest.raises(requests.HTTPError) as refused:
            client.store_instances(four_views()[:2])
    finally:
        client._session.close()
    assert refused.value.response.status_code == 413
    assert Study.objects.count() == 0


def test_a_part_without_the_preamble_is_taken_as_dicom(admin_api):
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, in_memory(1, generate_uid(), "L", "CC"))
    content = buffer.getvalue()
    assert content[:2] == b"\x02\x00"  # straight into the file meta group
    response = admin_api.post(URL, related(content), content_type=CONTENT_TYPE)
    assert response.status_code == 200, response.content[:300]
    assert Image.objects.count() == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"\x02\x00\x10\x00UI\x04\x001.2\x00",
            bytes(128) + b"DICM\x02\x00\x10\x00UI\x04\x001.2\x00",
        ),
        (b"DICM\x02\x00", bytes(128) + b"DICM\x02\x00"),
        (b"x" * 128 + b"DICM\x02\x00", b"x" * 128 + b"DICM\x02\x00"),
        (b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n"),
    ],
    ids=["meta-group-first", "prefix-first", "part-10", "not-dicom"],
)
def test_part10_puts_back_only_a_missing_preamble(content, expected):
    assert part10(content) == expected


def test_decode_chunked_returns_the_payload_without_extensions_or_trailers():
    payload = bytes(range(256)) * 10
    framed = chunked(payload, extension=b";name=value") + b"Checksum: abc\r\n\r\n"
    assert decode(framed) == payload


def test_decode_chunked_reads_a_zero_chunk_body_as_empty():
    assert decode(b"0\r\n\r\n") == b""


@pytest.mark.parametrize(
    "framed",
    [
        b"zz\r\nabc\r\n0\r\n\r\n",  # not hexadecimal
        b"-3\r\nabc\r\n0\r\n\r\n",  # negative
        b"3\nabc\r\n0\r\n\r\n",  # bare LF
        b"3\r\nabcd\r\n0\r\n\r\n",  # data longer than its size
        b"a\r\nabc",  # cut short in the data
        b"3\r\nabc\r\n",  # no last chunk
        b"3\r\nabc\r\n0\r\n",  # no final CRLF
        b"1" * 5000 + b"\r\n",  # size line without end
    ],
    ids=["hex", "negative", "bare-lf", "overrun", "cut-data", "no-last", "no-crlf", "long-line"],
)
def test_decode_chunked_refuses_malformed_framing_with_400(framed):
    with pytest.raises(MultipartError) as refused:
        decode(framed)
    assert refused.value.status == 400


def test_decode_chunked_refuses_a_chunk_past_the_limit_before_reading_it():
    reads: list[int] = []
    stream = io.BytesIO(b"10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n")

    def read(size: int) -> bytes:
        reads.append(size)
        return stream.read(size)

    with pytest.raises(MultipartError) as refused:
        decode_chunked(read, stream.readline, limit=15)
    assert refused.value.status == 413
    assert reads == []


def test_a_body_the_server_already_de_chunked_is_read_to_its_end(admin_user):
    """gunicorn, uWSGI, mod_wsgi: no Content-Length, ``wsgi.input_terminated`` set."""
    body = related(dicom_bytes(seed=5))
    request = APIRequestFactory().post(URL, b"", content_type=CONTENT_TYPE)
    request.META.pop("CONTENT_LENGTH", None)
    request.META.update(
        {
            "HTTP_TRANSFER_ENCODING": "chunked",
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
        }
    )
    force_authenticate(request, admin_user)
    response = StudiesView.as_view()(request)
    assert response.status_code == 200, response.data
    assert Image.objects.count() == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"HTTP_TRANSFER_ENCODING": "chunked"}, 400),  # and the test client's Content-Length
        ({"HTTP_TRANSFER_ENCODING": "gzip, chunked"}, 501),
    ],
    ids=["both-lengths", "gzip"],
)
def test_stow_refuses_a_transfer_encoding_it_cannot_read(admin_api, headers, status):
    response = admin_api.post(URL, related(dicom_bytes()), content_type=CONTENT_TYPE, **headers)
    assert response.status_code == status
    assert Study.objects.count() == 0
