"""The app judges each version's recorded figures against the site's gates (issue 21).

``ModelVersion.validated_for_triage`` / ``shows_heatmaps`` / ``shows_marks`` recompute the
gates from the figures on every ask: a stored "validated" flag is never trusted, a site can
make a gate stricter, and evidence without the figures a gate needs fails it. The models
page shows each gate with its rule, its figures and its verdict.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from ml.artifacts import DEFAULT_ARTIFACT, load_manifest
from ml.evidence import Gates
from screening.models import ModelVersion
from tests.factories import (
    ModelVersionFactory,
    heatmap_figures,
    marks_figures,
    unvalidated_evidence,
    validated_evidence,
)

pytestmark = pytest.mark.django_db


def flags(version: ModelVersion) -> tuple[bool, bool, bool]:
    return version.validated_for_triage, version.shows_heatmaps, version.shows_marks


def test_figures_that_pass_every_gate_let_the_version_show_everything():
    assert flags(ModelVersionFactory(evidence=validated_evidence())) == (True, True, True)


def test_a_stored_passed_flag_over_failing_figures_shows_nothing():
    evidence = unvalidated_evidence()
    evidence["triage"]["validated"] = True
    evidence["heatmap"]["passed"] = True
    evidence["marks"]["passed"] = True
    assert flags(ModelVersionFactory(evidence=evidence)) == (False, False, False)


def test_evidence_measured_before_the_gates_shows_nothing():
    old = {
        "schema": 1,
        "film_auc": {"auc": 0.9, "ci95": [0.85, 0.95], "films": 400, "women": 200, "method": "-"},
        "triage": {"validated": True, "reason": "stored"},
        "heatmap": {"passed": True, "reason": "stored"},
        "marks": {"passed": True, "reason": "stored"},
    }
    version = ModelVersionFactory(evidence=old)
    assert flags(version) == (False, False, False)
    assert "measured before this rule" in version.triage_reason
    assert "measured before this rule" in version.heatmap_reason


@pytest.mark.parametrize(
    "change",
    [
        {"triage_min_auc": 0.9},
        {"triage_min_auc_lower": 0.8},
        {"triage_min_abnormal_films": 200},
    ],
)
def test_a_site_can_make_the_triage_gate_stricter(settings, change):
    version = ModelVersionFactory(evidence=validated_evidence())
    assert version.validated_for_triage
    settings.AI_GATES = Gates(**change)
    assert not version.validated_for_triage
    assert version.shows_heatmaps and version.shows_marks


def test_a_site_can_make_the_heatmap_and_marks_gates_stricter(settings):
    evidence = validated_evidence()
    evidence["heatmap"] = heatmap_figures(trained=12, baseline=4, best_copy=3, correlation=0.3)
    evidence["marks"] = marks_figures(model=20, baseline=14)  # 6 lesions to none: p = 0.016
    version = ModelVersionFactory(evidence=evidence)
    assert version.shows_heatmaps and version.shows_marks
    settings.AI_GATES = Gates(max_p=0.005, heatmap_max_median_correlation=0.2)
    assert not version.shows_heatmaps and not version.shows_marks
    assert version.validated_for_triage


def test_the_shipped_model_fails_every_gate_on_its_recorded_figures():
    evidence = load_manifest(DEFAULT_ARTIFACT).evidence
    version = ModelVersionFactory(evidence=evidence)
    assert flags(version) == (False, False, False)
    # judged on its figures, not for want of them
    for reason in (version.triage_reason, version.heatmap_reason, version.marks_reason):
        assert "Not met:" in reason and "measured before this rule" not in reason


def test_the_models_page_shows_each_gate_with_rule_figures_and_verdict(client, auditor):
    good = ModelVersionFactory(evidence=validated_evidence(), is_active=True)
    bad = ModelVersionFactory(evidence=unvalidated_evidence())
    client.force_login(auditor)
    page = client.get(reverse("model-versions")).content.decode()
    for version in (good, bad):
        assert f'id="gates-{version.pk}"' in page
    assert page.count('class="gate gate-passed"') == 3
    assert page.count('class="gate gate-failed"') == 3
    assert "Film AUC at least 0.75 and its 95 % lower bound above 0.50, on at least 30" in page
    assert "At least 10 copies of the network with random weights" in page
    assert "Film AUC 0.61 (95 % CI 0.45–0.77) on 50 held-out films of 25 women, 17 of them" in page
    assert "17 abnormal films are too few to tell (30 needed)" in page
    assert "Met: the score may order the worklist." in page
    assert "it is not shown to beat the brightest point of the film" in page


def test_the_models_page_shows_the_sites_stricter_rule(client, auditor, settings):
    settings.AI_GATES = Gates(triage_min_auc=0.9, triage_min_abnormal_films=150)
    version = ModelVersionFactory(evidence=validated_evidence(), is_active=True)
    client.force_login(auditor)
    page = client.get(reverse("model-versions")).content.decode()
    assert "Film AUC at least 0.90" in page and "on at least 150 abnormal films" in page
    assert "the AUC is below 0.90; 120 abnormal films are too few to tell (150 needed)" in page
    assert not version.validated_for_triage


def test_re_registering_after_a_site_tightens_a_gate_puts_its_cases_in_waiting_order(
    tiny_artifact, tmp_path, radiologist, settings
):
    settings.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE = False  # a site that lets the manifest decide
    import json
    import shutil
    from pathlib import Path

    from screening.ai import actions as ai_actions
    from screening.reading import queries as reading_queries
    from tests.screening.ai.test_ai_evidence import case_scored_by

    artifact = Path(shutil.copytree(tiny_artifact, tmp_path / "artifact"))
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["evidence"] = validated_evidence(manifest["threshold"])
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    version = ai_actions.register_model_version(None, str(artifact), activate=True)
    old = case_scored_by(version, 0.2, hours_ago=9)
    new = case_scored_by(version, 0.9, hours_ago=1)
    assert [c.pk for c in reading_queries.worklist(radiologist)] == [new.pk, old.pk]
    settings.AI_GATES = Gates(triage_min_auc=0.9)  # the site restarts with a stricter gate
    ai_actions.register_model_version(None, str(artifact))  # as scripts/run does at start
    assert [c.pk for c in reading_queries.worklist(radiologist)] == [old.pk, new.pk]
    settings.AI_GATES = Gates()
    assert ai_actions.rekey_under_site_gates(version) == 2
    assert [c.pk for c in reading_queries.worklist(radiologist)] == [new.pk, old.pk]
    assert ai_actions.rekey_under_site_gates(version) == 0  # nothing on the wrong side


def test_the_api_lists_each_versions_gates_judged_under_the_sites_settings(api, auditor, settings):
    good = ModelVersionFactory(evidence=validated_evidence())
    bad = ModelVersionFactory(evidence=unvalidated_evidence())
    api.force_authenticate(auditor)
    rows = {row["id"]: row for row in api.get("/api/model-versions/").json()["results"]}
    assert [g["passed"] for g in rows[good.pk]["gates"]] == [True, True, True]
    assert rows[good.pk]["shows_heatmaps"] is True and rows[good.pk]["shows_marks"] is True
    triage = rows[bad.pk]["gates"][0]
    assert triage["name"].startswith("Triage") and triage["passed"] is False
    assert "17 abnormal films are too few to tell" in triage["reason"]
    assert "17 of them abnormal" in triage["figures"] and "at least 30" in triage["rule"]
    assert rows[bad.pk]["validated_for_triage"] is False
    settings.AI_GATES = Gates(triage_min_auc=0.9)
    row = next(r for r in api.get("/api/model-versions/").json()["results"] if r["id"] == good.pk)
    assert row["validated_for_triage"] is False and not row["gates"][0]["passed"]
