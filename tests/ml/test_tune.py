import json
from pathlib import Path

import pytest

from ml.config import CrossValConfig, TuneConfig
from ml.tune import SEARCH_SPACE, parse_args, run_tune, with_params
from tests.ml.conftest import write_mini_mias_like
from tests.ml.test_train_mias import tiny_run


def test_a_trials_parameters_reach_the_recipe_and_leave_the_base_untouched():
    base = CrossValConfig()
    params = {"learning_rate": 3e-4, "batch_size": 16, "normal_tiles_per_film": 24}
    cv = with_params(base, params | {"augment": False, "class_weights": False})
    assert (cv.train.learning_rate, cv.train.batch_size) == (3e-4, 16)
    assert cv.train.patches.normal_tiles_per_film == 24 and cv.train.augment is False
    assert base.train.learning_rate == 1e-4 and base.train.patches.normal_tiles_per_film == 4
    assert set(SEARCH_SPACE) == set(params) | {"augment", "class_weights"}


def test_the_command_takes_the_search_options_and_crossvals_recipe(tmp_path: Path):
    tune = parse_args(
        ["--name", "t", "--trials", "3", "--inner-folds", "2", "--lr", "1e-3", "--data", "x"]
    )
    assert (tune.trials, tune.inner_folds, tune.final_study) == (3, 2, False)
    assert tune.cv.train.learning_rate == 1e-3 and tune.cv.train.out_dir == "runs/t"


@pytest.fixture(scope="module")
def twelve_women(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mini_mias_like(tmp_path_factory.mktemp("mias24"), films=24)


@pytest.mark.slow
def test_nested_search_chooses_inside_training_folds_and_stores_every_trial(
    twelve_women: Path, tmp_path: Path
):
    cv = CrossValConfig(train=tiny_run(twelve_women, tmp_path / "tune"), folds=2, val_fraction=0.5)
    tune = TuneConfig(cv=cv, trials=1, inner_folds=2, final_study=True)
    summary = run_tune(tune)
    root = tmp_path / "tune"
    written = json.loads((root / "tune.json").read_text())
    assert written["nested_film_auc"]["estimator"] == summary["nested_film_auc"]["estimator"]
    assert written["nested_film_auc"]["films"] == 24 and written["nested_film_auc"]["women"] == 12
    trials = json.loads((root / "trials.json").read_text())
    assert sorted({t["study"] for t in trials}) == ["final", "outer-r0f0", "outer-r0f1"]
    assert len(trials) == 3 and all(set(t["params"]) == set(SEARCH_SPACE) for t in trials)
    import optuna

    stored = optuna.get_all_study_names(f"sqlite:///{root / 'optuna.db'}")
    assert sorted(stored) == ["final", "outer-r0f0", "outer-r0f1"]
    for fold in written["outer_folds"]:
        study = optuna.load_study(
            study_name=f"outer-r0f{fold['fold']}", storage=f"sqlite:///{root / 'optuna.db'}"
        )
        searched = set(study.user_attrs["women"])
        assert len(study.trials) == 1 and len(searched) == 6
        assert not searched & set(fold["test_women"])  # the search never saw the test women
    oof = (root / "oof.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[2] for line in oof) == [f"mdb{n:03d}" for n in range(1, 25)]
    assert "not an estimate" in written["final"]["note"]
    assert not (root / "inner").exists()
