"""An AI version not validated for triage shows nothing that looks like a ranking (issue 21).

No exam score, band, band filter, calibrated probability, recall suggestion or AI decision
on the worklist, the case page, the film captions, the API, the case CSV or the DICOM SR:
the plain statement instead. Auditors keep the raw score, labelled as research only. A
calibrated probability appears only where its calibration was fitted on validation films,
and the SR calls it "Probability of cancer" only for a version trained on cancers.

"Shipped-like" is the evidence of the model that ships, read from its manifest, with
exam-score deciles, bands and a calibration fitted on validation films made sure of: all
there, and none of it may show.
"""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from django.conf import settings
from django.urls import reverse

from screening.ai import actions as ai_actions
from screening.audit import reporting
from screening.choices import RiskBand
from screening.models import (
    AI_BELOW_BAR,
    AI_CAPTION_NOT_VALIDATED,
    AI_NOT_TESTED,
    AI_NOT_VALIDATED,
    RAW_SCORE_LABEL,
    AIResult,
    Case,
    ModelVersion,
)
from tests.factories import (
    ModelVersionFactory,
    dicom_case_with_images,
    heatmap_figures,
    score_case,
    screen,
    validated_evidence,
)
from tests.screening.ai.test_ai_evidence import case_scored_by, scored_evidence
from tests.screening.interop.test_dicom_export import (
    ABNORMAL_LIKELIHOOD,
    COMMENT,
    PROBABILITY_OF_CANCER,
    code,
    descendants,
    malignant_evidence,
    read,
)

R, N = True, False
# An exam score in the text of a page ("10/10"), not in its URLs (/cases/10/).
EXAM_SCORE_TEXT = re.compile(r">[^<]*\b\d+\s*/\s*10\b[^<]*<")
RANKING_FIELDS = ("probability", "exam_score", "calibrated_probability", "band")


def shipped_evidence() -> dict:
    """The evidence block of the model that ships (not validated for triage)."""
    manifest = settings.DEFAULT_MODEL_ARTIFACT / "manifest.json"
    return json.loads(manifest.read_text())["evidence"]


def shipped_like_evidence() -> dict:
    """The shipped model's evidence with every figure a validated version would show
    present and usable — exam-score deciles, bands, a calibration fitted on validation
    films — taken from a validated fixture where the manifest lacks them: none of it may
    show while triage is not validated."""
    evidence = shipped_evidence()
    full = scored_evidence()
    for part in ("exam_score", "bands", "calibration"):
        evidence[part] = {**full[part], **evidence.get(part, {})}
    evidence["calibration"]["fitted_on"] = "validation"
    return evidence


@pytest.fixture
def shipped_like(db) -> ModelVersion:
    return ModelVersionFactory(is_active=True, threshold=0.915, evidence=shipped_like_evidence())


@pytest.fixture
def validated(db) -> ModelVersion:
    return ModelVersionFactory(is_active=True, evidence=scored_evidence())


def test_the_shipped_model_is_not_validated_and_says_so_in_plain_words():
    version = ModelVersion(evidence=shipped_evidence())
    assert not version.validated_for_triage
    assert version.not_shown_reason == AI_NOT_VALIDATED
    assert not version.shows_probability and version.target == "abnormal"


def test_deciles_bands_and_a_validation_calibration_do_not_make_it_show_them():
    version = ModelVersion(evidence=shipped_like_evidence())
    assert version.evidence["exam_score"]["cuts"] and version.evidence["bands"]
    assert not version.validated_for_triage and not version.shows_probability
    assert version.exam_scores(np.array([0.99])) is None
    assert version.calibrated_probabilities(np.array([0.99])) is None
    assert version.band_descriptions == []


