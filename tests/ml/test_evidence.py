import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml.artifacts import DEFAULT_ARTIFACT, Manifest, load_manifest, verify_checksum
from ml.evidence import (
    HEATMAP_MAX_RANDOM_RANK_CORRELATION,
    band,
    band_description,
    band_evidence,
    calibrated_probability,
    calibration_evidence,
    exam_score,
    exam_score_evidence,
    film_auc_evidence,
    heatmap_passed,
    heatmap_verdict,
    marks_passed,
    marks_verdict,
    rank_correlation,
    triage_validated,
    triage_verdict,
)
from tests.ml.conftest import needs_mias


def films(n_women: int = 60, separation: float = 0.0, seed: int = 0):  # type: ignore[no-untyped-def]
    """Two films per woman, about a third abnormal; score = noise + separation * label."""
    rng = np.random.default_rng(seed)
    y = (rng.random(2 * n_women) < 0.35).astype(int)
    p = np.clip(rng.normal(0.5, 0.15, 2 * n_women) + separation * y, 0, 1)
    groups = np.repeat(np.arange(n_women), 2)
    return y, p, groups


# --------------------------------------------------------------------------- triage


def test_a_score_that_ranks_perfectly_is_validated_for_triage():
    y, _, groups = films()
    fa = film_auc_evidence(y, y + 0.01 * np.arange(len(y)) / len(y), groups, n_boot=200)
    verdict = triage_verdict(fa)
    assert fa["auc"] == pytest.approx(1.0) and fa["women"] == 60 and fa["films"] == 120
    assert verdict["validated"] is True


def test_a_random_score_is_not_validated_and_the_reason_gives_the_figures():
    y, p, groups = films(separation=0.0)
    fa = film_auc_evidence(y, p, groups, n_boot=200)
    verdict = triage_verdict(fa)
    assert fa["ci95"][0] <= 0.5
    assert verdict["validated"] is False
    assert f"{fa['auc']:.2f}" in verdict["reason"] and "120" in verdict["reason"]


def test_films_used_in_training_never_validate_the_score():
    y, _, groups = films()
    fa = film_auc_evidence(y, y.astype(float), groups, n_boot=50)
    assert triage_verdict(fa, held_out=False)["validated"] is False


# --------------------------------------------------------------------------- scores


def test_exam_score_runs_from_1_to_10_and_never_falls_as_the_score_rises():
    y, p, _ = films(separation=0.2)
    ev = {"exam_score": exam_score_evidence(y, p)}
    assert len(ev["exam_score"]["cuts"]) == 9
    assert ev["exam_score"]["cuts"] == sorted(ev["exam_score"]["cuts"])
    scores = [exam_score(s, ev) for s in np.linspace(-0.1, 1.1, 200)]
    assert scores[0] == 1 and scores[-1] == 10
    assert all(a <= b for a, b in zip(scores, scores[1:], strict=False))


def test_a_tenth_of_normal_films_falls_in_each_exam_score():
    rng = np.random.default_rng(1)
    normals = rng.random(1000)
    ev = {"exam_score": exam_score_evidence(np.zeros(1000, int), normals)}
    counts = np.bincount([exam_score(s, ev) for s in normals], minlength=11)[1:]
    assert np.all(np.abs(counts - 100) <= 2)


def test_calibrated_probability_is_monotone_and_within_0_and_1():
    y, p, _ = films(separation=0.2)
    ev = {"calibration": calibration_evidence(y, p)}
    cal = ev["calibration"]
    assert cal["method"] == "isotonic" and len(cal["scores"]) == len(cal["probabilities"])
    probs = [calibrated_probability(s, ev) for s in np.linspace(-0.5, 1.5, 300)]
    assert all(0.0 <= q <= 1.0 for q in probs)
    assert all(a <= b + 1e-12 for a, b in zip(probs, probs[1:], strict=False))
    assert probs[-1] > probs[0]


