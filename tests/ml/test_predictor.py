import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml.artifacts import DEFAULT_ARTIFACT, ArtifactError
from ml.config import WholeImageConfig, mias_dir
from ml.predictor import Predictor, grid_positions, scale_factor, to_0_255
from tests.ml.conftest import needs_mias


@pytest.fixture(scope="module")
def predictor(tiny_artifact: Path) -> Predictor:
    return Predictor.load(tiny_artifact)


def film(shape=(256, 200), dtype=np.uint8, seed=0) -> np.ndarray:
    """A bright half-ellipse of 'breast' on a dark background."""
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    inside = ((rr - shape[0] / 2) / (shape[0] / 2)) ** 2 + (cc / (shape[1] * 0.7)) ** 2 < 1
    noise = np.random.default_rng(seed).uniform(0, 1, shape)
    img = inside * (0.5 + 0.3 * noise)
    if dtype == np.uint8:
        return (img * 255).astype(np.uint8)
    if dtype == np.uint16:
        return (img * 4095).astype(np.uint16)
    return img.astype(dtype)


def test_importing_the_predictor_does_not_import_tensorflow():
    code = "import sys, ml.predictor, ml.artifacts; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_each_image_gets_a_probability_and_a_heatmap_of_its_own_size(predictor):
    images = [film((256, 200)), film((100, 90), np.uint16), film((64, 64), np.float32)]
    preds = predictor.predict_images(images)
    assert len(preds) == 3
    for image, pred in zip(images, preds, strict=True):
        assert 0.0 <= pred.probability <= 1.0
        assert pred.heatmap.shape == image.shape and pred.heatmap.dtype == np.float32
        assert pred.heatmap.min() >= 0.0 and pred.heatmap.max() <= 1.0
        assert set(pred.timings) == {"preprocess", "predict", "gradcam"}


def test_image_score_is_the_maximum_patch_probability(predictor):
    (pred,) = predictor.predict_images([film((256, 200))])
    assert len(pred.patch_probabilities) > 1
    assert pred.probability == pytest.approx(float(pred.patch_probabilities.max()))


def test_heat_stays_inside_the_breast(predictor):
    image = film((256, 200))
    (pred,) = predictor.predict_images([image])
    # the breast reaches 70% of the width; the mask is found at quarter resolution
    assert pred.heatmap[:, int(0.75 * image.shape[1]) :].max() == 0.0


def test_region_marks_are_few_suspicious_and_inside_the_input_image(predictor):
    image = film((512, 400))  # shrunk to the tiny artifact's 256 px before tiling
    (pred,) = predictor.predict_images([image])
    assert pred.scaled_shape == (256, 200)
    assert len(pred.marks) <= 3
    for mark in pred.marks:
        assert 0 <= mark.row < 512 and 0 <= mark.col < 400
        assert mark.score >= 0.5 and mark.radius > 0
    assert [m.score for m in pred.marks] == sorted((m.score for m in pred.marks), reverse=True)


def test_the_same_image_scores_the_same_alone_and_in_a_batch(predictor):
    a, b = film(seed=1), film(seed=2)
    alone = predictor.predict_images([a])[0].probability
    batched = predictor.predict_images([b, a])[1].probability
    assert alone == pytest.approx(batched, abs=1e-5)


def test_known_pixel_spacing_brings_the_image_to_training_scale():
    cfg = WholeImageConfig()
    assert scale_factor((3000, 2400), cfg, 0.05) == pytest.approx(0.25)
    assert scale_factor((4000, 3000), cfg, None) == pytest.approx(1024 / 4000)
    assert scale_factor((1024, 1024), cfg, None) == 1.0
    assert scale_factor((299, 299), cfg, None) == 1.0


def test_grid_covers_the_whole_length():
    assert grid_positions(1024, 299, 150) == [0, 150, 300, 450, 600, 725]
    assert grid_positions(200, 299, 150) == [0]


def test_intensities_are_brought_to_0_255():
    assert to_0_255(np.array([[0, 4095]], np.uint16)).tolist() == [[0.0, 255.0]]
    assert to_0_255(np.array([[0.0, 0.5]], np.float32)).tolist() == [[0.0, 127.5]]
    with pytest.raises(ValueError):
        to_0_255(np.zeros((2, 2, 2, 2)))


def test_loading_a_tampered_artifact_raises_artifact_error(tiny_artifact, tmp_path):
    import shutil

    copy = Path(shutil.copytree(tiny_artifact, tmp_path / "bad"))
    (copy / "model.keras").write_bytes(b"not a model")
    with pytest.raises(ArtifactError):
        Predictor.load(copy)


@needs_mias
def test_the_shipped_model_scores_a_real_lesion_patch_above_a_background_patch():
    from ml.data import crop, read_mias

    predictor = Predictor.load(DEFAULT_ARTIFACT)
    mdb = {f.refnum: f for f in read_mias(mias_dir())}["mdb028"]  # malignant mass
    image = mdb.load()
    lesion = crop(image, mdb.findings[0].centre_rc(), 299)
    background = np.zeros((299, 299), np.uint8)
    probs = predictor.predict_patches(np.stack([lesion, background]))
    assert probs.shape == (2,)
    assert ((probs >= 0) & (probs <= 1)).all()
    assert probs[0] > probs[1]


@needs_mias
def test_the_shipped_model_scores_and_explains_a_whole_film():
    from PIL import Image

    predictor = Predictor.load()
    image = np.asarray(Image.open(mias_dir() / "images" / "mdb028.png"))
    (pred,) = predictor.predict_images([image])
    assert 0.0 <= pred.probability <= 1.0
    assert pred.heatmap.shape == (1024, 1024)
