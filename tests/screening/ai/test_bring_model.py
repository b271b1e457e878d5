"""Bringing a model built elsewhere: registered only when its manifest and file agree,
audited either way, unvalidated without evidence, and scored by the worker's predictor."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ml.artifacts import sha256_file
from screening import errors
from screening.ai import actions as ai_actions
from screening.ai import inference
from screening.choices import AIStatus, Architecture, AuditAction, AuditOutcome
from screening.models import AIResult, AuditEvent, Case, ModelVersion
from tests.conftest import login
from tests.screening.ai.test_inference import upload


@pytest.fixture
def brought(external_artifact: Path, tmp_path: Path) -> Path:
    """A copy of the brought artifact each test may spoil."""
    copy = tmp_path / "brought"
    shutil.copytree(external_artifact, copy)
    return copy


def edit_manifest(artifact: Path, **fields: object) -> None:
    path = artifact / "manifest.json"
    data = json.loads(path.read_text())
    for key, value in fields.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_a_brought_model_is_registered_with_its_claims_and_starts_unvalidated(
    db, admin_user, brought
):
    version = ai_actions.register_model_version(admin_user, str(brought))
    assert version.architecture == Architecture.EXTERNAL and version.input_size == 48
    assert version.checksum == sha256_file(brought / "model.keras")
    assert version.target == "malignant"
    assert version.manifest["preprocessing"]["method"] == "scale_-1_1"
    assert version.excluded_subjects == {"P-ACC-T1", "P-ACC-T2", "P-ACC-C1"}
    assert version.evidence == {} and not version.validated_for_triage
    assert not version.shows_heatmaps and not version.shows_marks


def test_registering_is_audited_with_who_and_the_checksum(db, admin_user, brought):
    version = ai_actions.register_model_version(admin_user, str(brought))
    event = AuditEvent.objects.get(action=AuditAction.MODEL_REGISTERED)
    assert event.actor == admin_user and event.object_id == str(version.pk)
    assert event.detail["checksum"] == version.checksum
    assert event.detail["target"] == "malignant" and event.detail["evidence_claimed"] is False
    ai_actions.register_model_version(admin_user, str(brought))  # as scripts/run does at start
    assert AuditEvent.objects.filter(action=AuditAction.MODEL_REGISTERED).count() == 1


def test_a_brought_model_scores_a_real_film_through_the_worker(db, admin_user, brought):
    version = ai_actions.register_model_version(admin_user, str(brought), activate=True)
    inference._predictors.clear()
    study = upload(admin_user, accession="BRING-1", seeds=(3,))
    outcome = inference.score_study(study.pk, version.pk, task_id="t-bring")
    assert (outcome.scored, outcome.failed) == (1, 0)
    result = AIResult.objects.get(image__study=study)
    assert result.status == AIStatus.DONE and result.model_version == version
    assert result.probability is not None
    assert 0.0 <= result.probability <= 1.0 and result.heatmap
    predictor = inference.predictor_for(version)
    assert predictor.method == "scale_-1_1" and predictor.whole_image.patch_size == 96
    assert study.case_id is not None
    case = Case.objects.get(pk=study.case_id)
    assert case.ai_result is not None
    assert case.ai_result.model_version == version
    assert case.triage_priority < 0  # unvalidated: the worklist keeps waiting order


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input_size": ...}, "'input_size'"),
        ({"preprocessing": {"method": "imagenet_torch"}}, "'preprocessing.method'"),
        ({"target": "cancer"}, "'target'"),
        ({"input_size": 64}, r"model file takes input \(None, 48, 48, 3\)"),
        ({"sha256": "f" * 64}, "checksum mismatch"),
        ({"training_data": {"subjects": "everyone"}}, "'training_data.subjects'"),
    ],
)
def test_a_bad_artifact_is_refused_by_name_and_the_refusal_audited(
    db, admin_user, brought, fields, message
):
    edit_manifest(brought, **fields)
    with pytest.raises(errors.DomainError, match=message):
        ai_actions.register_model_version(admin_user, str(brought))
    assert not ModelVersion.objects.exists()
    event = AuditEvent.objects.get(action=AuditAction.MODEL_REFUSED)
    assert event.outcome == AuditOutcome.FAILURE and event.actor == admin_user
    assert event.detail["checksum"] == sha256_file(brought / "model.keras")
    assert re.search(message, event.detail["reason"])


def test_a_model_file_changed_after_its_manifest_was_written_is_refused(db, brought):
    with open(brought / "model.keras", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(errors.DomainError, match="checksum mismatch"):
        ai_actions.register_model_version(None, str(brought))


def test_the_same_name_with_another_file_is_refused_and_audited(db, admin_user, brought, tmp_path):
    first = ai_actions.register_model_version(admin_user, str(brought))
    other = tmp_path / "other"
    shutil.copytree(brought, other)
    with zipfile.ZipFile(other / "model.keras", "a") as archive:
        archive.writestr("note.txt", "a retrained file under the same version name")
    edit_manifest(other, sha256=sha256_file(other / "model.keras"))
    with pytest.raises(errors.Conflict, match="already registered with checksum"):
        ai_actions.register_model_version(admin_user, str(other))
    assert ModelVersion.objects.get() == first
    refused = AuditEvent.objects.get(action=AuditAction.MODEL_REFUSED)
    assert refused.detail["checksum"] == sha256_file(other / "model.keras") != first.checksum


def test_an_amended_manifest_for_the_same_file_updates_the_claims(db, admin_user, brought):
    ai_actions.register_model_version(admin_user, str(brought))
    edit_manifest(brought, calibration={"subjects": ["P-ACC-C1", "P-ACC-C2"]})
    version = ai_actions.register_model_version(admin_user, str(brought))
    assert "P-ACC-C2" in version.excluded_subjects
    amended = AuditEvent.objects.filter(action=AuditAction.MODEL_REGISTERED).order_by("pk").last()
    assert amended is not None and amended.detail["amended"] is True


def test_the_command_registers_as_the_named_account_after_a_trial_score(db, admin_user, brought):
    out = StringIO()
    call_command("register_model", str(brought), "--by", admin_user.username, "--try", stdout=out)
    assert "Trial score of a blank film: 0." in out.getvalue()
    assert "not validated; target malignant" in out.getvalue()
    event = AuditEvent.objects.get(action=AuditAction.MODEL_REGISTERED)
    assert event.actor == admin_user


def test_the_command_without_an_account_records_the_shell_user(db, brought):
    call_command("register_model", str(brought), stdout=StringIO())
    event = AuditEvent.objects.get(action=AuditAction.MODEL_REGISTERED)
    assert event.actor is None and event.actor_name.startswith("shell:")


def test_the_command_refuses_a_bad_manifest_with_the_field(db, brought):
    edit_manifest(brought, target="cancer")
    with pytest.raises(CommandError, match="manifest field 'target'"):
        call_command("register_model", str(brought), stdout=StringIO())


def test_the_trial_refuses_a_model_keras_cannot_rebuild(db, brought):
    """A vendor's custom layer this installation lacks: the archive's shapes pass, loading fails."""
    model_file = brought / "model.keras"
    with zipfile.ZipFile(model_file) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(parts["config.json"])
    conv = next(x for x in config["config"]["layers"] if x["class_name"] == "Conv2D")
    conv.update(module="acme.layers", class_name="AcmeConv2D", registered_name="acme>AcmeConv2D")
    parts["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(model_file, "w") as archive:
        for name, content in parts.items():
            archive.writestr(name, content)
    edit_manifest(brought, sha256=sha256_file(model_file))
    ai_actions.check_artifact(str(brought))  # nothing a reading of the archive can see
    with pytest.raises(CommandError, match="Trial refused: Model artifact unusable: cannot load"):
        call_command("register_model", str(brought), "--try", stdout=StringIO())
    assert not ModelVersion.objects.exists()


def test_the_dry_run_refuses_before_loading_anything(db, brought):
    manifest = json.loads((brought / "manifest.json").read_text())
    manifest["preprocessing"]["gradcam_layer"] = "conv4"  # copied from a seed manifest
    edit_manifest(brought, preprocessing=manifest["preprocessing"])
    with pytest.raises(CommandError, match="'preprocessing.gradcam_layer' names 'conv4'"):
        call_command("register_model", str(brought), "--try", stdout=StringIO())
    assert not AuditEvent.objects.filter(action=AuditAction.MODEL_REGISTERED).exists()


def test_the_models_page_shows_what_each_manifest_claims(client, admin_user, brought):
    version = ai_actions.register_model_version(admin_user, str(brought))
    login(client, admin_user)
    html = client.get("/models/").content.decode()
    row = html[html.index(f'id="claims-{version.pk}"') :]
    row = row[: row.index("</tr>")]
    for text in (
        "Brought-in model",
        "malignant",
        "48 px",
        "scale_-1_1",
        "Acme screening archive",
        "2 women",
        "1 woman",
        "none",
        admin_user.username,
    ):
        assert text in row, text
