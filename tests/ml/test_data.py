from pathlib import Path

import numpy as np
import pytest

from ml.breast import breast_mask
from ml.config import PatchConfig, SplitConfig, WholeImageConfig, mias_dir
from ml.data import (
    MiasFilm,
    MiasFinding,
    class_weights,
    crop,
    ddsm_tfrecord_dataset,
    ddsm_tfrecord_labels,
    extract_mias_patches,
    film_patches,
    find_ddsm_files,
    hold_out_patients,
    load_ddsm_npy,
    make_dataset,
    mias_film_patches,
    patient_folds,
    patient_of,
    read_mias,
    split_patients,
    stratified_patient_split,
    to_target,
)
from ml.training_data import normal_grid_tiles
from tests.ml.conftest import needs_mias


def test_abnormal_target_is_any_finding():
    assert to_target([0, 1, 2, 3, 4], "abnormal").tolist() == [0, 1, 1, 1, 1]


def test_malignant_target_is_labels_3_and_4():
    assert to_target([0, 1, 2, 3, 4], "malignant").tolist() == [0, 0, 0, 1, 1]


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError):
        to_target([0], "benign")


def test_class_weights_balance_the_classes():
    y = np.array([0] * 30 + [1] * 10)
    w = class_weights(y)
    assert w[0] * 30 == pytest.approx(w[1] * 10)
    assert w == pytest.approx({0: 40 / 60, 1: 40 / 20})


def test_films_of_one_woman_share_a_patient():
    assert patient_of("mdb001") == patient_of("mdb002") == 1
    assert patient_of("mdb003") == 2
    assert patient_of(322) == 161


def test_patient_split_is_disjoint_and_complete():
    split = split_patients(range(1, 101), SplitConfig(0.15, 0.2, seed=3))
    sets = [set(v) for v in split.values()]
    assert sum(len(s) for s in sets) == 100
    assert set.union(*sets) == set(range(1, 101))
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(split["test"]) == 20 and len(split["val"]) == 15


def test_patient_split_is_reproducible():
    assert split_patients(range(50)) == split_patients(range(50))


def test_tfrecords_in_the_seed_format_are_read(ddsm_dir: Path):
    files = find_ddsm_files(ddsm_dir)
    assert len(files.train_records) == 2
    assert files.val is not None and files.test is not None
    assert files.val[0].name == "cv10_data.npy" and files.test[0].name == "test10_data.npy"
    image, label = next(ddsm_tfrecord_dataset(files.train_records).as_numpy_iterator())
    assert image.shape == (299, 299, 1) and image.dtype == np.uint8
    assert 0 <= label <= 4
    labels = ddsm_tfrecord_labels(files.train_records)
    assert len(labels) == 20 and set(labels) == {0, 1, 2, 3, 4}


def test_npy_pairs_are_read_as_uint8_patches(ddsm_dir: Path):
    images, labels = load_ddsm_npy(ddsm_dir / "test10_data.npy")
    assert images.shape == (10, 299, 299) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1, 2, 3, 4] * 2


def test_float_npy_in_0_1_is_scaled_to_0_255_not_cast_to_zeros(tmp_path: Path):
    images = np.linspace(0.0, 1.0, 2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 1)
    np.save(tmp_path / "cv2_data.npy", images)
    np.save(tmp_path / "cv2_labels.npy", np.array([0, 1]))
    loaded, _ = load_ddsm_npy(tmp_path / "cv2_data.npy")
    assert loaded.dtype == np.uint8
    assert loaded.min() == 0 and loaded.max() == 255
    np.testing.assert_array_equal(loaded, np.rint(images[..., 0] * 255).astype(np.uint8))


@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (0.0, 4095.0)])
def test_npy_pixels_outside_0_255_are_refused_not_clipped(tmp_path: Path, low, high):
    np.save(tmp_path / "test2_data.npy", np.array([[[low, high]]] * 2, np.float32))
    np.save(tmp_path / "test2_labels.npy", np.array([0, 1]))
    with pytest.raises(ValueError, match="expected 0..255"):
        load_ddsm_npy(tmp_path / "test2_data.npy")


def test_pipeline_reads_float_0_1_patches_as_their_0_255_values():
    as_float = np.full((2, 16, 16), 1.0, np.float32)
    ds = make_dataset(
        (as_float, np.array([0, 1])), target="abnormal", preprocessing="scale_0_1", input_size=16
    )
    x, _ = next(iter(ds))
    np.testing.assert_allclose(x.numpy(), 1.0, atol=1e-6)  # white stays white


def test_pipeline_replicates_grayscale_and_preprocesses():
    images = np.full((4, 40, 40), 255, np.uint8)
    ds = make_dataset(
        (images, np.array([0, 1, 3, 4])),
        target="malignant",
        preprocessing="scale_-1_1",
        input_size=32,
        batch_size=4,
    )
    x, y = next(iter(ds))
    assert x.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(x.numpy(), 1.0, atol=1e-5)  # 255 -> +1, all three channels
    assert y.numpy().tolist() == [0, 0, 1, 1]


def test_augmentation_keeps_shapes_and_pixel_range():
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32), dtype=np.uint8)
    ds = make_dataset(
        (images, np.zeros(8, int)),
        target="abnormal",
        preprocessing="scale_0_1",
        input_size=32,
        batch_size=8,
        augment=True,
        shuffle=True,
    )
    x, _ = next(iter(ds))
    x = x.numpy()
    assert x.shape == (8, 32, 32, 3)
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_allclose(x[..., 0], x[..., 2])  # still gray


