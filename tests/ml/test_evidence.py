import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from ml.artifacts import DEFAULT_ARTIFACT, Manifest, load_manifest, verify_checksum
from ml.evidence import (
    FLOOR,
    Gates,
    band,
    band_description,
    band_evidence,
    calibrated_probability,
    calibration_evidence,
    calibration_shown,
    exam_score,
    exam_score_evidence,
    film_auc_evidence,
    heatmap_gate,
    heatmap_passed,
    marks_gate,
    marks_passed,
    one_sided_p,
    paired_test,
    rank_correlation,
    target,
    triage_gate,
    triage_validated,
)
from tests.ml.conftest import needs_mias

T = TypeVar("T")


def present(value: T | None) -> T:
    """The value a test expects the evidence to give (not None)."""
    assert value is not None
    return value


def films(n_women: int = 60, separation: float = 0.0, seed: int = 0):
    """Two films per woman, about a third abnormal; score = noise + separation * label."""
    rng = np.random.default_rng(seed)
    y = (rng.random(2 * n_women) < 0.35).astype(int)
    p = np.clip(rng.normal(0.5, 0.15, 2 * n_women) + separation * y, 0, 1)
    groups = np.repeat(np.arange(n_women), 2)
    return y, p, groups


# --------------------------------------------------------------------------- triage


