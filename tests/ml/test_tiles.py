import json
from pathlib import Path

import numpy as np
import pytest

from ml.data import read_mias
from ml.metrics import ESTIMATOR
from ml.tiles import FEATURES, TileConfig, film_tiles, run_tiles
from tests.ml.conftest import write_mini_mias_like

SMALL = TileConfig(tile=16, stride=8, trees=30, inner_folds=2, negatives_per_film=20)


@pytest.fixture(scope="module")
def twelve_women(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mini_mias_like(tmp_path_factory.mktemp("tiles24"), films=24)


def test_tiles_are_labelled_by_the_lesion_circles(twelve_women: Path):
    films = read_mias(twelve_women)
    lesion = next(f for f in films if f.findings)
    normal = next(f for f in films if not f.findings)
    tiles = film_tiles(lesion, "abnormal", SMALL)
    assert tiles.features.shape == (len(tiles.target), len(FEATURES))
    assert (tiles.target == 1).any() and (tiles.target == 0).any()
    assert set(np.unique(film_tiles(normal, "abnormal", SMALL).target)) == {0}


@pytest.mark.slow
def test_the_film_model_scores_every_film_once_from_folds_that_never_saw_its_woman(
    twelve_women: Path, tmp_path: Path
):
    summary = run_tiles(twelve_women, tmp_path / "t", folds=2, repeats=2, cfg=SMALL)
    written = json.loads((tmp_path / "t" / "crossval.json").read_text())
    assert written["estimator"] == ESTIMATOR and written["women"] == 12
    assert len(written["per_repeat"]) == 2 and summary["film_auc"] == written["film_auc"]
    oof = (tmp_path / "t" / "oof.csv").read_text().splitlines()[1:]
    assert len(oof) == 48  # 24 films x 2 repeats
    for repeat in ("0", "1"):
        refs = sorted(line.split(",")[2] for line in oof if line.startswith(repeat + ","))
        assert refs == [f"mdb{n:03d}" for n in range(1, 25)]
    # the synthetic lesions are bright discs: a detector that learnt nothing would sit at 0.5
    assert written["tile_auc_mean"] > 0.9
