"""DICOMweb: STOW-RS pushed by the real dicomweb-client, QIDO-RS searched by it."""

from __future__ import annotations

import io

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid
from rest_framework.authtoken.models import Token

from screening.choices import AuditAction
from screening.models import AuditEvent, Image, Study
from tests.dicom_files import dicom_bytes
from tests.factories import png_bytes

URL = "/dicomweb/studies"
BOUNDARY = "mammo-test-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def four_views(study_uid: str | None = None, seed: int = 20) -> list[pydicom.Dataset]:
    study_uid = study_uid or generate_uid()
    views = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]
    return [
        pydicom.dcmread(
            io.BytesIO(
                dicom_bytes(
                    seed=seed + i,
                    size=256,
                    study_uid=study_uid,
                    laterality=side,
                    view=view,
                    photometric="MONOCHROME1" if i % 2 else "MONOCHROME2",
                    compressed=i == 3,
                )
            )
        )
        for i, (side, view) in enumerate(views)
    ]


def client_for(live_server, user) -> DICOMwebClient:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    # No keep-alive: a live-server thread held open by it would keep its database
    # connection past the test, and the test database could not be dropped.
    session.headers["Connection"] = "close"
    return DICOMwebClient(url=f"{live_server.url}/dicomweb", session=session)


def related(*parts: bytes, part_type: str = "application/dicom") -> bytes:
    body = b""
    for part in parts:
        body += f"\r\n--{BOUNDARY}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part
    return body + f"\r\n--{BOUNDARY}--".encode()


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


@pytest.mark.django_db(transaction=True)
def test_a_pacs_pushes_a_four_view_study_with_dicomweb_client(live_server, admin_user):
    datasets = four_views()
    answer = client_for(live_server, admin_user).store_instances(datasets)
    study = Study.objects.get()
    assert study.images.count() == 4
    stored = {(i.sop_class_uid, i.sop_instance_uid) for i in study.images.all()}
    answered = {
        (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID)
        for item in answer.ReferencedSOPSequence
    }
    assert answered == stored
    originals = {str(ds.SOPInstanceUID) for ds in datasets}
    if study.identity_mode == "clinical":  # the hospital's own UIDs, kept
        assert {uid for _, uid in answered} == originals
    else:  # remapped, never the hospital's own
        assert not originals & {uid for _, uid in answered}
    assert AuditEvent.objects.filter(action=AuditAction.STUDY_UPLOADED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_one_bad_instance_refuses_the_push_with_a_failure_per_instance(live_server, admin_user):
    datasets = four_views()
    datasets[2].Modality = "CT"
    with pytest.raises(requests.HTTPError) as refused:
        client_for(live_server, admin_user).store_instances(datasets)
    response = refused.value.response
    assert response.status_code == 400
    answer = pydicom.Dataset.from_json(response.json())
    reasons = [item.FailureReason for item in answer.FailedSOPSequence]
    assert reasons == [0x0110, 0x0110, 0x0122, 0x0110]
    comments = [item[0x0000, 0x0902].value for item in answer.FailedSOPSequence]
    assert comments[2].startswith("part 3: Modality CT")
    assert "part 3 (Modality CT: only mammography (MG) is accepted.)" in response.headers["Warning"]
    for ds in datasets:
        assert str(ds.SOPInstanceUID) not in response.text
    assert (Study.objects.count(), Image.objects.count()) == (0, 0)
    assert AuditEvent.objects.filter(action=AuditAction.UPLOAD_REJECTED).count() == 1


def test_an_instance_sent_again_with_the_same_bytes_is_answered_as_stored(admin_api):
    """A PACS whose request timed out sends the instance again: that is success, not 0x0111."""
    content = dicom_bytes(seed=3)
    first = admin_api.post(URL, related(content), content_type=CONTENT_TYPE)
    again = admin_api.post(URL, related(content), content_type=CONTENT_TYPE)
    assert (first.status_code, again.status_code) == (200, 200)
    stored = pydicom.Dataset.from_json(first.json()).ReferencedSOPSequence[0]
    answer = pydicom.Dataset.from_json(again.json())
    assert "FailedSOPSequence" not in answer
    assert [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] == [
        stored.ReferencedSOPInstanceUID
    ]
    assert Image.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.STUDY_UPLOADED).count() == 1