def scored_films(auc: float, abnormal: int, normal: int, seed: int = 0):
    """One film per woman; abnormal films score higher by the shift that gives ``auc``
    between two unit normals (AUC = Phi(shift / sqrt 2))."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    shift = np.sqrt(2) * norm.ppf(auc)
    y = np.r_[np.ones(abnormal, int), np.zeros(normal, int)]
    p = rng.normal(0.0, 1.0, len(y)) + shift * y
    return y, p, np.arange(len(y))


def triage_on(auc: float, abnormal: int, normal: int, seed: int = 0, gates: Gates = FLOOR):
    y, p, groups = scored_films(auc, abnormal, normal, seed)
    fa = film_auc_evidence(y, p, groups, n_boot=400)
    return fa, triage_gate({"film_auc": fa}, gates)


def test_a_score_that_ranks_perfectly_is_validated_for_triage():
    y, _, groups = films()
    fa = film_auc_evidence(y, y + 0.01 * np.arange(len(y)) / len(y), groups, n_boot=200)
    assert fa["auc"] == pytest.approx(1.0) and fa["women"] == 60 and fa["films"] == 120
    assert fa["abnormal_films"] == int(y.sum()) >= 30 and fa["held_out"] is True
    assert triage_gate({"film_auc": fa}).passed is True


def test_auc_0_58_on_1000_films_fails_triage_though_its_interval_clears_chance():
    fa, verdict = triage_on(0.58, abnormal=500, normal=500, seed=1)
    assert 0.55 < fa["auc"] < 0.61 and fa["ci95"][0] > 0.5 and fa["films"] == 1000
    assert verdict.passed is False
    assert "the AUC is below 0.75" in verdict.reason
    assert "may be chance" not in verdict.reason and "too few" not in verdict.reason


def test_auc_0_80_on_29_abnormal_films_fails_triage_as_too_few():
    fa, verdict = triage_on(0.80, abnormal=29, normal=120, seed=2)
    assert fa["auc"] >= 0.75 and fa["ci95"][0] > 0.5 and fa["abnormal_films"] == 29
    assert verdict.passed is False
    assert verdict.reason == "Not met: 29 abnormal films are too few to tell (30 needed)."


def test_auc_0_80_with_its_lower_bound_above_half_on_40_abnormal_films_passes_triage():
    fa, verdict = triage_on(0.80, abnormal=40, normal=120, seed=3)
    assert fa["auc"] >= 0.75 and fa["ci95"][0] > 0.5 and fa["abnormal_films"] == 40
    assert verdict.passed is True and triage_validated({"film_auc": fa})
    assert "40 of them abnormal" in verdict.figures and "held-out" in verdict.figures


def test_a_random_score_is_not_validated_and_the_reason_gives_the_figures():
    y, p, groups = films(separation=0.0)
    fa = film_auc_evidence(y, p, groups, n_boot=200)
    verdict = triage_gate({"film_auc": fa})
    assert fa["ci95"][0] <= 0.5
    assert verdict.passed is False and "may be chance" in verdict.reason
    assert f"{fa['auc']:.2f}" in verdict.figures and "120" in verdict.figures


def test_films_used_in_training_never_validate_the_score():
    y, _, groups = films()
    fa = film_auc_evidence(y, y.astype(float), groups, n_boot=50, held_out=False)
    verdict = triage_gate({"film_auc": fa})
    assert verdict.passed is False and "used in training" in verdict.reason


def test_a_site_can_make_the_triage_gate_stricter():
    fa, verdict = triage_on(0.80, abnormal=40, normal=120, seed=3)
    assert verdict.passed
    assert not triage_gate({"film_auc": fa}, Gates(triage_min_auc=0.9)).passed
    assert not triage_gate({"film_auc": fa}, Gates(triage_min_abnormal_films=41)).passed


def test_settings_looser_than_the_floor_are_named():
    assert Gates().looser_than(FLOOR) == []
    assert Gates(triage_min_auc=0.9, max_p=0.01).looser_than(FLOOR) == []
    loose = Gates(triage_min_auc=0.6, heatmap_max_median_correlation=0.7, max_p=0.1)
    assert loose.looser_than(FLOOR) == [
        "triage_min_auc",
        "heatmap_max_median_correlation",
        "max_p",
    ]


def test_older_evidence_without_the_counts_fails_every_gate_and_says_why():
    shipped_v1 = load_manifest(DEFAULT_ARTIFACT).evidence | {
        "film_auc": {"auc": 0.9, "ci95": [0.8, 0.95], "films": 400, "women": 200, "method": "m"},
        "triage": {"validated": True, "reason": "stored flag"},
        "heatmap": {"passed": True, "reason": "stored flag"},
        "marks": {"passed": True, "reason": "stored flag"},
    }
    for gate in (triage_gate, heatmap_gate, marks_gate):
        verdict = gate(shipped_v1)
        assert verdict.passed is False
        assert (
            "measured before this rule" in verdict.reason and "--write-evidence" in verdict.reason
        )


# --------------------------------------------------------------------------- paired tests


def test_the_paired_test_is_the_exact_one_sided_binomial_on_discordant_films():
    from scipy.stats import binomtest

    assert one_sided_p(0, 0) == 1.0
    assert one_sided_p(1, 0) == pytest.approx(0.5)
    assert one_sided_p(5, 0) == pytest.approx(1 / 32)
    for n in range(1, 61):
        for wins in range(n + 1):
            expected = binomtest(wins, n, 0.5, alternative="greater").pvalue
            assert one_sided_p(wins, n - wins) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    # concordant films carry no information: only the discordant ones count
    test = paired_test([1, 1, 0, 0, 1], [1, 0, 0, 1, 0])
    assert (test["wins"], test["losses"]) == (2, 1)


def heatmap_block(trained, baseline, copies, correlations):
    return {
        "heatmap": {
            "films": len(trained),
            "trained_hits": list(trained),
            "baseline_hits": list(baseline),
            "random_weights": {
                "seeds": list(range(1, len(copies) + 1)),
                "hits": [list(c) for c in copies],
                "rank_correlation": list(correlations),
            },
        }
    }


def hits(n: int, first: int) -> list[int]:
    """``first`` hits on the first films, then misses."""
    return [1] * first + [0] * (n - first)


def test_a_clearly_better_synthetic_map_passes_the_heatmap_gate():
    n = 30
    trained = hits(n, 20)
    baseline = hits(n, 4)
    copies = [np.roll(hits(n, 3), 3 * i).tolist() for i in range(10)]
    verdict = heatmap_gate(heatmap_block(trained, baseline, copies, [0.1] * 9 + [0.8]))
    assert verdict.passed is True, verdict.reason
    assert "inside it on 20" in verdict.figures and "median rank correlation" in verdict.figures


def test_a_map_that_beats_the_baseline_by_one_film_fails():
    n = 23
    copies = [[0] * n for _ in range(10)]
    # 12 of 23 lesion peaks against 11 of 23 for the brightest point; far above random copies
    verdict = heatmap_gate(heatmap_block(hits(n, 12), hits(n, 11), copies, [0.0] * 10))
    assert verdict.passed is False
    assert verdict.reason == "Not met: it is not shown to beat the brightest point of the film."
    assert "1 films only the map, 0 only the point, p = 0.500" in verdict.figures
    # the shipped map's margin in issue 21: 4 of 23 against 3 of 23
    assert not heatmap_gate(heatmap_block(hits(n, 4), hits(n, 3), copies, [0.0] * 10)).passed


def test_the_heatmap_gate_needs_ten_random_copies_and_a_low_median_correlation():
    n = 30
    trained, baseline = hits(n, 20), hits(n, 4)
    three = [hits(n, 0)] * 3
    verdict = heatmap_gate(heatmap_block(trained, baseline, three, [0.1] * 3))
    assert not verdict.passed and "only 3 random copies (10 needed)" in verdict.reason
    ten = [hits(n, 0)] * 10
    # the median seed decides, not which seeds happened to be drawn
    verdict = heatmap_gate(heatmap_block(trained, baseline, ten, [0.6] * 6 + [0.0] * 4))
    assert not verdict.passed and "barely changes" in verdict.reason
    verdict = heatmap_gate(heatmap_block(trained, baseline, ten, [0.6] * 4 + [0.0] * 6))
    assert verdict.passed


def test_a_map_no_better_than_its_best_random_copy_fails():
    n = 30
    trained, baseline = hits(n, 20), hits(n, 4)
    copies = [hits(n, 2)] * 9 + [hits(n, 19)]
    verdict = heatmap_gate(heatmap_block(trained, baseline, copies, [0.1] * 10))
    assert not verdict.passed
    assert verdict.reason == "Not met: it is not shown to beat a network with random weights."
    assert "seed 10" in verdict.figures


def test_a_site_can_ask_for_more_random_copies_and_a_smaller_p():
    n = 30
    block = heatmap_block(hits(n, 20), hits(n, 4), [hits(n, 3)] * 10, [0.1] * 10)
    assert heatmap_gate(block).passed
    assert not heatmap_gate(block, Gates(heatmap_min_seeds=20)).passed
    assert not heatmap_gate(block, Gates(max_p=1e-6)).passed


def marks_block(model, baseline):
    return {"marks": {"found_at_1_fp": {"model": list(model), "baseline": list(baseline)}}}


def test_marks_pass_only_by_the_paired_test_against_the_brightest_spots():
    n = 31
    assert marks_gate(marks_block(hits(n, 25), hits(n, 5))).passed
    one_better = marks_gate(marks_block(hits(n, 17), hits(n, 16)))
    assert not one_better.passed
    assert one_better.reason == "Not met: not shown to beat the brightest spots of the film."
    few = marks_gate(marks_block(hits(n, 8), hits(n, 0)))
    assert not few.passed and "fewer than 50 % of lesions found" in few.reason


def test_lesions_found_agree_with_the_froc_sensitivity():
    from ml.marks import RegionMark, froc, lesions_found, sensitivity_at

    rng = np.random.default_rng(4)
    lesions = [[(50.0, 50.0, 10.0)] if i % 2 else [] for i in range(20)]
    marks = [
        [RegionMark(int(r), int(c), 5, float(s)) for r, c, s in rng.uniform(30, 70, (3, 3))]
        for _ in range(20)
    ]
    marks = [[RegionMark(m.row, m.col, 5, rng.random()) for m in ms] for ms in marks]
    points = froc(marks, lesions)
    for fpi in (0.25, 0.5, 1.0, 2.0):
        found = lesions_found(marks, lesions, fpi)
        assert len(found) == 10
        assert np.mean(found) == pytest.approx(sensitivity_at(points, fpi))


# --------------------------------------------------------------------------- scores


def test_exam_score_runs_from_1_to_10_and_never_falls_as_the_score_rises():
    y, p, _ = films(separation=0.2)
    ev = {"exam_score": exam_score_evidence(y, p)}
    assert len(ev["exam_score"]["cuts"]) == 9
    assert ev["exam_score"]["cuts"] == sorted(ev["exam_score"]["cuts"])
    scores = [present(exam_score(s, ev)) for s in np.linspace(-0.1, 1.1, 200)]
    assert scores[0] == 1 and scores[-1] == 10
    assert all(a <= b for a, b in zip(scores, scores[1:], strict=False))


def test_a_tenth_of_normal_films_falls_in_each_exam_score():
    rng = np.random.default_rng(1)
    normals = rng.random(1000)
    ev = {"exam_score": exam_score_evidence(np.zeros(1000, int), normals)}
    counts = np.bincount([present(exam_score(s, ev)) for s in normals], minlength=11)[1:]
    assert np.all(np.abs(counts - 100) <= 2)


def test_calibrated_probability_is_monotone_and_within_0_and_1():
    y, p, _ = films(separation=0.2)
    ev = {"calibration": calibration_evidence(y, p)}
    cal = ev["calibration"]
    assert cal["method"] == "isotonic" and len(cal["scores"]) == len(cal["probabilities"])
    probs = [present(calibrated_probability(s, ev)) for s in np.linspace(-0.5, 1.5, 300)]
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
    seen = [order[present(band(s, ev))] for s in np.linspace(0, 1, 200)]
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
    assert calibration_shown(evidence) is False and target(evidence) == "abnormal"
    assert exam_score(0.9, evidence) is None
    assert calibrated_probability(0.9, evidence) is None
    assert band(0.9, evidence) is None


def test_the_app_side_never_imports_tensorflow_or_scikit_learn():
    code = (
        "import sys, ml.evidence, ml.marks; "
        "h = lambda n, k: [1] * k + [0] * (n - k); "
        "ev = {'heatmap': {'trained_hits': h(30, 20), 'baseline_hits': h(30, 4), "
        "'random_weights': {'hits': [h(30, 3)] * 10, 'rank_correlation': [0.1] * 10}}, "
        "'marks': {'found_at_1_fp': {'model': h(31, 25), 'baseline': h(31, 5)}}}; "
        "assert ml.evidence.heatmap_passed(ev) and ml.evidence.marks_passed(ev); "
        "print(any(m in sys.modules for m in ('tensorflow', 'sklearn', 'scipy.stats')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- maps


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
    # each film's hit is kept, so the app can recompute the paired tests
    assert len(hm["trained_hits"]) == len(hm["baseline_hits"]) == 4
    assert [len(h) for h in hm["random_weights"]["hits"]] == [4, 4, 4]
    assert "only 3 random copies (10 needed)" in hm["reason"]


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


@needs_mias
def test_on_its_own_folder_calibration_is_fitted_on_validation_women_apart_from_the_auc():
    from ml.config import mias_dir
    from ml.data import read_mias
    from ml.selection import select_films

    shipped = load_manifest(DEFAULT_ARTIFACT)
    films = read_mias(mias_dir())
    test = select_films(shipped, films, "test")
    fit_women = {f.patient for f in test.calibration_films}
    assert fit_women == set(shipped.training_data["val_patients"])
    assert not fit_women & {f.patient for f in test.evaluate}
    for split in ("val", "all"):  # the AUC's films include the validation women
        chosen = select_films(shipped, films, split)
        assert chosen.calibration_films == [] and "--split test" in chosen.no_calibration_reason


def test_a_random_weight_model_on_a_foreign_folder_fails_every_gate_and_fits_nothing(
    tiny_artifact, mini_mias_like, tmp_path, capsys
):
    from ml.evaluate import main

    artifact = Path(shutil.copytree(tiny_artifact, tmp_path / "artifact"))
    main(
        ["--artifact", str(artifact), "--data", str(mini_mias_like), "--out", str(tmp_path)]
        + ["--bootstrap", "20", "--write-evidence"]
    )
    printed = capsys.readouterr().out
    ev = verify_checksum(artifact).evidence  # the model file, and its checksum, unchanged
    assert ev["schema"] == 2 and ev["target"] == "abnormal"
    # every film of a folder it was not trained on: no validation films apart from them
    assert ev["film_auc"]["films"] == 12 and ev["film_auc"]["held_out"] is True
    assert not {"calibration", "exam_score", "bands"} & set(ev)
    reason = ev["calibration_not_fitted"]
    assert "not fitted" in reason and "same films" in reason and reason in printed
    assert not calibration_shown(ev) and exam_score(0.5, ev) is None and band(0.5, ev) is None
    assert ev["film_auc"]["abnormal_films"] == 4 and ev["marks"]["lesions"] == 4
    # the drift reference: the scores of the 8 normal films the AUC is measured on
    assert ev["reference_scores"]["films"] == 8 == len(ev["reference_scores"]["scores"])
    hm = ev["heatmap"]
    assert hm["random_weights"]["seeds"] == list(range(1, 11)) and len(hm["film_refs"]) == 4
    assert all(len(h) == 4 for h in hm["random_weights"]["hits"])
    assert len(ev["marks"]["found_at_1_fp"]["model"]) == 4
    for gate in (triage_gate, heatmap_gate, marks_gate):
        verdict = gate(ev)
        assert verdict.passed is False and verdict.reason.startswith("Not met:")
    json.dumps(ev, allow_nan=False)  # strict JSON: no NaN reaches the app
    card = (artifact / "MODEL_CARD.md").read_text()
    assert "## Evidence" in card and "randomisation test" in card
    assert reason in card and "Calibration (" not in card and "Bands, fitted" not in card


# --------------------------------------------------------------------------- model card


def ddsm_manifest(**extra) -> Manifest:
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
        "schema": 2,
        "computed_at": "2026-12-01T00:00:00Z",
        "data": "test films",
        "film_auc": {"auc": 0.6, "ci95": [0.45, 0.75], "films": 50, "women": 25, "method": "m",
                     "abnormal_films": 17, "normal_films": 33, "held_out": True},
        "triage": {"validated": False, "reason": "CI includes 0.5."},
        "calibration": {"method": "isotonic", "films": 38, "scores": [0.1, 0.9],
                        "probabilities": [0.2, 0.5], "fitted_on": "validation", "women": 19},
        "exam_score": {"normal_films": 25, "cuts": [0.1 * i for i in range(1, 10)],
                       "fitted_on": "validation", "women": 19},
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
        "0.600 (95 % CI 0.450–0.750) on 50 films of 25 women, 17 abnormal and 33 normal",
        "**not validated**. Rule: Film AUC at least 0.75 and its 95 % lower bound above 0.50",
        "Not met: the AUC is below 0.75; the lower bound is not above 0.50, so it may be "
        "chance; 17 abnormal films are too few to tell (30 needed).",
        "Calibration (isotonic, fitted on 38 validation films of 19 women (none of them among "
        "the films the AUC is reported on)",
        "deciles of the normal films the score reaches, fitted on 25 validation normal films "
        "of 19 women",
        "| same network, random weights, seed 2 | 10 % | 0.60 |",
        "brightest spot of the smoothed film (baseline) | 30 %",
        "**failed**. Rule: At least 10 copies of the network with random weights",
        "it was measured before this rule",
        "| custom_cnn, hard negatives | 0.580 (0.500–0.660) | 5 × 2 | CPU |",
    ):
        assert text in card, text
    assert card.count("**failed**") == 2


def test_re_rendering_a_card_keeps_its_hand_written_lineage():
    from ml.model_card import kept_notes

    card = "## Training\n- 10 epochs.\n- Lineage: v1 was\n  trained first.\n\n## Figures\n"
    assert kept_notes(card) == ["- Lineage: v1 was", "  trained first."]


def test_the_card_compares_test_film_localisation_with_the_brightest_point_and_random_weights():
    from ml.model_card import model_card

    manifest = load_manifest(DEFAULT_ARTIFACT)
    hm = manifest.evidence["heatmap"]
    test = set(manifest.training_data["test_patients"])
    keep = [i for i, ref in enumerate(hm["film_refs"]) if (int(ref[3:]) + 1) // 2 in test]
    brightest = np.mean([hm["baseline_hits"][i] for i in keep])
    line = next(x for x in model_card(manifest).splitlines() if x.startswith("- Localisation"))
    assert f"brightest point of the smoothed film ({brightest:.0%})" in line
    assert "random weights" in line and "no better than the brightest point" in line
    assert (DEFAULT_ARTIFACT / "MODEL_CARD.md").read_text().count(line) == 1