def test_an_untested_version_and_one_short_of_the_bar_say_so_in_their_own_words(settings):
    settings.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE = False  # the manifest's wording, judged alone
    assert ModelVersion(evidence={}).not_shown_reason == AI_NOT_TESTED
    above_chance = validated_evidence()
    above_chance["film_auc"] |= {"auc": 0.70, "ci95": [0.62, 0.78]}  # above chance, below 0.75
    assert ModelVersion(evidence=above_chance).not_shown_reason == AI_BELOW_BAR
    assert ModelVersion(evidence=validated_evidence()).not_shown_reason == ""


# --------------------------------------------------------------------------- the model


def test_an_unvalidated_result_has_no_exam_score_probability_or_band(shipped_like):
    case = case_scored_by(shipped_like, 0.99, hours_ago=1)
    result = case.ai_result
    assert result is not None and result.probability == pytest.approx(0.99)
    assert result.exam_score is None and result.calibrated_probability is None
    assert result.band == RiskBand.UNVALIDATED and case.risk_band == RiskBand.UNVALIDATED
    assert case.ai_recommends_recall is None and case.band_description == ""
    image_result = AIResult.for_images.filter(case=case).first()
    assert image_result is not None
    assert image_result.caption == AI_CAPTION_NOT_VALIDATED


def test_a_calibration_not_fitted_on_validation_films_gives_no_probability(db):
    evidence = scored_evidence()
    del evidence["calibration"]["fitted_on"]  # as ml.evaluate wrote it before issue 21
    version = ModelVersionFactory(evidence=evidence)
    case = case_scored_by(version, 0.9, hours_ago=1)
    assert case.ai_result is not None
    assert case.ai_result.exam_score == 10 and case.ai_result.calibrated_probability is None


def test_new_evidence_that_withdraws_validation_takes_the_bands_away(db, radiologist, settings):
    settings.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE = False  # a site that lets the manifest decide
    version = ModelVersionFactory(is_active=True, evidence=scored_evidence())
    case = case_scored_by(version, 0.97, hours_ago=1)
    assert case.risk_band == RiskBand.HIGH
    ai_actions.load_model_evidence(None, version, shipped_like_evidence())
    assert Case.objects.get(pk=case.pk).risk_band == RiskBand.UNVALIDATED


# --------------------------------------------------------------------------- pages


def test_the_worklist_shows_no_score_or_band_of_an_unvalidated_version(
    client, radiologist, shipped_like
):
    case_scored_by(shipped_like, 0.99, hours_ago=1)
    case_scored_by(shipped_like, 0.2, hours_ago=3)
    client.force_login(radiologist)
    page = client.get(reverse("worklist")).content.decode()
    assert page.count(">AI not validated</span>") == 2 and AI_NOT_VALIDATED in page
    assert not EXAM_SCORE_TEXT.search(page) and "0.99" not in page and "0.20" not in page
    assert "band-high" not in page and "band-low" not in page


def test_the_worklist_band_filter_is_off_for_an_unvalidated_version(
    client, radiologist, shipped_like
):
    """Before issue 21, ``?band=high`` returned the cases this version called high."""
    high = case_scored_by(shipped_like, 0.99, hours_ago=1)
    low = case_scored_by(shipped_like, 0.2, hours_ago=3)
    client.force_login(radiologist)
    page = client.get(reverse("worklist"), {"band": "high"}).content.decode()
    assert 'name="band"' not in page
    assert f"The risk filter is off. {AI_NOT_VALIDATED}" in page
    assert f'data-case="{high.pk}"' in page and f'data-case="{low.pk}"' in page


def test_the_worklist_band_filter_still_works_for_a_validated_version(
    client, radiologist, validated
):
    high = case_scored_by(validated, 0.97, hours_ago=1)
    low = case_scored_by(validated, 0.2, hours_ago=3)
    client.force_login(radiologist)
    page = client.get(reverse("worklist"), {"band": "high"}).content.decode()
    assert 'name="band"' in page and "The risk filter is off" not in page
    assert f'data-case="{high.pk}"' in page and f'data-case="{low.pk}"' not in page