def test_bands_are_ordered_and_meet_their_validation_targets():
    y, p, _ = films(separation=0.3)
    b = band_evidence(y, p)
    assert b["intermediate_from"] <= b["high_from"]
    assert b["intermediate"]["sensitivity"] >= 0.9
    assert b["high"]["specificity"] >= 0.9
    ev = {"bands": b}
    order = {"low": 0, "intermediate": 1, "high": 2}
    seen = [order[band(s, ev)] for s in np.linspace(0, 1, 200)]
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == 2


def test_bands_stay_ordered_when_the_cuts_cross():
    rng = np.random.default_rng(3)
    y = np.array([0] * 20 + [1] * 20)
    p = np.concatenate([rng.uniform(0.5, 1.0, 20), rng.uniform(0.0, 0.5, 20)])  # inverted
    b = band_evidence(y, p)
    assert b["intermediate_from"] <= b["high_from"]


def test_band_descriptions_state_shares_that_add_up():
    y, p, _ = films(separation=0.3)
    ev = {"bands": band_evidence(y, p)}
    text = band_description("high", ev)
    assert text.startswith("high: ") and "of validation abnormal films" in text
    names = ["low", "intermediate", "high"]
    shares = [int(band_description(n, ev).split(": ")[1].split(" %")[0]) for n in names]
    assert abs(sum(shares) - 100) <= 2


@pytest.mark.parametrize("evidence", [None, {}, {"schema": 1}])
def test_an_artifact_without_evidence_shows_nothing(evidence):
    assert triage_validated(evidence) is False
    assert heatmap_passed(evidence) is False
    assert marks_passed(evidence) is False
    assert exam_score(0.9, evidence) is None
    assert calibrated_probability(0.9, evidence) is None
    assert band(0.9, evidence) is None