def test_a_study_sent_again_with_one_new_instance_stores_only_the_new_one(admin_api):
    old, new = _encoded(four_views(seed=40)[:2])
    assert admin_api.post(URL, related(old), content_type=CONTENT_TYPE).status_code == 200
    response = admin_api.post(URL, related(old, new), content_type=CONTENT_TYPE)
    assert response.status_code == 200
    answer = pydicom.Dataset.from_json(response.json())
    assert len(answer.ReferencedSOPSequence) == 2
    assert Study.objects.count() == 1 and Image.objects.count() == 2


def test_a_different_object_under_a_stored_uid_is_a_409_with_the_duplicate_reason(admin_api):
    uid = generate_uid()
    assert (
        admin_api.post(
            URL, related(dicom_bytes(seed=3, sop_uid=uid)), content_type=CONTENT_TYPE
        ).status_code
        == 200
    )
    response = admin_api.post(
        URL, related(dicom_bytes(seed=4, sop_uid=uid)), content_type=CONTENT_TYPE
    )
    assert response.status_code == 409
    answer = pydicom.Dataset.from_json(response.json())
    assert answer.FailedSOPSequence[0].FailureReason == 0x0111
    assert Image.objects.count() == 1


def test_stow_refuses_a_part_that_is_not_dicom(admin_api):
    response = admin_api.post(URL, related(png_bytes(seed=1)), content_type=CONTENT_TYPE)
    assert response.status_code == 400
    assert "only DICOM" in response.json()["00081198"]["Value"][0]["00000902"]["Value"][0]
    assert Study.objects.count() == 0


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("multipart/form-data; boundary=x", b"--x--", 415),
        (f'multipart/related; type="image/png"; boundary={BOUNDARY}', b"", 415),
        ('multipart/related; type="application/dicom"', b"no boundary", 400),
        (
            CONTENT_TYPE,
            f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nabc".encode(),
            400,
        ),
        (CONTENT_TYPE, f"--{BOUNDARY}--".encode(), 400),
    ],
    ids=["form-data", "png-type", "no-boundary", "cut-short", "no-parts"],
)
def test_stow_refuses_a_malformed_request_and_records_it(admin_api, content_type, body, status):
    response = admin_api.post(URL, body, content_type=content_type)
    assert response.status_code == status
    assert response.json()["detail"]
    assert Study.objects.count() == 0
    assert AuditEvent.objects.get(action=AuditAction.UPLOAD_REJECTED).outcome == "failure"


def test_stow_refuses_a_body_over_the_request_limit_with_413(admin_api, settings):
    settings.UPLOAD_MAX_REQUEST_BYTES = 1000
    response = admin_api.post(URL, related(dicom_bytes()), content_type=CONTENT_TYPE)
    assert response.status_code == 413
    assert Study.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_stow_answers_other_roles_403_and_strangers_401(live_server, radiologist):
    with pytest.raises(requests.HTTPError) as refused:
        client_for(live_server, radiologist).store_instances(four_views()[:1])
    assert refused.value.response.status_code == 403
    stranger = requests.Session()
    stranger.headers["Connection"] = "close"
    anonymous = DICOMwebClient(url=f"{live_server.url}/dicomweb", session=stranger)
    with pytest.raises(requests.HTTPError) as refused:
        anonymous.store_instances(four_views()[:1])
    assert refused.value.response.status_code == 401
    assert Study.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_qido_rs_finds_pushed_studies_by_uid_patient_and_date(live_server, admin_user):
    client = client_for(live_server, admin_user)
    client.store_instances(four_views())
    other = pydicom.dcmread(
        io.BytesIO(
            dicom_bytes(seed=40, patient_id="OTHER", study_date="20230101", accession="ACC-2")
        )
    )
    client.store_instances([other])
    found = [pydicom.Dataset.from_json(s) for s in client.search_for_studies()]
    assert len(found) == 2
    study = Study.objects.get(images__view="MLO", images__laterality="L")
    assert {f.StudyInstanceUID for f in found} == set(
        Study.objects.values_list("study_instance_uid", flat=True)
    )
    assert study.case is not None
    by_patient = client.search_for_studies(
        search_filters={"PatientID": study.case.patient.pseudonym}
    )
    assert [pydicom.Dataset.from_json(s).NumberOfStudyRelatedInstances for s in by_patient] == [4]
    in_2024 = client.search_for_studies(search_filters={"StudyDate": "20240101-20241231"})
    assert [pydicom.Dataset.from_json(s).StudyInstanceUID for s in in_2024] == [
        study.study_instance_uid
    ]