def test_the_case_page_says_read_as_without_ai(client, radiologist, shipped_like):
    case = case_scored_by(shipped_like, 0.99, hours_ago=1)
    client.force_login(radiologist)
    page = client.get(reverse("case-detail", args=[case.pk])).content.decode()
    assert AI_NOT_VALIDATED in page and f"· {AI_CAPTION_NOT_VALIDATED}" in page
    for shown in ('id="ai-probability"', 'id="ai-band"', 'id="ai-suggests"', 'id="accept-ai"'):
        assert shown not in page
    assert not EXAM_SCORE_TEXT.search(page) and "0.99" not in page
    panel = client.get(reverse("case-ai-panel", args=[case.pk])).json()
    assert {i["caption"] for i in panel["images"].values()} == {AI_CAPTION_NOT_VALIDATED}


# --------------------------------------------------------------------------- API


def test_the_api_nulls_every_ranking_figure_and_says_why(api, radiologist, shipped_like):
    case = case_scored_by(shipped_like, 0.99, hours_ago=1)
    api.force_authenticate(radiologist)
    body = api.get(reverse("api-case-detail", args=[case.pk])).json()
    assert body["ai_score"] is None and body["risk_band"] is None
    assert body["not_shown_reason"] == AI_NOT_VALIDATED
    results = [body["case_ai_result"]] + [
        image["ai_result"] for study in body["studies"] for image in study["images"]
    ]
    assert len(results) == 3
    for result in results:
        assert all(result[field] is None for field in RANKING_FIELDS), result
        assert result["not_shown_reason"] == AI_NOT_VALIDATED
        assert result["validated_for_triage"] is False and result["target"] == "abnormal"
    row = api.get(reverse("api-case-list")).json()["results"][0]
    assert (row["ai_score"], row["risk_band"]) == (None, None)
    assert row["not_shown_reason"] == AI_NOT_VALIDATED


def test_the_api_shows_them_for_a_validated_version(api, radiologist, validated):
    case = case_scored_by(validated, 0.9, hours_ago=1)
    api.force_authenticate(radiologist)
    body = api.get(reverse("api-case-detail", args=[case.pk])).json()
    assert body["ai_score"] == pytest.approx(0.9) and body["risk_band"] == "high"
    assert body["not_shown_reason"] is None
    result = body["case_ai_result"]
    assert result["probability"] == pytest.approx(0.9) and result["exam_score"] == 10
    assert result["band"] == "high" and result["calibrated_probability"] == pytest.approx(0.5)
    assert result["not_shown_reason"] is None


def test_the_api_refuses_a_ranking_band_filter_and_says_why(api, radiologist, shipped_like):
    case_scored_by(shipped_like, 0.99, hours_ago=1)
    api.force_authenticate(radiologist)
    response = api.get(reverse("api-case-list"), {"band": "high"})
    assert response.status_code == 400
    assert response.json()["detail"] == f"The risk filter is off. {AI_NOT_VALIDATED}"
    assert api.get(reverse("api-case-list"), {"band": "pending"}).status_code == 200


def test_the_openapi_schema_says_the_figures_may_be_null_and_why(api, auditor):
    import yaml

    api.force_authenticate(auditor)
    schemas = yaml.safe_load(api.get(reverse("api-schema")).content)["components"]["schemas"]
    result = schemas["AIResult"]["properties"]
    for field in (*RANKING_FIELDS, "not_shown_reason"):
        assert result[field].get("nullable") is True, field
    assert "not validated" in result["not_shown_reason"]["description"]
    summary = schemas["CaseSummary"]["properties"]
    for field in ("ai_score", "risk_band", "not_shown_reason"):
        assert summary[field].get("nullable") is True, field


# --------------------------------------------------------------------------- auditors


def _case_csv(client) -> list[dict[str, str]]:
    content = client.get(reverse("audit-export", args=["cases"])).getvalue().decode()
    return list(csv.DictReader(io.StringIO(content)))


