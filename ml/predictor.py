"""Inference on whole images: load an artifact once, score and explain batches of films.

Importing this module is cheap; TensorFlow loads on ``Predictor.load``.

How a whole image is scored (the patch-classifier recipe of the literature):

1. Intensities to 0..255: uint8 as is; other integer or float images are min-max scaled
   per image (a 12-bit DICOM in uint16 included); floats already in [0, 1] are x 255.
2. Scale: the model learnt patches at ``pixel_spacing_mm`` (0.2 mm for mini-MIAS). With a
   known pixel spacing the image is resampled to it; without one, an image whose longer side
   exceeds ``default_long_side`` (1024) is shrunk to it, and a smaller image is taken to be
   at training scale already (a mini-MIAS film, or a single patch).
3. The breast is found (``ml.breast.breast_mask``); ``patch_size`` patches on a grid of step
   ``stride`` are scored when at least ``min_breast_fraction`` of them is breast.
4. Image probability = the maximum patch probability (``aggregation``).
5. Heatmap: each patch's Grad-CAM map, multiplied by that patch's probability, is laid
   over the image taking the maximum where patches overlap, kept inside the breast, and
   resized back to the input's height and width. So the heat is high only where a patch
   is both suspicious and the network looked there.
6. Marks: at most three non-overlapping patches scoring at least 0.5, each placed on the
   heat map's peak inside it, in the input's pixels (``ml.marks.region_marks``).

Whether the score, the heat map or the marks mean anything is measured by ``ml.evaluate``
and recorded in the manifest's ``evidence`` block (``ml.evidence``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.artifacts import DEFAULT_ARTIFACT, Manifest, load_model
from ml.config import WholeImageConfig
from ml.marks import RegionMark, region_marks


@dataclass
class ImagePrediction:
    probability: float
    heatmap: np.ndarray  # float32 in [0, 1], same height and width as the input image
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    patch_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), int))
    patch_probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    marks: list[RegionMark] = field(default_factory=list)  # in the input image's pixels
    scaled_shape: tuple[int, int] | None = None  # the image the patch boxes refer to


def to_0_255(image: np.ndarray) -> np.ndarray:
    """Float32 intensities in 0..255 (see step 1 of the module docstring)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] in (1, 3, 4):
        img = img[..., 0]
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32)
    img = img.astype(np.float32)
    if not np.isfinite(img).all():
        img = np.nan_to_num(img)
    lo, hi = float(img.min()), float(img.max())
    if np.issubdtype(np.asarray(image).dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return img * 255.0
    if hi <= lo:
        return np.zeros_like(img)
    return (img - lo) / (hi - lo) * 255.0


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if img.shape == shape:
        return img
    im = Image.fromarray(img.astype(np.float32))
    return np.asarray(im.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def scale_factor(
    shape: tuple[int, int], config: WholeImageConfig, pixel_spacing_mm: float | None
) -> float:
    if pixel_spacing_mm:
        return float(pixel_spacing_mm) / config.pixel_spacing_mm
    longest = max(shape)
    return config.default_long_side / longest if longest > config.default_long_side else 1.0


def grid_positions(length: int, patch: int, stride: int) -> list[int]:
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def model_input(patches: np.ndarray, size: int, method: str) -> np.ndarray:
    """0..255 grayscale patches (N, S, S) as the network takes them: size, 3 channels, scale."""
    from ml.models import preprocess

    if patches.shape[1:3] != (size, size):
        patches = np.stack([_resize(p, (size, size)) for p in patches])
    x = np.repeat(patches[..., None].astype(np.float32), 3, axis=-1)
    return np.asarray(preprocess(x, method), dtype=np.float32)


def patch_probabilities(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Sigmoid outputs for model-ready input, batch by batch (never ``model.predict``)."""
    out = [
        np.asarray(model.predict_on_batch(x[i : i + batch_size])).reshape(-1)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def tile_image(
    img: np.ndarray, mask: np.ndarray, config: WholeImageConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Patches (N, P, P) and their boxes (N, 4: r0, c0, r1, c1) covering the breast."""
    p = config.patch_size
    h, w = img.shape
    ph, pw = max(h, p), max(w, p)
    if (ph, pw) != (h, w):
        padded = np.zeros((ph, pw), np.float32)
        padded[:h, :w] = img
        pmask = np.zeros((ph, pw), bool)
        pmask[:h, :w] = mask
        img, mask = padded, pmask
    ii = np.zeros((ph + 1, pw + 1), np.int32)  # a count of pixels: int32 to 46k x 46k
    ii[1:, 1:] = mask.astype(np.int32).cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
    boxes, fractions = [], []
    for r in grid_positions(ph, p, config.stride):
        for c in grid_positions(pw, p, config.stride):
            inside = ii[r + p, c + p] - ii[r, c + p] - ii[r + p, c] + ii[r, c]
            boxes.append((r, c, r + p, c + p))
            fractions.append(inside / (p * p))
    fractions_arr = np.asarray(fractions)
    keep = fractions_arr >= config.min_breast_fraction
    if not keep.any():
        keep = fractions_arr == fractions_arr.max()
    chosen = np.asarray(boxes)[keep]
    patches = np.stack([img[r0:r1, c0:c1] for r0, c0, r1, c1 in chosen])
    return patches, chosen


class Predictor:
    """Loads one artifact once; predicts and explains images in batches."""

    def __init__(self, model: Any, manifest: Manifest, artifact_dir: Path | None = None):
        self.model = model
        self.manifest = manifest
        self.artifact_dir = artifact_dir
        pre = manifest.preprocessing
        known = WholeImageConfig.__dataclass_fields__
        self.whole_image = WholeImageConfig(**{k: v for k, v in pre.items() if k in known})
        self.method: str = pre.get("method", "scale_0_1")
        self.gradcam_layer: str | None = pre.get("gradcam_layer")

    @classmethod
    def load(cls, artifact_dir: str | Path = DEFAULT_ARTIFACT) -> Predictor:
        """Verify the checksum and load; raises ``ml.artifacts.ArtifactError``."""
        model, manifest = load_model(artifact_dir)
        return cls(model, manifest, Path(artifact_dir))

    @property
    def threshold(self) -> float:
        return float(self.manifest.threshold)

    def _model_input(self, patches: np.ndarray) -> np.ndarray:
        return model_input(patches, self.manifest.input_size, self.method)

    def _model_ready(self, patches: np.ndarray) -> np.ndarray:
        """Patches at the model's input size, still 0..255 grayscale: channels and
        preprocessing (``model_input``) happen inside the compiled pass."""
        size = self.manifest.input_size
        gray = np.asarray(patches, dtype=np.float32)
        if gray.shape[1:3] != (size, size):
            gray = np.stack([_resize(p, (size, size)) for p in gray])
        return gray

    def explain_patches(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and Grad-CAM maps for 0..255 grayscale patches (N, S, S)."""
        from ml.gradcam import predict_and_gradcam

        return predict_and_gradcam(
            self.model,
            self._model_ready(patches),
            self.gradcam_layer,
            batch_size=self.whole_image.batch_size,
            preprocessing=self.method,
        )

    def predict_patches(self, patches: np.ndarray) -> np.ndarray:
        """Probabilities only, for 0..255 grayscale patches (N, S, S): the batch path."""
        x = self._model_input(np.asarray(patches, dtype=np.float32))
        return patch_probabilities(self.model, x, self.whole_image.batch_size)

    def predict_images(
        self,
        images: list[np.ndarray],
        pixel_spacing_mm: list[float | None] | None = None,
    ) -> list[ImagePrediction]:
        """Score and explain whole images of any size (see the module docstring)."""
        return list(self.iter_predictions(images, pixel_spacing_mm))

    def iter_predictions(
        self,
        images: list[np.ndarray],
        pixel_spacing_mm: list[float | None] | None = None,
    ) -> Iterator[ImagePrediction]:
        """``predict_images`` one image at a time, in order, each as soon as the last batch
        holding its patches is through: a worker stores the first films while the model
        scores the next. All images' patches still go through the model in shared batches."""
        from ml.breast import breast_mask
        from ml.gradcam import iter_predict_and_gradcam

        cfg = self.whole_image
        spacings = pixel_spacing_mm or [None] * len(images)
        prepared = []
        for image, spacing in zip(images, spacings, strict=True):
            t0 = time.perf_counter()
            img = to_0_255(image)
            factor = scale_factor(img.shape, cfg, spacing)
            scaled_shape = (
                max(1, round(img.shape[0] * factor)),
                max(1, round(img.shape[1] * factor)),
            )
            scaled = _resize(img, scaled_shape) if factor != 1.0 else img
            mask = breast_mask(scaled)
            patches, boxes = tile_image(scaled, mask, cfg)
            prepared.append(
                (img.shape, scaled_shape, mask, patches, boxes, time.perf_counter() - t0)
            )
        if not prepared:
            return

        batches = iter_predict_and_gradcam(
            self.model,
            self._model_ready(np.concatenate([p[3] for p in prepared])),
            self.gradcam_layer,
            batch_size=cfg.batch_size,
            preprocessing=self.method,
        )
        queue: list[_BatchRows] = []  # batch rows not yet handed out
        for shape, scaled_shape, mask, patches, boxes, t_pre in prepared:
            p, c, predict_s = _take_rows(queue, batches, len(patches))
            t0 = time.perf_counter()
            if cfg.aggregation == "mean_top3":
                score = float(np.mean(np.sort(p)[-3:]))
            else:
                score = float(p.max())
            ph = max(scaled_shape[0], cfg.patch_size)
            pw = max(scaled_shape[1], cfg.patch_size)
            heat = np.zeros((ph, pw), np.float32)
            for (r0, c0, r1, c1), prob, cam in zip(boxes, p, c, strict=True):
                if cam.shape != (r1 - r0, c1 - c0):
                    cam = _resize(cam, (r1 - r0, c1 - c0))
                np.maximum(heat[r0:r1, c0:c1], prob * cam, out=heat[r0:r1, c0:c1])
            heat = heat[: scaled_shape[0], : scaled_shape[1]] * mask
            heat = np.clip(_resize(heat, shape), 0.0, 1.0).astype(np.float32)
            marks = region_marks(boxes, p, heat, shape, scaled_shape)
            yield ImagePrediction(
                probability=score,
                heatmap=heat,
                timings={
                    "preprocess": t_pre,
                    # one compiled pass yields probabilities and Grad-CAM together;
                    # "predict" is this image's share of it (its patches' share of each
                    # batch they were in), "gradcam" the map assembly
                    "predict": predict_s,
                    "gradcam": time.perf_counter() - t0,
                },
                patch_boxes=boxes,
                patch_probabilities=p,
                marks=marks,
                scaled_shape=scaled_shape,
            )


# Rows of one batch not yet handed out: probabilities, maps, model seconds per patch.
_BatchRows = tuple[np.ndarray, np.ndarray, float]


def _take_rows(
    queue: list[_BatchRows], batches: Iterator[tuple[np.ndarray, np.ndarray, float]], n: int
) -> tuple[np.ndarray, list[np.ndarray], float]:
    """The next ``n`` patches' probabilities, maps (views of the batches, no copy) and
    model seconds, drawing batches as needed; what is left of the last stays queued."""
    taken = []
    while n:
        if not queue:
            prob, cam, seconds = next(batches)
            queue.append((prob, cam, seconds / len(prob)))
        prob, cam, per_patch = queue[0]
        k = min(n, len(prob))
        taken.append((prob[:k], cam[:k], per_patch * k))
        queue[0] = (prob[k:], cam[k:], per_patch)
        if k == len(prob):
            queue.pop(0)
        n -= k
    probabilities = np.concatenate([t[0] for t in taken])
    maps = [cam for t in taken for cam in t[1]]
    return probabilities, maps, sum(t[2] for t in taken)
