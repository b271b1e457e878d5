"""The shipped model's local figures on real films (issue 25, point 6).

mini-MIAS imported as the README does it (one case per woman, her two films, the outcome the
annotations give: malignant where a film has a malignant abnormality, else benign, else
normal), scored by the worker's own code, then judged by the local validation page. Its
manifest names the 104 women it was trained and calibrated on; the other 25 are the ones
``ml.evaluate`` measured it on, and the page must agree with ``ml`` on them:

- film level: each film's score in the app is the score ``ml.evaluation.film_scores`` gives
  the same file, so the films' AUC (abnormal versus normal, the model's target) is the one
  ``ml.evaluate`` recorded in the manifest's evidence;
- case level (what the page measures): per woman the highest of her films' scores from ``ml``
  against whether she has cancer gives the page's exam AUC.

Slow: it imports 27 women and runs the real model on their films twice (the worker's path
and ``ml``'s): 146 s on the shared 2-core machine under load, most of it the import.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse
from sklearn.metrics import roc_auc_score

from ml.config import mias_pseudonym
from ml.data import read_mias, to_target
from ml.evaluation import film_scores
from ml.predictor import Predictor
from screening.ai import actions as ai_actions
from screening.ai import inference
from screening.audit import local_validation, triage_switch
from screening.choices import AIStatus, Outcome, Role
from screening.errors import DomainError
from screening.models import AIResult, Case, Study
from tests.conftest import SHARED, login
from tests.factories import UserFactory, present

pytestmark = pytest.mark.slow

MIAS = SHARED / "data" / "mini-mias"
TRAINED = (1, 2)  # a calibration woman and a training woman, imported to be left out


def _folder_of(women: set[int], to: Path) -> Path:
    """A mini-MIAS folder holding only these women's films (links to the shared files)."""
    (to / "images").mkdir(parents=True)
    with (MIAS / "labels.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [r for r in reader if (int(r["refnum"][3:6]) + 1) // 2 in women]
        fields = reader.fieldnames
    with (to / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields or [])
        writer.writeheader()
        writer.writerows(rows)
    for name in {r["png"] for r in rows}:
        (to / "images" / name).symlink_to(MIAS / "images" / name)
    return to


@pytest.fixture
def shipped(db, tmp_path, admin_user, settings):
    if not (MIAS / "labels.csv").exists():
        pytest.skip(f"mini-MIAS is not at {MIAS} (set MAMMO_SHARED_DIR)")
    artifact = Path(settings.DEFAULT_MODEL_ARTIFACT)
    version = ai_actions.register_model_version(None, str(artifact), activate=True)
    named = version.excluded_subjects
    held_out = {p for p in range(1, 162) if mias_pseudonym(p) not in named}
    women = {f.patient for f in read_mias(MIAS)}
    held_out &= women
    folder = _folder_of(held_out | set(TRAINED), tmp_path / "mini-mias")
    call_command("import_studies", str(folder), "--mini-mias", "--as-user", "admin1")
    for study in Study.objects.all():
        ai_actions.request_inference(study)
        assert inference.score_study(study.pk, version.pk).failed == 0
    return version, artifact, held_out


def test_the_shipped_model_is_measured_on_the_women_it_was_not_trained_on(shipped, client):
    version, artifact, held_out = shipped
    films = [f for f in read_mias(MIAS) if f.patient in held_out]
    ml_scores, _, _ = film_scores(Predictor.load(artifact), films)

    # Film level: the app scored each file as ml does, so the films' AUC is ml.evaluate's.
    # a woman's films are uploaded in name order (mdb005 before mdb006), so in pk order
    by_woman: dict[str, list[float]] = {}
    for accession, probability in (
        AIResult.objects.filter(model_version=version, status=AIStatus.DONE, image__isnull=False)
        .order_by("image_id")
        .values_list("image__study__accession_number", "probability")
    ):
        by_woman.setdefault(accession, []).append(present(probability))
    for trained in TRAINED:
        assert len(by_woman.pop(mias_pseudonym(trained))) == 2  # scored, left out below
    assert sum(map(len, by_woman.values())) == len(films)
    app = np.array([by_woman[mias_pseudonym(f.patient)][f.number % 2 == 0] for f in films], float)
    np.testing.assert_allclose(app, ml_scores, atol=1e-4)
    abnormal = to_target([f.label for f in films], "abnormal")
    recorded = version.evidence["film_auc"]
    assert recorded["films"] == len(films) and recorded["women"] == len(held_out)
    assert roc_auc_score(abnormal, app) == pytest.approx(recorded["auc"], abs=0.005)

    # Case level: the page's exam AUC is ml's film scores, highest per woman, against cancer.
    malignant = to_target([f.label for f in films], "malignant")
    women = sorted(held_out)
    patient = np.array([f.patient for f in films])
    per_woman = np.array([ml_scores[patient == w].max() for w in women])
    cancer = np.array([malignant[patient == w].max() for w in women])
    report = local_validation.build(version)
    assert (report.screens, report.women, report.cancers) == (25, 25, int(cancer.sum()))
    assert (report.subjects_named, report.excluded_women, report.excluded_screens) == (104, 2, 2)
    assert report.auc.auc == pytest.approx(roc_auc_score(cancer, per_woman), abs=0.005)
    outcomes = dict(Case.objects.values_list("patient__pseudonym", "outcome"))
    assert [outcomes[mias_pseudonym(w)] == Outcome.MALIGNANT for w in women] == list(cancer == 1)
    print(
        f"\nlocal exam AUC {report.auc.auc:.3f} ({report.auc.ci_method}: "
        f"{report.auc.ci.low if report.auc.ci else None}-"
        f"{report.auc.ci.high if report.auc.ci else None}), {report.screens} screens, "
        f"{report.cancers} cancers; film AUC {roc_auc_score(abnormal, app):.3f}"
    )

    # ... and it stays unvalidated: nine cancers are far too few to switch it on here.
    assert not version.validated_for_triage
    with pytest.raises(DomainError, match="too few"):
        triage_switch.propose(UserFactory(username="prop", role=Role.ADMIN), version.pk)
    auditor = UserFactory(username="aud", role=Role.AUDITOR)
    page = login(client, auditor).get(reverse("audit-local"), {"version": version.pk})
    text = page.content.decode()
    assert page.status_code == 200 and "name 104 women it was trained or calibrated on" in text