def test_the_case_csv_keeps_only_the_labelled_raw_score(
    client, auditor, radiologist, radiologist2, shipped_like
):
    screen(shipped_like, 0.99, [R, R], [radiologist, radiologist2])
    client.force_login(auditor)
    (row,) = _case_csv(client)
    assert row["ai_score"] == "0.9900" and row["ai_score_note"] == RAW_SCORE_LABEL
    for column in ("ai_exam_score", "ai_calibrated_probability", "ai_decision", "ai_band"):
        assert row[column] == "", column
    assert row["first_decision"] == "recall"


def test_the_case_csv_fills_them_for_a_validated_version(
    client, auditor, radiologist, radiologist2, validated
):
    screen(validated, 0.9, [R, R], [radiologist, radiologist2])
    client.force_login(auditor)
    (row,) = _case_csv(client)
    assert (row["ai_score"], row["ai_score_note"]) == ("0.9000", "")
    assert (row["ai_exam_score"], row["ai_decision"], row["ai_band"]) == ("10", "recall", "high")
    assert row["ai_calibrated_probability"] == "0.5000"


def test_the_auditor_figures_say_they_describe_an_unvalidated_model(
    client, auditor, radiologist, radiologist2, shipped_like
):
    for score, outcome in ((0.95, "malignant"), (0.97, "normal"), (0.99, "malignant")):
        screen(shipped_like, score, [N, N], [radiologist, radiologist2], outcome=outcome)
    client.force_login(auditor)
    page = client.get(reverse("audit-dashboard")).content.decode()
    assert 'alt="ROC curve of the AI score' in page  # drawn, named for the unvalidated model
    assert "<td>AI (unvalidated model)</td>" in page and "<td>AI</td>" not in page
    assert "describes an unvalidated model" in page and RAW_SCORE_LABEL in page
    assert "These describe an unvalidated model" in page
    assert "<dt>Bands</dt>" not in page  # it puts no case in a band
    discordant = client.get(reverse("audit-discordant")).content.decode()
    assert RAW_SCORE_LABEL in discordant and "AI (unvalidated model)" in discordant
    performance = client.get(reverse("audit-export", args=["performance"])).content.decode()
    assert "AI (unvalidated model)" in performance
    assert "unvalidated model</span>" in page  # in the versions compared
    content = client.get(reverse("audit-export", args=["versions"])).content.decode()
    (compared,) = csv.DictReader(io.StringIO(content))
    assert compared["validated_for_triage"] == "no"


def test_the_auditor_figures_of_a_validated_version_are_plain_ai(
    client, auditor, radiologist, radiologist2, validated
):
    screen(validated, 0.9, [N, N], [radiologist, radiologist2])
    client.force_login(auditor)
    page = client.get(reverse("audit-dashboard")).content.decode()
    assert "<td>AI</td>" in page and "unvalidated model" not in page
    assert "<dt>Bands</dt>" in page
    assert reporting.ai_name(validated) == reporting.AI


# --------------------------------------------------------------------------- DICOM SR


def _sr_items(client, version: ModelVersion, score: float = 0.9) -> list:
    case = dicom_case_with_images(images=2)
    score_case(case, score, version)
    study = case.studies.get()
    return descendants(read(client.get(reverse("study-ai-report", args=[study.pk]))))


def _numbers(items: list) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for item in items:
        if item.ValueType == "NUM":
            found.setdefault(code(item), []).append(
                float(item.MeasuredValueSequence[0].NumericValue)
            )
    return found


def test_an_unvalidated_sr_holds_no_score_only_the_statement(client, radiologist, shipped_like):
    client.force_login(radiologist)
    items = _sr_items(client, shipped_like)
    assert _numbers(items) == {}
    assert not [i for i in items if code(i) in ("RISKBAND", "EXAMSCORE")]
    assert [i.TextValue for i in items if code(i) == COMMENT] == [AI_NOT_VALIDATED] * 3
    valid = next(i for i in items if code(i) == "TRIAGEVALID")
    assert valid.ConceptCodeSequence[0].CodeMeaning == "No"


