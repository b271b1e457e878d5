"""Builders for the seed's three classifiers and EfficientNetV2-B0, Keras 3 public API only.

Each model maps a ``(input_size, input_size, 3)`` batch of *preprocessed* pixels to one
sigmoid probability. Transfer models are built flat (``input_tensor=inputs``) so that
Grad-CAM tools can reach their last convolution. Keras is imported inside functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ml.config import ModelConfig

if TYPE_CHECKING:
    import keras

# Layer Grad-CAM differentiates against, per architecture.
GRADCAM_LAYER: dict[str, str] = {
    "custom_cnn": "conv4",
    "vgg16": "block5_conv3",
    "resnet50v2": "post_relu",
    "efficientnetv2b0": "top_activation",
}

# Pixel preprocessing applied to 0..255 grayscale replicated to three channels.
PREPROCESSING: dict[str, str] = {
    "custom_cnn": "scale_0_1",  # x / 255
    "vgg16": "caffe",  # RGB->BGR, minus the ImageNet channel means
    "resnet50v2": "scale_-1_1",  # x / 127.5 - 1
    # scales and normalises inside the network (its own Rescaling + fixed ImageNet
    # Normalization layers), so the pixels go in unchanged with or without ImageNet weights
    "efficientnetv2b0": "raw_0_255",
}

# Every method ``preprocess`` knows; a brought ("external") model names one in its manifest.
# "raw_0_255" feeds the pixels unchanged, for a model that scales inside itself.
PREPROCESSING_METHODS: tuple[str, ...] = ("scale_0_1", "scale_-1_1", "caffe", "raw_0_255")

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
OUTPUT_LAYER = "prediction"


def preprocess(x: Any, method: str) -> Any:
    """Map 0..255 three-channel pixels to model input; works on NumPy arrays and tensors."""
    if method == "scale_0_1":
        return x / 255.0
    if method == "scale_-1_1":
        return x / 127.5 - 1.0
    if method == "raw_0_255":
        return x
    if method == "caffe":
        x = x[..., ::-1]
        return x - _CAFFE_MEAN_BGR
    raise ValueError(f"unknown preprocessing {method!r}")


def build_model(config: ModelConfig) -> keras.Model:
    builders = {
        "custom_cnn": build_custom_cnn,
        "vgg16": build_vgg16,
        "resnet50v2": build_resnet50v2,
        "efficientnetv2b0": build_efficientnetv2b0,
    }
    try:
        builder = builders[config.arch]
    except KeyError:
        raise ValueError(f"unknown architecture {config.arch!r}") from None
    return builder(config)


def _head(x: Any, inputs: Any, name: str) -> keras.Model:
    import keras

    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name=name)


def _local_weights(config: ModelConfig) -> str | None:
    """Weights for the Keras application builder: "imagenet" or None (files load later)."""
    return "imagenet" if config.weights == "imagenet" else None


def _load_file_weights(model: keras.Model, config: ModelConfig) -> None:
    if config.weights not in (None, "imagenet"):
        model.load_weights(config.weights)


def build_custom_cnn(config: ModelConfig) -> keras.Model:
    """Four Conv2D(3x3, ReLU) + BatchNorm + MaxPool blocks (32/64/128/256), GAP, sigmoid."""
    import keras

    size = config.input_size
    inputs = keras.Input((size, size, 3), name="image")
    x = inputs
    if config.internal_size and config.internal_size != size:
        x = keras.layers.Resizing(
            config.internal_size, config.internal_size, interpolation="bilinear", name="resize"
        )(x)
    for i, filters in enumerate((32, 64, 128, 256), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    model = _head(x, inputs, "custom_cnn")
    _load_file_weights(model, config)
    return model


def _transfer(config: ModelConfig, application: Any, name: str, **options: Any) -> keras.Model:
    import keras

    size = config.input_size
    inputs = keras.Input((size, size, 3), name="image")
    base = application(
        include_top=False, weights=_local_weights(config), input_tensor=inputs, **options
    )
    model = _head(base.output, inputs, name)
    if config.weights is not None and config.freeze_base:
        set_base_trainable(model, False)
    _load_file_weights(model, config)
    return model


def build_vgg16(config: ModelConfig) -> keras.Model:
    import keras

    return _transfer(config, keras.applications.VGG16, "vgg16")


def build_resnet50v2(config: ModelConfig) -> keras.Model:
    import keras

    return _transfer(config, keras.applications.ResNet50V2, "resnet50v2")


def build_efficientnetv2b0(config: ModelConfig) -> keras.Model:
    """EfficientNetV2-B0 (the founding report's future work): 5.9 M weights in all, a quarter
    of ResNet50V2's 23.6 M. ``weights="imagenet"`` downloads them where there is
    internet; here it is built with none (or a local file)."""
    import keras

    return _transfer(
        config, keras.applications.EfficientNetV2B0, "efficientnetv2b0", include_preprocessing=True
    )


def set_base_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze or unfreeze everything except the classification head (for fine-tuning)."""
    for layer in model.layers:
        if layer.name not in ("gap", OUTPUT_LAYER):
            layer.trainable = trainable


def count_parameters(model: keras.Model) -> int:
    return int(model.count_params())
