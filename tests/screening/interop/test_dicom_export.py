"""AI results out as DICOM: the SR and the heatmap Secondary Capture, read back with pydicom."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from django.urls import reverse
from pydicom.uid import generate_uid
from rest_framework.authtoken.models import Token

from screening.ai import actions as ai_actions
from screening.ai import inference
from screening.choices import AuditAction, AuditOutcome
from screening.models import AI_NOT_VALIDATED, AuditEvent, Study
from tests.factories import (
    ModelVersionFactory,
    case_with_images,
    dicom_case_with_images,
    score_case,
    validated_evidence,
)
from tests.screening.interop.test_dicomweb import client_for, four_views

PROBABILITY_OF_CANCER = "111047"
ABNORMAL_LIKELIHOOD = "ABNLIKELIHOOD"
COMMENT = "121106"
ALGORITHM_VERSION = "111003"
MEASUREMENT_GROUP = "125007"


def code(item: Any) -> str:
    return item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else ""


def descendants(item: Any) -> list[Any]:
    found = []
    for child in item.get("ContentSequence", []):
        found.append(child)
        found.extend(descendants(child))
    return found


def malignant_evidence() -> dict:
    """A validated version trained on cancers, calibrated on its validation films."""
    evidence = validated_evidence(0.5)
    evidence["target"] = "malignant"
    evidence["calibration"] = {
        "method": "isotonic",
        "fitted_on": "validation",
        "films": 200,
        "scores": [0.0, 1.0],
        "probabilities": [0.0, 0.5],
    }
    return evidence


def measurement_groups(sr: Any, concept: str = PROBABILITY_OF_CANCER) -> list[dict[str, Any]]:
    """Each TID 1501 group: its probability (``concept``; None without one), the instances
    it references, the model version."""
    groups = []
    for group in (i for i in descendants(sr) if code(i) == MEASUREMENT_GROUP):
        children = group.ContentSequence
        scores = [
            float(c.MeasuredValueSequence[0].NumericValue)
            for c in children
            if c.ValueType == "NUM" and code(c) == concept
        ]
        references = {
            c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            for c in children
            if c.ValueType == "IMAGE"
        }
        versions = {c.TextValue for c in descendants(group) if code(c) == ALGORITHM_VERSION}
        groups.append(
            {"score": scores[0] if scores else None, "references": references, "versions": versions}
        )
    return groups


def read(response: Any) -> Any:
    assert response["Content-Type"] == "application/dicom"
    return pydicom.dcmread(
        io.BytesIO(b"".join(response.streaming_content) if response.streaming else response.content)
    )


@pytest.fixture
def scored(db) -> Study:
    case = dicom_case_with_images(images=2)
    score_case(case, 0.73, ModelVersionFactory(evidence=malignant_evidence()))
    return case.studies.get()


def test_the_sr_holds_case_and_image_scores_model_version_and_references(api, radiologist, scored):
    api.force_authenticate(radiologist)
    response = api.get(reverse("api-study-ai-report", args=[scored.pk]))
    assert response.status_code == 200
    assert "ai-report-study-" in response["Content-Disposition"]
    sr = read(response)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.StudyInstanceUID == scored.study_instance_uid
    # The films' patient module: the pseudonym, or in clinical mode her own patient ID.
    clinical = scored.identity_mode == "clinical"
    assert sr.PatientID == (scored.patient_id if clinical else scored.case.patient.pseudonym)
    images = {i.sop_instance_uid: i for i in scored.images.all()}
    groups = measurement_groups(sr)
    case_group = next(g for g in groups if len(g["references"]) == 2)
    image_groups = [g for g in groups if len(g["references"]) == 1]
    version = scored.case.ai_result.model_version.version
    # the calibrated probability (0.73 on a line from 0 to 0.5), never the raw score
    assert case_group["score"] == pytest.approx(scored.case.ai_score / 2)
    assert case_group["references"] == set(images)
    assert {next(iter(g["references"])) for g in image_groups} == set(images)
    for group in image_groups:
        image = images[next(iter(group["references"]))]
        assert group["score"] == pytest.approx(image.ai_results.get().probability / 2)
    assert all(g["versions"] == {version} for g in groups)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    referenced = {i.ReferencedSOPInstanceUID for s in evidence for i in s.ReferencedSOPSequence}
    assert referenced == set(images)
    event = AuditEvent.objects.get(action=AuditAction.DICOM_EXPORTED)
    assert (event.object_type, event.object_id, event.detail["kind"]) == (
        "study",
        str(scored.pk),
        "sr",
    )


def test_downloading_twice_gives_the_same_instance(client, auditor, scored):
    client.force_login(auditor)
    url = reverse("study-ai-report", args=[scored.pk])
    first, second = read(client.get(url)), read(client.get(url))
    assert first.SOPInstanceUID == second.SOPInstanceUID
    assert AuditEvent.objects.filter(action=AuditAction.DICOM_EXPORTED).count() == 2


def test_the_secondary_capture_is_the_image_with_its_heatmap_on_top(client, radiologist, scored):
    image = scored.images.order_by("pk").first()
    result = image.ai_results.get()
    client.force_login(radiologist)
    sc = read(client.get(reverse("heatmap-dicom", args=[result.pk])))
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    assert sc.PhotometricInterpretation == "RGB"
    assert (sc.Rows, sc.Columns) == (image.height, image.width)
    assert sc.StudyInstanceUID == scored.study_instance_uid
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == image.sop_instance_uid
    pixels = sc.pixel_array.astype(int)
    gray = inference.read_pixels(image).astype(int)
    # The factory heatmap is red in one square: red there, the plain image elsewhere.
    assert np.abs(pixels[..., 1] - gray).max() > 50
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 50).any()
    assert np.array_equal(pixels[-1, :, 0], gray[-1])
    event = AuditEvent.objects.get(action=AuditAction.DICOM_EXPORTED)
    assert event.detail["kind"] == "sc" and event.detail["ai_result_id"] == result.pk


def test_a_png_study_has_no_dicom_export_and_the_refusal_is_audited(client, radiologist):
    study = case_with_images(images=1, score=0.5).studies.get()
    client.force_login(radiologist)
    response = client.get(reverse("study-ai-report", args=[study.pk]))
    assert response.status_code == 404
    assert "not uploaded as DICOM" in response.content.decode()
    event = AuditEvent.objects.get(action=AuditAction.DICOM_EXPORT_REFUSED)
    assert event.outcome == AuditOutcome.FAILURE and event.object_id == str(study.pk)


def test_a_study_not_yet_scored_is_a_409(api, auditor):
    study = dicom_case_with_images(images=1).studies.get()
    api.force_authenticate(auditor)
    response = api.get(reverse("api-study-ai-report", args=[study.pk]))
    assert response.status_code == 409
    assert "no finished AI result" in response.json()["detail"]
    assert AuditEvent.objects.filter(action=AuditAction.DICOM_EXPORT_REFUSED).count() == 1


def test_an_unknown_study_is_a_404(api, auditor, db):
    api.force_authenticate(auditor)
    assert api.get(reverse("api-study-ai-report", args=[999999])).status_code == 404


def test_the_case_page_links_the_dicom_downloads(client, radiologist, scored):
    client.force_login(radiologist)
    html = client.get(reverse("case-detail", args=[scored.case_id])).content.decode()
    assert reverse("study-ai-report", args=[scored.pk]) in html
    result = scored.images.first().ai_results.get()
    assert reverse("heatmap-dicom", args=[result.pk]) in html


@pytest.mark.django_db(transaction=True)
def test_round_trip_push_score_with_the_shipped_model_and_read_the_sr_back(
    live_server, admin_user, radiologist, settings
):
    """STOW-RS in, the shipped model scores, the SR comes out with the same scores."""
    datasets = four_views(generate_uid(), seed=60)
    client_for(live_server, admin_user).store_instances(datasets)
    study = Study.objects.get()
    version = ai_actions.register_model_version(
        None, str(settings.DEFAULT_MODEL_ARTIFACT), activate=True
    )
    ai_actions.request_inference(study)
    outcome = inference.score_study(study.pk, version.pk, task_id="round-trip")
    assert (outcome.scored, outcome.failed) == (4, 0)

    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=radiologist).key}"
    session.headers["Connection"] = "close"
    url = live_server.url + reverse("api-study-ai-report", args=[study.pk])
    response = session.get(url, timeout=60)
    assert response.status_code == 200, response.text
    sr = pydicom.dcmread(io.BytesIO(response.content))

    # The shipped model is not validated for triage: its SR holds no score of any kind,
    # only its triage status and the statement a reader sees instead (issue 21).
    assert not version.validated_for_triage
    items = descendants(sr)
    assert not [i for i in items if i.ValueType == "NUM"]
    assert not [i for i in items if code(i) in (PROBABILITY_OF_CANCER, ABNORMAL_LIKELIHOOD)]
    assert "Probability of cancer" not in str(sr)
    statements = [i.TextValue for i in items if code(i) == COMMENT]
    assert statements == [AI_NOT_VALIDATED] * 5  # four images and the case
    groups = measurement_groups(sr)
    assert {next(iter(g["references"])) for g in groups if len(g["references"]) == 1} == {
        i.sop_instance_uid for i in study.images.all()
    }