def test_an_abnormal_target_sr_names_its_likelihood_not_cancer(client, radiologist, validated):
    client.force_login(radiologist)
    items = _sr_items(client, validated)
    numbers = _numbers(items)
    assert PROBABILITY_OF_CANCER not in numbers
    assert numbers[ABNORMAL_LIKELIHOOD] == pytest.approx([0.5] * 3)
    assert numbers["EXAMSCORE"] == [10.0] * 3
    meaning = next(i for i in items if code(i) == ABNORMAL_LIKELIHOOD)
    assert meaning.ConceptNameCodeSequence[0].CodeMeaning == (
        "Likelihood of an abnormal finding (benign or malignant)"
    )
    assert not [i for i in items if code(i) == COMMENT]


def test_a_malignancy_target_calibrated_on_validation_films_is_a_probability_of_cancer(
    client, radiologist
):
    client.force_login(radiologist)
    numbers = _numbers(_sr_items(client, ModelVersionFactory(evidence=malignant_evidence())))
    assert numbers[PROBABILITY_OF_CANCER] == pytest.approx([0.45] * 3)  # 0.9 on 0..0.5
    assert ABNORMAL_LIKELIHOOD not in numbers


def test_a_validated_version_without_a_validation_calibration_sends_no_probability(
    client, radiologist
):
    """Before issue 21 the raw score went out as "Probability of cancer"."""
    client.force_login(radiologist)
    evidence = malignant_evidence()
    evidence["calibration"]["fitted_on"] = "test"  # in-sample: the films the AUC is on
    numbers = _numbers(_sr_items(client, ModelVersionFactory(evidence=evidence)))
    assert PROBABILITY_OF_CANCER not in numbers and ABNORMAL_LIKELIHOOD not in numbers


def test_a_heatmap_capture_of_an_unvalidated_version_carries_the_statement_not_the_score(
    client, radiologist
):
    evidence = shipped_like_evidence()
    evidence["heatmap"] = heatmap_figures(trained=20, baseline=4, best_copy=3, correlation=0.1)
    case = dicom_case_with_images(images=1)
    score_case(case, 0.99, ModelVersionFactory(evidence=evidence))
    result = AIResult.for_images.get(case=case)
    client.force_login(radiologist)
    capture = read(client.get(reverse("heatmap-dicom", args=[result.pk])))
    assert capture.ImageComments.startswith(AI_NOT_VALIDATED)
    assert "0.99" not in capture.ImageComments


# --------------------------------------------------------------------------- migration


@pytest.mark.django_db(transaction=True)
def test_the_migration_takes_stored_bands_from_unvalidated_versions_only():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("screening", "0014_read_draft")], [("screening", "0015_unvalidated_band")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    patient = old.get_model("screening", "Patient").objects.create(pseudonym="P-MIGRATE")
    bands = {}
    for name, evidence in (("shipped", shipped_like_evidence()), ("valid", scored_evidence())):
        version = old.get_model("screening", "ModelVersion").objects.create(
            architecture="custom_cnn", version=name, evidence=evidence, threshold=0.5
        )
        case = old.get_model("screening", "Case").objects.create(
            patient=patient, status="ready", ai_score=0.99, risk_band="high"
        )
        result = old.get_model("screening", "AIResult").objects.create(
            model_version=version, case=case, status="done", probability=0.99
        )
        old.get_model("screening", "Case").objects.filter(pk=case.pk).update(ai_result=result)
        bands[name] = case.pk
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    stored = dict(Case.objects.filter(pk__in=bands.values()).values_list("pk", "risk_band"))
    assert stored == {bands["shipped"]: "unvalidated", bands["valid"]: "high"}
    executor = MigrationExecutor(connection)
    executor.migrate(before)  # and back: the band the old code stored (0.99 is above its cut)
    old_case = executor.loader.project_state(before).apps.get_model("screening", "Case")
    assert old_case.objects.get(pk=bands["shipped"]).risk_band == "high"
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    MigrationExecutor(connection).migrate(latest)  # every later migration, for the next tests
