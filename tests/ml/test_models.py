import json
from pathlib import Path

import numpy as np
import pytest

from ml.config import ModelConfig, TrainConfig
from ml.models import GRADCAM_LAYER, build_model, preprocess


@pytest.mark.parametrize("arch", ["custom_cnn", "vgg16", "resnet50v2", "efficientnetv2b0"])
def test_each_architecture_maps_a_batch_to_one_probability(arch):
    model = build_model(ModelConfig(arch, input_size=32))
    out = np.asarray(model(np.zeros((2, 32, 32, 3), np.float32)))
    assert out.shape == (2, 1)
    assert ((out >= 0) & (out <= 1)).all()


@pytest.mark.parametrize("arch", ["vgg16", "resnet50v2", "efficientnetv2b0"])
def test_transfer_models_are_flat_so_the_last_convolution_is_reachable(arch):
    import keras

    model = build_model(ModelConfig(arch, input_size=32))
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    keras.Model(model.inputs, model.get_layer(GRADCAM_LAYER[arch]).output)  # no error


def test_custom_cnn_has_the_seeds_four_blocks_and_accepts_299_input_when_resizing():
    model = build_model(ModelConfig("custom_cnn", input_size=299, internal_size=64))
    convs = [layer for layer in model.layers if layer.name.startswith("conv")]
    assert [c.filters for c in convs] == [32, 64, 128, 256]
    assert model.input_shape == (None, 299, 299, 3)


def test_efficientnet_takes_raw_pixels_and_scales_them_inside_itself():
    """Its manifest says ``raw_0_255``: the network's own Rescaling and ImageNet Normalization
    do the work, so feeding pixels already scaled to 0..1 gives another answer."""
    import keras

    from ml.models import PREPROCESSING

    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig("efficientnetv2b0", input_size=32))
    assert PREPROCESSING["efficientnetv2b0"] == "raw_0_255"
    kinds = {type(layer).__name__ for layer in model.layers[:4]}
    assert {"Rescaling", "Normalization"} <= kinds
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    assert not np.allclose(np.asarray(model(x)), np.asarray(model(x / 255.0)))


def test_efficientnet_imagenet_weights_are_asked_of_keras_and_freeze_the_base(monkeypatch):
    """Offline here, so Keras' download is replaced by the weights of a fresh copy: what is
    tested is that ``--weights imagenet`` reaches Keras and freezes the base for fine-tuning."""
    import keras

    asked = []
    real = keras.applications.EfficientNetV2B0

    def application(**kwargs):
        asked.append(kwargs["weights"])
        return real(**{**kwargs, "weights": None})

    monkeypatch.setattr(keras.applications, "EfficientNetV2B0", application)
    model = build_model(ModelConfig("efficientnetv2b0", input_size=32, weights="imagenet"))
    assert asked == ["imagenet"]
    trainable = {layer.name for layer in model.layers if layer.trainable and layer.weights}
    assert trainable == {"prediction"}


def test_local_weights_file_is_loaded(tmp_path: Path):
    a = build_model(ModelConfig("custom_cnn", input_size=32))
    path = tmp_path / "w.weights.h5"
    a.save_weights(path)
    b = build_model(ModelConfig("custom_cnn", input_size=32, weights=str(path)))
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_preprocessing_methods_match_keras_applications():
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(
        preprocess(x, "caffe"), keras.applications.vgg16.preprocess_input(x.copy()), atol=1e-4
    )
    np.testing.assert_allclose(
        preprocess(x, "scale_-1_1"),
        keras.applications.resnet_v2.preprocess_input(x.copy()),
        atol=1e-5,
    )


@pytest.mark.parametrize("arch", ["custom_cnn", "vgg16", "resnet50v2", "efficientnetv2b0"])
def test_a_few_training_steps_write_a_complete_run_directory(arch, ddsm_dir: Path, tmp_path):
    from ml.artifacts import load_manifest, verify_checksum
    from ml.runs import run

    cfg = TrainConfig(
        model=ModelConfig(arch, input_size=32),
        data=str(ddsm_dir),
        out_dir=str(tmp_path / arch),
        epochs=1,
        steps_per_epoch=2,
        batch_size=4,
        bootstrap=20,
        verbose=0,
        run_eagerly=arch != "custom_cnn",  # tracing ResNet50V2 alone takes a minute here
    )
    out = run(cfg)
    for name in [
        "config.json",
        "model.keras",
        "history.csv",
        "metrics.json",
        "manifest.json",
        "MODEL_CARD.md",
        "training_curves.png",
        "patch_test_roc.png",
        "patch_test_pr.png",
        "patch_test_confusion.png",
    ]:
        assert (out / name).is_file(), name
    assert TrainConfig.load(out / "config.json") == cfg
    manifest = verify_checksum(out)
    assert load_manifest(out).architecture == arch
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["patch"]["test"]["auc"] <= 1.0
    assert manifest.threshold == metrics["patch"]["threshold"]  # no whole images here
    assert "not for clinical use" in (out / "MODEL_CARD.md").read_text()
