"""Prior studies: history with no case. An upload marked as a prior, or a study older than
the woman's newest screen, is stored for comparison only: never on a worklist or the next
case, never queued for the AI, never in the auditor's figures or exports; hung beside her
later screens on the case page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from pydicom.uid import generate_uid

from screening.ai import inference
from screening.audit import reporting
from screening.choices import AuditAction, IdentityMode
from screening.models import AIResult, AuditEvent, Case, Study
from screening.reading import queries
from tests.dicom_files import dicom_bytes

pytestmark = pytest.mark.django_db

URL = "/api/studies/"
VIEWS = [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]


@pytest.fixture
def admin_api(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def films(date: str, seed: int, patient: str = "PAT-PRIORS-1") -> list[SimpleUploadedFile]:
    study_uid = generate_uid()
    return [
        SimpleUploadedFile(
            f"IM{i}.dcm",
            dicom_bytes(
                seed=seed + i,
                study_uid=study_uid,
                laterality=side,
                view=view,
                accession=f"ACC-{date}-{seed}",
                patient_id=patient,
                study_date=date,
            ),
        )
        for i, (side, view) in enumerate(VIEWS)
    ]


def upload(api, files: list[SimpleUploadedFile], **fields: object) -> dict:
    response = api.post(URL, {**fields, "files": files}, format="multipart")
    assert response.status_code == 201, response.json()
    return dict(response.json())


def test_an_upload_marked_as_a_prior_has_no_case_and_no_ai_job(admin_api, active_model) -> None:
    answer = upload(admin_api, films("20240315", 10), prior=True)
    study = Study.objects.get(pk=answer["study_id"])
    assert (answer["case_id"], answer["prior"], study.is_prior) == (None, True, True)
    assert Case.objects.count() == 0 and study.prior_of is not None
    assert not AIResult.objects.exists()  # never scored
    event = AuditEvent.objects.get(action=AuditAction.STUDY_UPLOADED)
    assert (event.detail["prior"], event.detail["case_id"]) == (True, None)


def test_an_unmarked_upload_is_a_screen(admin_api, active_model) -> None:
    answer = upload(admin_api, films("20240315", 10))
    assert answer["prior"] is False and Case.objects.get().pk == answer["case_id"]
    assert AIResult.objects.count() == 4


def test_the_upload_page_marks_a_prior_with_its_box(client, admin_user) -> None:
    client.force_login(admin_user)
    page = client.get(reverse("upload")).content.decode()
    assert 'name="prior"' in page and 'type="checkbox"' in page
    response = client.post(
        reverse("upload"),
        {"target": "new", "modality": "MG", "prior": "on", "files": films("20240315", 10)},
    )
    assert response.status_code == 201
    assert 'id="upload-prior"' in response.content.decode()
    assert Study.objects.get().is_prior and not Case.objects.exists()


def test_a_study_older_than_her_newest_screen_is_a_prior_by_default(admin_api) -> None:
    screen = upload(admin_api, films("20240315", 10))
    older = upload(admin_api, films("20220310", 20))
    newer = upload(admin_api, films("20250401", 30))
    someone_else = upload(admin_api, films("20200101", 40, patient="PAT-OTHER"))
    assert older["case_id"] is None and older["prior"] is True
    assert (
        Study.objects.get(pk=older["study_id"]).prior_of
        == Case.objects.get(pk=screen["case_id"]).patient
    )
    assert newer["case_id"] is not None  # a later screen is read as ever
    assert someone_else["case_id"] is not None  # her first screen here: nothing newer


def test_images_added_to_a_prior_stay_history(admin_api) -> None:
    first, *rest = films("20240315", 10)
    answer = upload(admin_api, [first], prior=True)
    again = upload(admin_api, rest)  # the same study's other views, unmarked
    assert again["study_id"] == answer["study_id"] and again["case_id"] is None
    assert Study.objects.get().images.count() == 4 and not Case.objects.exists()


def test_priors_are_never_on_a_worklist_the_next_case_the_ai_queue_figures_or_exports(
    admin_api, active_model, client, radiologist, auditor
) -> None:
    screen = upload(admin_api, films("20240315", 10))
    prior = upload(admin_api, films("20220310", 20), prior=True)
    history = upload(admin_api, films("20230310", 30, patient="PAT-ONLY-HISTORY"), prior=True)
    priors = Study.objects.filter(pk__in=[prior["study_id"], history["study_id"]])
    assert all(study.is_prior for study in priors)

    assert [c.pk for c in queries.worklist(radiologist)] == [screen["case_id"]]
    assert queries.next_case(radiologist).pk == screen["case_id"]  # type: ignore[union-attr]
    client.force_login(radiologist)
    listed = client.get("/api/cases/").json()
    assert [row["id"] for row in listed["results"]] == [screen["case_id"]]

    assert inference.rescore_open_cases(active_model.pk) == 1  # the screen's study only
    assert not AIResult.objects.filter(image__study__in=priors).exists()

    assert reporting.case_list(reporting.ReportFilter()).data.case_id.tolist() == [
        screen["case_id"]
    ]
    client.force_login(auditor)
    csv = client.get(reverse("audit-export", args=["cases"])).getvalue().decode()
    assert len(csv.strip().splitlines()) == 2  # the header and the one screen
    assert Case.objects.count() == 1


def test_the_case_page_hangs_a_prior_study_beside_the_screen(
    admin_api, client, radiologist
) -> None:
    screen = upload(admin_api, films("20240315", 10))
    prior = upload(admin_api, films("20220310", 20), prior=True)
    client.force_login(radiologist)
    html = client.get(reverse("case-detail", args=[screen["case_id"]])).content.decode()
    assert f'data-compare-case="study-{prior["study_id"]}"' in html
    assert html.count(f'data-case="study-{prior["study_id"]}"') == 4
    assert "Prior · 2022-03-10" in html and "prior study (history" in html
    assert "Compare with this screen" not in html  # the one prior is already hung


def test_a_reader_picks_which_prior_to_hang(admin_api, client, radiologist) -> None:
    screen = upload(admin_api, films("20240315", 10))
    older = upload(admin_api, films("20200310", 20), prior=True)
    newer = upload(admin_api, films("20220310", 30), prior=True)
    client.force_login(radiologist)
    url = reverse("case-detail", args=[screen["case_id"]])
    assert f'data-compare-case="study-{newer["study_id"]}"' in client.get(url).content.decode()
    picked = client.get(url, {"prior": f"study-{older['study_id']}"}).content.decode()
    assert f'data-compare-case="study-{older["study_id"]}"' in picked


def test_retrieving_a_prior_over_wado_rs_is_audited_as_viewing_it(
    admin_api, client, radiologist
) -> None:
    prior = Study.objects.get(pk=upload(admin_api, films("20220310", 20), prior=True)["study_id"])
    client.force_login(radiologist)
    response = client.get(f"/dicomweb/studies/{prior.study_instance_uid}")
    assert response.status_code == 200
    client.get(f"/dicomweb/studies/{prior.study_instance_uid}")  # the same viewing
    event = AuditEvent.objects.get(action=AuditAction.PRIOR_OPENED)
    assert (event.actor, event.object_id) == (radiologist, str(prior.pk))


def test_the_ai_report_of_a_prior_is_refused(admin_api, client, radiologist) -> None:
    prior = upload(admin_api, films("20220310", 20), prior=True)
    client.force_login(radiologist)
    response = client.get(reverse("study-ai-report", args=[prior["study_id"]]))
    assert response.status_code == 404
    assert AuditEvent.objects.filter(action=AuditAction.DICOM_EXPORT_REFUSED).exists()


@pytest.mark.parametrize("mode", [IdentityMode.RESEARCH, IdentityMode.CLINICAL])
def test_qido_answers_the_patient_id_the_stored_files_carry(admin_api, settings, mode) -> None:
    settings.IDENTITY_MODE = mode
    screen = Study.objects.get(pk=upload(admin_api, films("20240315", 10))["study_id"])
    prior = Study.objects.get(pk=upload(admin_api, films("20220310", 20))["study_id"])
    expected = "PAT-PRIORS-1" if mode == IdentityMode.CLINICAL else screen.woman.pseudonym
    answer = admin_api.get("/dicomweb/studies").json()
    assert sorted(study["00100020"]["Value"][0] for study in answer) == [expected, expected]
    found = admin_api.get("/dicomweb/studies", {"PatientID": expected}).json()
    assert {s["0020000D"]["Value"][0] for s in found} == {
        screen.study_instance_uid,
        prior.study_instance_uid,
    }
    other = "PAT-PRIORS-1" if mode == IdentityMode.RESEARCH else screen.woman.pseudonym
    assert admin_api.get("/dicomweb/studies", {"PatientID": other}).json() == []


def test_a_study_is_a_screen_or_a_prior_never_both_or_neither(admin_api) -> None:
    from django.db import IntegrityError, transaction

    study = Study.objects.get(pk=upload(admin_api, films("20240315", 10))["study_id"])
    with pytest.raises(IntegrityError), transaction.atomic():
        Study.objects.filter(pk=study.pk).update(prior_of=study.case.patient)  # type: ignore[union-attr]
    with pytest.raises(IntegrityError), transaction.atomic():
        Study.objects.create(
            accession_number="ORPHAN", study_date=dt.date(2024, 1, 1), source_format="dicom"
        )