def test_crop_is_zero_padded_outside_the_film():
    image = np.full((100, 100), 7, np.uint8)
    out = crop(image, (0, 0), 50)
    assert out.shape == (50, 50)
    assert out[:25, :25].max() == 0 and out[25:, 25:].min() == 7


def synthetic_film(tmp_path: Path) -> MiasFilm:
    """A 512 px 'film': a bright half-disc of breast on the left, one lesion at x=150,y=362."""
    from PIL import Image

    h = w = 512
    rr, cc = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w), np.uint8)
    img[(rr - 256) ** 2 + cc**2 < 330**2] = 120
    lesion_row = h - 362  # README: row = height - y
    img[(rr - lesion_row) ** 2 + (cc - 150) ** 2 < 20**2] = 250
    path = tmp_path / "mdb001.png"
    Image.fromarray(img).save(path)
    return MiasFilm("mdb001", "F", path, [MiasFinding("CIRC", "M", 150, 362, 20)])


def test_lesion_crops_use_the_bottom_left_origin(tmp_path: Path):
    film = synthetic_film(tmp_path)
    film.findings[0] = MiasFinding("CIRC", "M", 150, 362, 20)
    cfg = PatchConfig(patch_size=64, lesion_crops=3, jitter=0, normal_tiles_per_film=0)
    patches, labels = film_patches(film, cfg, np.random.default_rng(0))
    assert labels == [4, 4, 4]
    assert all(p[32, 32] == 250 for p in patches)


def test_normal_tiles_come_from_inside_the_breast_and_clear_of_lesions(tmp_path: Path):
    film = synthetic_film(tmp_path)
    cfg = PatchConfig(patch_size=64, lesion_crops=0, normal_tiles_per_film=6)
    patches, labels = film_patches(film, cfg, np.random.default_rng(1))
    assert labels == [0] * 6
    assert cfg.min_breast_fraction == WholeImageConfig().min_breast_fraction  # as scored
    for p in patches:
        assert (p > 0).mean() >= cfg.min_breast_fraction  # breast, not background
        assert p.max() < 250  # no lesion pixels


def test_grid_tiles_for_hard_negatives_lie_in_the_breast_and_clear_of_lesions(tmp_path: Path):
    film = synthetic_film(tmp_path)
    whole = WholeImageConfig(patch_size=64, stride=32)
    tiles = normal_grid_tiles(film, whole)
    assert len(tiles) > 20 and tiles.shape[1:] == (64, 64)
    for tile in tiles:
        assert (tile > 0).mean() >= whole.min_breast_fraction
        assert tile.max() < 250  # no lesion pixels
    no_lesion = MiasFilm("mdb002", "F", film.path, [])
    assert len(normal_grid_tiles(no_lesion, whole)) > len(tiles)


def test_breast_mask_excludes_background_and_small_labels():
    img = np.zeros((256, 256), np.uint8)
    img[:, :120] = 150  # breast
    img[10:20, 200:230] = 255  # film label
    mask = breast_mask(img)
    assert mask[:, :110].mean() > 0.95
    assert not mask[:, 140:].any()


def test_patient_folds_are_disjoint_and_cover_every_woman(tmp_path: Path):
    films = [MiasFilm(f"mdb{n:03d}", "F", tmp_path / "x.png") for n in range(1, 41)]
    folds = patient_folds(films, 4)
    assert sorted(sum(folds, [])) == list(range(1, 21))
    assert all(len(f) == 5 for f in folds)


def test_held_out_validation_women_come_only_from_the_given_women(mini_mias_like: Path):
    films = read_mias(mini_mias_like)
    split = hold_out_patients(films, [1, 2, 3, 4, 5], 0.5, seed=0)
    assert sorted(split["train"] + split["val"]) == [1, 2, 3, 4, 5]
    assert not set(split["train"]) & set(split["val"])
    abnormal = {f.patient for f in films if f.findings}
    assert set(split["val"]) & abnormal and set(split["val"]) - abnormal  # both kinds


def test_patches_of_every_film_are_reproducible_per_woman(mini_mias_like: Path):
    cfg = PatchConfig(patch_size=64, lesion_crops=2, jitter=8, normal_tiles_per_film=3)
    every = mias_film_patches(mini_mias_like, cfg)
    assert set(every.patients.tolist()) == set(range(1, 7))
    again = mias_film_patches(mini_mias_like, cfg).of_patients([2])
    mine = every.of_patients([2])
    assert set(mine.refnums) == {"mdb003", "mdb004"}
    np.testing.assert_array_equal(mine.images, again.images)


@needs_mias
def test_mias_labels_are_read_with_two_films_per_woman():
    films = read_mias(mias_dir())
    assert len(films) == 258
    assert len({f.patient for f in films}) == 129
    assert any(not finding.has_location for f in films for finding in f.findings)


@needs_mias
def test_mias_split_keeps_each_woman_in_one_set():
    films = read_mias(mias_dir())
    split = stratified_patient_split(films)
    owners = {}
    for name, patients in split.items():
        for p in patients:
            assert p not in owners
            owners[p] = name
    assert len(owners) == 129


@needs_mias
def test_mias_patches_are_in_the_seed_coding():
    films = [f for f in read_mias(mias_dir()) if f.refnum in ("mdb001", "mdb003")]
    patches = extract_mias_patches(films, PatchConfig(lesion_crops=2, normal_tiles_per_film=2))
    assert patches.images.shape[1:] == (299, 299) and patches.images.dtype == np.uint8
    assert sorted(set(patches.labels.tolist())) == [0, 2]  # mdb001 is a benign mass
    assert set(patches.refnums) == {"mdb001", "mdb003"}
