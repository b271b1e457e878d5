import json
from pathlib import Path

import numpy as np

from ml.config import ModelConfig, PatchConfig, SplitConfig, TrainConfig
from ml.data import mias_split_patches


def tiny_run(data: Path, out: Path, **extra) -> TrainConfig:
    """A one-step mini-MIAS run at 64 px: the whole pipeline in seconds."""
    return TrainConfig(
        model=ModelConfig("custom_cnn", input_size=64),
        patches=PatchConfig(patch_size=64, lesion_crops=4, jitter=8, normal_tiles_per_film=2),
        split=SplitConfig(val_fraction=0.25, test_fraction=0.25),
        data=str(data),
        out_dir=str(out),
        epochs=1,
        steps_per_epoch=1,
        batch_size=8,
        bootstrap=10,
        verbose=0,
        **extra,
    )


def test_k_fold_splits_keep_each_woman_in_one_set_and_test_each_once(mini_mias_like: Path):
    tested = []
    for fold in range(3):
        _, split = mias_split_patches(
            mini_mias_like,
            PatchConfig(patch_size=64, lesion_crops=1, normal_tiles_per_film=0),
            SplitConfig(folds=3, fold=fold),
        )
        assert not set(split["train"]) & set(split["val"])
        assert not set(split["train"]) & set(split["test"])
        assert not set(split["val"]) & set(split["test"])
        tested += split["test"]
    assert sorted(tested) == list(range(1, 7))


def test_a_mias_run_reports_whole_image_figures_and_localisation(mini_mias_like, tmp_path):
    from ml.runs import run

    out = run(tiny_run(mini_mias_like, tmp_path / "run"))
    metrics = json.loads((out / "metrics.json").read_text())
    image = metrics["image"]["test"]
    manifest = json.loads((out / "manifest.json").read_text())
    # Film N belongs to woman (N+1)//2 and every third film carries a lesion (the fixture):
    # the figures must count exactly the held-out women's films and lesions.
    test_films = [
        n for n in range(1, 13) if (n + 1) // 2 in manifest["training_data"]["test_patients"]
    ]
    lesion_films = [n for n in test_films if n % 3 == 0]
    assert metrics["image"]["test_films"] == image["at_threshold"]["n"] == len(test_films)
    assert image["at_threshold"]["positives"] == len(lesion_films)
    assert sum(map(sum, image["at_threshold"]["confusion_matrix"])) == len(test_films)
    assert image["localisation"]["films"] == len(lesion_films)
    if 0 < len(lesion_films) < len(test_films):  # AUC is defined: both classes held out
        assert 0.0 <= image["auc"] <= 1.0
    else:
        assert np.isnan(image["auc"])
    assert image["seconds_per_film"] > 0
    assert manifest["threshold"] == metrics["image"]["threshold"]  # what the app applies
    assert set(manifest["training_data"]["test_patients"]).isdisjoint(
        manifest["training_data"]["val_patients"]
    )
    assert "Whole-film results" in (out / "MODEL_CARD.md").read_text()


def test_a_mias_run_names_the_women_it_trained_and_calibrated_on(mini_mias_like, tmp_path):
    """As the site names them on import, so local figures can leave them out."""
    from ml.artifacts import read_manifest_data
    from ml.config import mias_pseudonym
    from ml.manifest_schema import check_manifest, subjects
    from ml.runs import run

    out = run(tiny_run(mini_mias_like, tmp_path / "run"))
    manifest = read_manifest_data(out)
    check_manifest(manifest)
    named = subjects(manifest)
    data = manifest["training_data"]
    assert named["calibration"] == [mias_pseudonym(p) for p in data["val_patients"]]
    assert len(named["training_data"]) == data["patients"]["train"] > 0
    tested = {mias_pseudonym(p) for p in data["test_patients"]}
    assert tested.isdisjoint(named["training_data"]) and tested.isdisjoint(named["calibration"])
    assert set(named["training_data"]).isdisjoint(named["calibration"])


def test_a_run_can_continue_from_an_artifact_with_its_hard_negatives(mini_mias_like, tmp_path):
    from ml.runs import run

    first = run(tiny_run(mini_mias_like, tmp_path / "first"))
    second = run(
        tiny_run(
            mini_mias_like,
            tmp_path / "second",
            init_from=str(first),
            hard_negatives_from=str(first),
            hard_negatives_per_film=2,
            select_on="films",
        )
    )
    data = json.loads((second / "manifest.json").read_text())["training_data"]
    # at most two mined tiles per training film (two films per woman), none from val or test
    assert 0 < data["hard_negatives"]["added"] <= 2 * 2 * data["patients"]["train"]
    assert data["hard_negatives"]["per_film"] == 2
    card = (second / "MODEL_CARD.md").read_text()
    assert "Hard negatives" in card
    assert "best validation whole-film AUC" in card and "continued from" in card
    assert "val_film_auc" in (second / "history.csv").read_text()
    assert json.loads((second / "config.json").read_text())["init_from"] == str(first)


def test_kfold_reports_the_pooled_out_of_fold_film_auc_with_per_fold_figures_as_context(
    mini_mias_like, tmp_path
):
    from ml.metrics import ESTIMATOR, pooled_oof_auc
    from ml.runs import cross_validate
    from ml.train import kfold_lines

    cfg = tiny_run(mini_mias_like, tmp_path / "kf")
    cfg.split = SplitConfig(folds=3)
    summary = cross_validate(cfg)
    rows = [
        r
        for i in range(3)
        for r in json.loads((tmp_path / "kf" / f"fold{i}" / "test_film_scores.json").read_text())
    ]
    assert sorted(r["refnum"] for r in rows) == [f"mdb{n:03d}" for n in range(1, 13)]
    pooled = pooled_oof_auc(rows, "score", cfg.bootstrap)
    film = summary["film_auc"]
    assert film["estimator"] == ESTIMATOR and film["films"] == 12 and film["women"] == 6
    assert film["auc"] == pooled["auc"] or np.isnan(pooled["auc"])
    printed = kfold_lines(summary)
    assert printed.splitlines()[0].startswith("film AUC, pooled out-of-fold")
    assert "context only" in printed and "mean" not in printed