def _push_in_parallel(user, bodies: list[bytes]) -> list[int]:
    import threading

    from django.db import connection
    from rest_framework.test import APIClient

    statuses: list[int] = []
    barrier = threading.Barrier(len(bodies))

    def send(body: bytes) -> None:
        client = APIClient()
        client.force_authenticate(user)
        barrier.wait()
        statuses.append(client.post(URL, body, content_type=CONTENT_TYPE).status_code)
        connection.close()

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def _encoded(datasets: list[pydicom.Dataset]) -> list[bytes]:
    encoded = []
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer)
        encoded.append(buffer.getvalue())
    return encoded


@pytest.mark.django_db(transaction=True)
def test_instances_of_one_study_pushed_in_parallel_all_land_in_one_study(admin_user):
    from tests.conftest import requires_postgres

    requires_postgres()
    statuses = _push_in_parallel(admin_user, [related(c) for c in _encoded(four_views())])
    assert statuses == [200] * 4
    assert Study.objects.count() == 1
    assert Study.objects.get().images.count() == 4


@pytest.mark.django_db(transaction=True)
def test_the_same_study_pushed_in_parallel_is_stored_once_and_each_push_succeeds(admin_user):
    from tests.conftest import requires_postgres

    requires_postgres()
    body = related(*_encoded(four_views()))
    statuses = _push_in_parallel(admin_user, [body] * 5)
    assert statuses == [200] * 5  # the copies that lost the race are the same objects: stored
    assert Study.objects.count() == 1
    assert Study.objects.get().images.count() == 4


def test_a_curl_style_body_without_a_leading_crlf_is_parsed(admin_api, tmp_path):
    """The README's curl example: first delimiter at byte 0, CRLF after the close."""
    import subprocess

    study = generate_uid()
    (tmp_path / "IM0001.dcm").write_bytes(dicom_bytes(seed=1, view="CC", study_uid=study))
    (tmp_path / "IM0002.dcm").write_bytes(dicom_bytes(seed=2, view="MLO", study_uid=study))
    script = (
        "{ printf -- '--XX\\r\\nContent-Type: application/dicom\\r\\n\\r\\n'; cat IM0001.dcm\n"
        "  printf -- '\\r\\n--XX\\r\\nContent-Type: application/dicom\\r\\n\\r\\n'; cat IM0002.dcm\n"
        "  printf -- '\\r\\n--XX--\\r\\n'; } > body.mime"
    )
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True)
    response = admin_api.post(
        URL,
        (tmp_path / "body.mime").read_bytes(),
        content_type='multipart/related; type="application/dicom"; boundary=XX',
    )
    assert response.status_code == 200, response.content[:300]
    assert Image.objects.count() == 2


def test_stow_refuses_more_instances_than_allowed_and_records_it(admin_api, settings):
    settings.UPLOAD_MAX_FILES = 1
    body = related(*_encoded(four_views()[:2]))
    response = admin_api.post(URL, body, content_type=CONTENT_TYPE)
    assert response.status_code == 400
    assert "at most 1" in response["Warning"]
    assert Study.objects.count() == 0
    event = AuditEvent.objects.get(action=AuditAction.UPLOAD_REJECTED)
    assert event.detail["rejections"][0]["code"] == "too_many_files"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("limit=-1", "limit must be a whole number"),
        ("offset=-1", "offset must be a whole number"),
        ("limit=abc", "limit must be a whole number"),
        ("limit=1.5", "limit must be a whole number"),
        ("offset=99999999999999999999", "offset must be a whole number"),
        ("PatientID=%00", "NUL"),
        ("StudyInstanceUID=1.2%003", "NUL"),
        ("StudyDate=2024%000101", "NUL"),
    ],
    ids=[
        "negative-limit",
        "negative-offset",
        "word",
        "fraction",
        "huge-offset",
        "nul-patient",
        "nul-uid",
        "nul-date",
    ],
)
def test_qido_refuses_a_bad_parameter_with_400_and_a_reason(admin_api, query, reason):
    response = admin_api.get(f"{URL}?{query}")
    assert response.status_code == 400
    assert reason in response.json()["detail"]


def test_qido_pages_with_limit_and_offset(admin_api):
    for seed, accession in ((1, "ACC-1"), (2, "ACC-2")):
        body = related(dicom_bytes(seed=seed, accession=accession))
        assert admin_api.post(URL, body, content_type=CONTENT_TYPE).status_code == 200
    assert admin_api.get(f"{URL}?limit=0").json() == []
    first, second = (admin_api.get(f"{URL}?limit=1&offset={n}").json() for n in (0, 1))
    assert len(first) == len(second) == 1 and first != second
    assert admin_api.get(f"{URL}?offset=2").json() == []