def test_the_app_side_never_imports_tensorflow_or_scikit_learn():
    code = (
        "import sys, ml.evidence, ml.marks; "
        "print('tensorflow' in sys.modules or 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- verdicts


def test_a_heatmap_that_beats_baseline_and_random_weights_and_changes_passes():
    passed, reason = heatmap_verdict(0.6, 0.3, [0.1, 0.2, 0.15], [0.1, 0.2, 0.0])
    assert passed
    assert "60 %" in reason and "30 %" in reason and "20 %" in reason


@pytest.mark.parametrize(
    "trained, baseline, random_peaks, correlations",
    [
        (0.6, 0.7, [0.1], [0.1]),  # the brightest spot does better
        (0.6, 0.3, [0.1, 0.6], [0.1, 0.1]),  # a random-weight network does as well
        (0.6, 0.3, [0.1], [HEATMAP_MAX_RANDOM_RANK_CORRELATION + 0.1]),  # map barely changes
        # one near-empty random map (correlation 0) must not average the others away
        (0.6, 0.3, [0.1, 0.1, 0.0], [0.58, 0.62, 0.0]),
    ],
)
def test_a_heatmap_fails_unless_it_beats_every_comparison(
    trained, baseline, random_peaks, correlations
):
    passed, reason = heatmap_verdict(trained, baseline, random_peaks, correlations)
    assert not passed
    assert "not shown" in reason


def test_marks_pass_only_above_half_the_lesions_and_the_baseline():
    assert marks_verdict(0.6, 0.4)[0]
    passed, reason = marks_verdict(0.4, 0.1)
    assert not passed and "40 %" in reason and "10 %" in reason
    passed, reason = marks_verdict(0.6, 0.7)
    assert not passed and "baseline" in reason


def test_rank_correlation_is_one_for_a_monotone_copy_and_zero_for_a_flat_map():
    rng = np.random.default_rng(0)
    a = rng.random((64, 64))
    assert rank_correlation(a, a**3) == pytest.approx(1.0)
    assert rank_correlation(a, np.zeros_like(a)) == 0.0
    mask = np.zeros((64, 64), bool)
    mask[:32] = True
    b = a.copy()
    b[32:] = rng.random((32, 64))  # differs only outside the mask
    assert rank_correlation(a, b, mask) == pytest.approx(1.0)


# --------------------------------------------------------------------------- randomisation


def test_an_untrained_model_fails_the_randomisation_test_against_itself(
    tiny_artifact, mini_mias_like
):
    from ml.data import read_mias
    from ml.evidence_measurement import heatmap_evidence, score_films
    from ml.predictor import Predictor

    predictor = Predictor.load(tiny_artifact)
    lesion_films = [f for f in read_mias(mini_mias_like) if f.findings]
    records, seconds = score_films(predictor, lesion_films, "abnormal")
    assert seconds > 0
    hm = heatmap_evidence(predictor, records, seeds=(1, 2, 3))
    assert hm["films"] == len(lesion_films) == 4
    assert hm["passed"] is False
    # the bright disc is the brightest spot: the baseline finds every lesion
    assert hm["baseline_peak_in_lesion"] == 1.0
    assert hm["random_weights"]["seeds"] == [1, 2, 3]
    assert all(-1.0 <= c <= 1.0 for c in hm["random_weights"]["rank_correlation"])


def test_reinitialised_weights_differ_from_the_model_and_leave_it_untouched(tiny_artifact):
    from ml.evidence_measurement import reinitialised
    from ml.predictor import Predictor

    model = Predictor.load(tiny_artifact).model
    before = [w.copy() for w in model.get_weights()]
    fresh = reinitialised(model, 7)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    kernels = [w for w in fresh.get_weights() if w.ndim == 4]
    assert not np.allclose(kernels[0], before[0])


# --------------------------------------------------------------------------- evaluate


def test_auto_split_evaluates_every_film_of_a_folder_the_artifact_was_not_trained_on(
    mini_mias_like,
):
    from ml.data import read_mias
    from ml.selection import select_films

    shipped = load_manifest(DEFAULT_ARTIFACT)  # lists women 1..161 of the real mini-MIAS
    all_films = read_mias(mini_mias_like)
    chosen = select_films(shipped, all_films, "auto")
    assert chosen.split == "all" and len(chosen.evaluate) == len(all_films) == 12
    with pytest.raises(ValueError, match="not the one the artifact was trained on"):
        select_films(shipped, all_films, "test")


def test_asking_for_the_test_split_of_a_foreign_folder_is_a_usage_error(
    tiny_artifact, mini_mias_like, tmp_path, capsys
):
    from ml.evaluate import main

    with pytest.raises(SystemExit):
        main(
            ["--artifact", str(tiny_artifact), "--data", str(mini_mias_like)]
            + ["--split", "test", "--out", str(tmp_path)]
        )
    assert "not the one the artifact was trained on" in capsys.readouterr().err


@needs_mias
def test_auto_split_takes_the_artifacts_test_women_on_its_own_folder():
    from ml.config import mias_dir
    from ml.data import read_mias
    from ml.selection import select_films

    shipped = load_manifest(DEFAULT_ARTIFACT)
    chosen = select_films(shipped, read_mias(mias_dir()), "auto")
    assert chosen.split == "test" and chosen.held_out
    assert {f.patient for f in chosen.evaluate} == set(shipped.training_data["test_patients"])
    assert {f.patient for f in chosen.fit} == set(shipped.training_data["val_patients"])


def test_evaluate_writes_an_evidence_block_the_app_can_read(
    tiny_artifact, mini_mias_like, tmp_path
):
    from ml.evaluation import evaluate_artifact
    from ml.evidence_measurement import write_evidence

    artifact = Path(shutil.copytree(tiny_artifact, tmp_path / "artifact"))
    result = evaluate_artifact(artifact, mini_mias_like, tmp_path / "out", n_boot=20)
    assert result["split"] == "all" and result["films"] == 12
    write_evidence(artifact, result["evidence"])
    ev = verify_checksum(artifact).evidence  # the model file, and its checksum, unchanged
    assert set(ev) >= {
        "schema", "computed_at", "data", "film_auc", "triage", "calibration",
        "exam_score", "bands", "heatmap", "marks",
    }  # fmt: skip
    assert ev["schema"] == 1 and len(ev["exam_score"]["cuts"]) == 9
    assert ev["marks"]["max_per_image"] == 3 and ev["marks"]["lesions"] == 4
    assert isinstance(exam_score(0.5, ev), int)
    json.dumps(ev, allow_nan=False)  # strict JSON: no NaN reaches the app
    card = (artifact / "MODEL_CARD.md").read_text()
    assert "## Evidence" in card and "randomisation test" in card


# --------------------------------------------------------------------------- model card


def ddsm_manifest(**extra) -> Manifest:  # type: ignore[no-untyped-def]
    return Manifest(
        architecture="vgg16",
        version="1.0.0",
        target="malignant",
        input_size=299,
        threshold=0.5,
        metrics={},
        sha256="0" * 64,
        preprocessing={"method": "caffe"},
        training_data={
            "source": "Kaggle DDSM Mammography patches (CBIS-DDSM derived), 299x299",
            "layout": "ddsm",
            "path": "../shared/data/ddsm",
            "train_records": ["training10_0.tfrecords", "training10_1.tfrecords"],
            "validation": "cv10_data.npy",
            "test": "test10_data.npy",
            "train_count": 11177,
        },
        **extra,
    )


def test_a_ddsm_model_card_describes_ddsm_not_mini_mias():
    from ml.model_card import model_card

    card = model_card(ddsm_manifest())
    assert "mini-MIAS" not in card
    assert "Kaggle DDSM" in card and "11177 patches" in card and "cv10_data.npy" in card


def test_the_card_renders_evidence_verdicts_and_attempts():
    from ml.model_card import model_card

    evidence = {
        "schema": 1,
        "computed_at": "2026-12-01T00:00:00Z",
        "data": "test films",
        "film_auc": {"auc": 0.6, "ci95": [0.45, 0.75], "films": 50, "women": 25, "method": "m"},
        "triage": {"validated": False, "reason": "CI includes 0.5."},
        "calibration": {"method": "isotonic", "films": 38, "scores": [0.1, 0.9],
                        "probabilities": [0.2, 0.5]},
        "exam_score": {"normal_films": 25, "cuts": [0.1 * i for i in range(1, 10)]},
        "bands": {"films": 38, "intermediate_from": 0.5, "high_from": 0.9,
                  "intermediate": {"sensitivity": 0.9, "specificity": 0.3},
                  "high": {"sensitivity": 0.4, "specificity": 0.9}},
        "heatmap": {"passed": False, "reason": "Random weights do as well.", "films": 31,
                    "trained_peak_in_lesion": 0.2, "baseline_peak_in_lesion": 0.3,
                    "random_point_in_lesion": 0.03,
                    "random_weights": {"seeds": [1, 2], "peak_in_lesion": [0.2, 0.1],
                                       "rank_correlation": [0.7, 0.6]}},
        "marks": {"passed": False, "reason": "Too few lesions found.", "films": 80,
                  "lesions": 31, "max_per_image": 3,
                  "froc": {"sensitivity_at_0_5_fp": 0.1, "sensitivity_at_1_fp": 0.2,
                           "points": [[0, 0], [1, 0.2]]}},
        "attempts": [{"recipe": "custom_cnn, hard negatives", "film_auc": 0.58,
                      "ci95": [0.5, 0.66], "folds": 5, "repeats": 2, "notes": "CPU"}],
    }  # fmt: skip
    card = model_card(ddsm_manifest(evidence=evidence))
    assert "## Evidence" in card and "## Attempts" in card
    for text in (
        "0.600 (95 % CI 0.450–0.750)",
        "**not validated**. CI includes 0.5.",
        "| same network, random weights, seed 2 | 10 % | 0.60 |",
        "brightest spot of the smoothed film (baseline) | 30 %",
        "**failed**. Random weights do as well.",
        "**failed**. Too few lesions found.",
        "| custom_cnn, hard negatives | 0.580 (0.500–0.660) | 5 × 2 | CPU |",
    ):
        assert text in card


def test_re_rendering_a_card_keeps_its_hand_written_lineage():
    from ml.model_card import kept_notes

    card = "## Training\n- 10 epochs.\n- Lineage: v1 was\n  trained first.\n\n## Figures\n"
    assert kept_notes(card) == ["- Lineage: v1 was", "  trained first."]
