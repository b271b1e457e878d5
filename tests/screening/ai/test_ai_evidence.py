"""The AI shows only what its version's evidence supports (issue 12).

A version not validated for triage does not order the worklist, its score is greyed with
the reason, it suggests nothing; heatmaps and region marks appear only where their tests
passed. Pages, API, heatmap files and the DICOM SR all follow the same evidence.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from screening.ai import actions as ai_actions
from screening.choices import AuditAction
from screening.models import (
    AI_CAPTION_NOT_VALIDATED,
    AI_NOT_VALIDATED,
    AIResult,
    AuditEvent,
    Case,
    Image,
    ModelVersion,
)
from screening.reading import queries as reading_queries
from tests.factories import (
    ModelVersionFactory,
    case_with_images,
    dicom_case_with_images,
    score_case,
    unvalidated_evidence,
    validated_evidence,
)
from tests.screening.interop.test_dicom_export import code, descendants, read

MARKS = [
    {"row": 20, "col": 12, "radius": 6, "score": 0.81},
    {"row": 40, "col": 30, "radius": 5, "score": 0.4},
]


def scored_evidence() -> dict:
    """Validated, with exam-score deciles and a calibration, as ml.evaluate writes them."""
    evidence = validated_evidence(0.5)
    evidence["exam_score"] = {"normal_films": 100, "cuts": [0.1 * i for i in range(1, 10)]}
    evidence["calibration"] = {
        "method": "isotonic",
        "fitted_on": "validation",
        "films": 200,
        "scores": [0.0, 0.5, 1.0],
        "probabilities": [0.02, 0.1, 0.6],
    }
    return evidence


def case_scored_by(version: ModelVersion, score: float, hours_ago: float, **kwargs) -> Case:
    case = case_with_images(**kwargs)
    score_case(case, score, version)
    Case.objects.filter(pk=case.pk).update(
        received_at=timezone.now() - dt.timedelta(hours=hours_ago)
    )
    AIResult.objects.filter(case=case, image__isnull=False).update(marks=MARKS)
    return Case.objects.get(pk=case.pk)


@pytest.fixture
def unvalidated(db) -> ModelVersion:
    return ModelVersionFactory(is_active=True, evidence=unvalidated_evidence())


@pytest.fixture
def validated(db) -> ModelVersion:
    return ModelVersionFactory(is_active=True, evidence=scored_evidence())


def test_an_unvalidated_version_leaves_the_worklist_in_waiting_order(
    client, radiologist, unvalidated
):
    high_new = case_scored_by(unvalidated, 0.97, hours_ago=1)
    low_old = case_scored_by(unvalidated, 0.2, hours_ago=9)
    mid = case_scored_by(unvalidated, 0.6, hours_ago=4)
    assert [c.pk for c in reading_queries.worklist(radiologist)] == [
        low_old.pk,
        mid.pk,
        high_new.pk,
    ]
    client.force_login(radiologist)
    page = client.get(reverse("worklist")).content.decode()
    assert "Longest waiting first" in page and "not validated for triage" in page
    assert "AI not validated" in page and "band-unvalidated" in page
    assert "0.97" not in page and "/10 ·" not in page and "band-high" not in page
    api = client.get(reverse("api-case-list")).json()
    assert [row["id"] for row in api["results"]] == [low_old.pk, mid.pk, high_new.pk]
    assert not any(row["ai_orders_worklist"] for row in api["results"])


def test_a_validated_version_orders_by_risk_and_shows_exam_score_and_band(
    client, radiologist, validated
):
    low_old = case_scored_by(validated, 0.2, hours_ago=9)
    high_new = case_scored_by(validated, 0.97, hours_ago=1)
    assert [c.pk for c in reading_queries.worklist(radiologist)] == [high_new.pk, low_old.pk]
    client.force_login(radiologist)
    page = client.get(reverse("worklist")).content.decode()
    assert "Highest AI risk first" in page
    assert "10/10 · High" in page and "3/10 · Low" in page
    case_page = client.get(reverse("case-detail", args=[high_new.pk])).content.decode()
    assert 'id="accept-ai"' in case_page and "suggests" in case_page
    assert "Estimated chance of an abnormal finding (benign or malignant): 57 %" in case_page
    assert "high: 70 % of validation cancers score here, 10 % of normals" in case_page


def test_an_unvalidated_case_page_suggests_nothing_and_hides_heatmaps_and_marks(
    client, radiologist, unvalidated
):
    case = case_scored_by(unvalidated, 0.97, hours_ago=1)
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert AI_NOT_VALIDATED in page and "no score, band, probability or recall suggestion" in page
    assert 'id="accept-ai"' not in page and 'id="record-read"' in page
    assert 'class="heatmap"' not in page and '<svg class="marks"' not in page
    assert "Heatmaps hidden: On 30 films with a lesion" in page and "Not met:" in page
    assert "Region marks hidden:" in page
    assert "Film AUC 0.61 (95 % CI 0.45–0.77)" in page.replace("film AUC", "Film AUC")
    result = AIResult.objects.filter(case=case, image__isnull=False).first()
    assert result is not None
    assert client.get(reverse("heatmap-file", args=[result.pk])).status_code == 404
    panel = client.get(reverse("case-ai-panel", args=[case.pk])).json()
    assert all(
        image["heatmap"] == "" and image["marks"] == "" for image in panel["images"].values()
    )
    assert all(image["caption"] == AI_CAPTION_NOT_VALIDATED for image in panel["images"].values())


def test_a_validated_case_page_draws_the_marks_and_the_heatmap(client, radiologist, validated):
    case = case_scored_by(validated, 0.9, hours_ago=1)
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert page.count('class="heatmap"') == 2
    assert page.count('<circle cx="12" cy="20" r="6"/>') == 2 and ">0.81</text>" in page
    result = AIResult.objects.filter(case=case, image__isnull=False).first()
    assert result is not None
    assert client.get(reverse("heatmap-file", args=[result.pk])).status_code == 200
    panel = client.get(reverse("case-ai-panel", args=[case.pk])).json()
    assert all("<circle" in image["marks"] for image in panel["images"].values())


def test_the_api_carries_scores_evidence_and_hides_what_failed(api, radiologist, validated):
    unvalidated = ModelVersionFactory(evidence=unvalidated_evidence())
    shown = case_scored_by(validated, 0.9, hours_ago=1)
    hidden = case_scored_by(unvalidated, 0.9, hours_ago=2)
    api.force_authenticate(radiologist)
    good = api.get(reverse("api-case-detail", args=[shown.pk])).json()
    image_result = good["studies"][0]["images"][0]["ai_result"]
    assert image_result["exam_score"] == 10 and image_result["band"] == "high"
    assert image_result["calibrated_probability"] == pytest.approx(0.5)
    assert image_result["validated_for_triage"] is True
    assert image_result["marks"] == MARKS and image_result["heatmap_url"]
    assert image_result["hidden"] == {}
    bad = api.get(reverse("api-case-detail", args=[hidden.pk])).json()
    image_result = bad["studies"][0]["images"][0]["ai_result"]
    assert image_result["validated_for_triage"] is False
    assert "lower bound is not above 0.50" in image_result["triage_evidence"]
    assert image_result["heatmap_url"] is None and image_result["marks"] == []
    assert set(image_result["hidden"]) == {"heatmap", "marks"}
    result = AIResult.objects.filter(case=hidden, image__isnull=False).first()
    assert result is not None
    assert api.get(reverse("api-heatmap-file", args=[result.pk])).status_code == 404


def test_the_sr_sends_marks_as_circles_and_says_whether_the_version_is_validated(
    client, radiologist, validated
):
    case = dicom_case_with_images(images=2)
    score_case(case, 0.9, validated)
    AIResult.objects.filter(case=case, image__isnull=False).update(marks=MARKS)
    study = case.studies.get()
    client.force_login(radiologist)
    sr = read(client.get(reverse("study-ai-report", args=[study.pk])))
    items = descendants(sr)
    circles = [i for i in items if i.ValueType == "SCOORD" and i.GraphicType == "CIRCLE"]
    assert len(circles) == 4  # two marks on each of two images
    assert [float(v) for v in circles[0].GraphicData] == [12.0, 20.0, 18.0, 20.0]
    valid = next(i for i in items if code(i) == "TRIAGEVALID")
    assert valid.ConceptCodeSequence[0].CodeMeaning == "Yes"
    assert (
        next(i for i in items if code(i) == "RISKBAND").ConceptCodeSequence[0].CodeValue == "HIGH"
    )
    exam = [i for i in items if code(i) == "EXAMSCORE"]
    assert exam and float(exam[0].MeasuredValueSequence[0].NumericValue) == 10


def test_an_unvalidated_sr_has_no_band_and_no_marks(client, radiologist, unvalidated):
    case = dicom_case_with_images(images=1)
    score_case(case, 0.9, unvalidated)
    AIResult.objects.filter(case=case, image__isnull=False).update(marks=MARKS)
    client.force_login(radiologist)
    sr = read(client.get(reverse("study-ai-report", args=[case.studies.get().pk])))
    items = descendants(sr)
    assert not [i for i in items if i.ValueType == "SCOORD"]
    assert not [i for i in items if code(i) == "RISKBAND"]
    valid = next(i for i in items if code(i) == "TRIAGEVALID")
    assert valid.ConceptCodeSequence[0].CodeMeaning == "No"


def test_activation_shows_the_evidence_before_anything_changes(client, admin_user, unvalidated):
    candidate = ModelVersionFactory(evidence=unvalidated_evidence())
    client.force_login(admin_user)
    page = client.get(reverse("model-activate", args=[candidate.pk])).content.decode()
    assert "Not validated for triage" in page and "Heatmaps" in page and "confirm-activate" in page
    candidate.refresh_from_db()
    assert not candidate.is_active
    client.post(reverse("model-activate", args=[candidate.pk]))
    candidate.refresh_from_db()
    assert candidate.is_active
    listing = client.get(reverse("model-versions")).content.decode()
    assert "0.61 (0.45–0.77)" in listing and "not validated" in listing


def test_the_auditor_page_says_the_version_is_not_validated(client, auditor, unvalidated):
    case_scored_by(unvalidated, 0.9, hours_ago=1)
    client.force_login(auditor)
    page = client.get(reverse("audit-dashboard")).content.decode()
    assert 'id="not-validated"' in page and "not validated for triage" in page


def test_reregistering_with_new_evidence_reorders_its_cases_and_is_audited(
    db, tiny_artifact, tmp_path, radiologist, settings
):
    settings.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE = False  # a site that lets the manifest decide
    artifact = Path(shutil.copytree(tiny_artifact, tmp_path / "artifact"))
    version = ai_actions.register_model_version(None, str(artifact), activate=True)
    assert not version.validated_for_triage  # the tiny test artifact has no evidence
    old = case_scored_by(version, 0.2, hours_ago=9)
    new = case_scored_by(version, 0.9, hours_ago=1)
    assert [c.pk for c in reading_queries.worklist(radiologist)] == [old.pk, new.pk]
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["evidence"] = validated_evidence(manifest["threshold"])
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    version = ai_actions.register_model_version(None, str(artifact))
    assert version.validated_for_triage
    assert [c.pk for c in reading_queries.worklist(radiologist)] == [new.pk, old.pk]
    events = AuditEvent.objects.filter(action=AuditAction.MODEL_EVIDENCE_LOADED)
    assert [e.detail["validated_for_triage"] for e in events.order_by("pk")] == [False, True]


def test_marks_are_drawn_in_the_stored_images_pixels(client, radiologist, validated):
    case = case_scored_by(validated, 0.9, hours_ago=1)
    image = Image.objects.filter(study__case=case).first()
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert image is not None
    assert f'viewBox="0 0 {image.width} {image.height}"' in page


def test_the_pipeline_stores_region_marks_in_the_stored_images_pixels(admin_user, active_model):
    from screening.ai import inference
    from tests.screening.ai.test_inference import upload

    study = upload(admin_user)
    inference.score_study(study.pk, active_model.pk, task_id="t1")
    for result in AIResult.objects.filter(image__study=study).select_related("image"):
        assert result.image is not None
        assert isinstance(result.marks, list) and len(result.marks) <= 3
        for mark in result.marks:
            assert set(mark) == {"row", "col", "radius", "score"}
            assert 0 <= mark["row"] < result.image.height and 0 <= mark["col"] < result.image.width
            assert 0.0 <= mark["score"] <= 1.0
    assert any(r.marks for r in AIResult.objects.filter(image__study=study))
    # the tiny test artifact carries no evidence: its marks are stored but never shown
    assert all(r.shown_marks == [] for r in AIResult.objects.filter(image__study=study))
