"""Region marks: the few most suspicious places on a film, and how well they find lesions.

Commercial screening AI shows a handful of marks rather than a heat map, because a reader
can check a mark and a scoring rule (FROC) can count it. Marks come from the patch map the
predictor already has: patches are ranked by probability, overlapping ones suppressed, and
each survivor is placed on the Grad-CAM peak inside its box. Pure NumPy: the web process
may import this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_MARKS = 3
# Below the sigmoid's decision point a patch is not called suspicious at all.
MIN_MARK_SCORE = 0.5
# Grid neighbours overlap by half a patch (IoU about 0.33): they describe the same place.
IOU_THRESHOLD = 0.3


@dataclass(frozen=True)
class RegionMark:
    """A circle in the input image's pixels (row, col from the top left) with its score."""

    row: int
    col: int
    radius: int
    score: float

    def to_dict(self) -> dict[str, int | float]:
        return {"row": self.row, "col": self.col, "radius": self.radius, "score": self.score}


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (r0, c0, r1, c1) boxes."""
    dr = min(a[2], b[2]) - max(a[0], b[0])
    dc = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(dr, 0) * max(dc, 0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / area) if area > 0 else 0.0


def _peak_in_box(
    heatmap: np.ndarray | None, box: np.ndarray
) -> tuple[tuple[int, int], np.ndarray | None]:
    """The hottest pixel of the heat map inside ``box`` (the box centre when it is cold)."""
    r0, c0, r1, c1 = (int(v) for v in box)
    centre = ((r0 + r1) // 2, (c0 + c1) // 2)
    if heatmap is None:
        return centre, None
    h, w = heatmap.shape
    r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    region = heatmap[r0:r1, c0:c1]
    if region.size == 0 or float(region.max()) <= 0.0:
        return centre, None
    r, c = np.unravel_index(int(np.argmax(region)), region.shape)
    return (r0 + int(r), c0 + int(c)), region


def _radius(region: np.ndarray | None, box: np.ndarray) -> float:
    """Radius of a disc as large as the half-maximum heat in the box, within 1/8..1/2 box."""
    side = float(min(box[2] - box[0], box[3] - box[1]))
    if region is None:
        return side / 4
    area = float((region >= 0.5 * region.max()).sum())
    return float(np.clip(np.sqrt(area / np.pi), side / 8, side / 2))


def region_marks(
    boxes: np.ndarray,
    probabilities: np.ndarray,
    heatmap: np.ndarray | None,
    image_shape: tuple[int, int],
    scaled_shape: tuple[int, int] | None = None,
    max_marks: int = MAX_MARKS,
    min_score: float = MIN_MARK_SCORE,
    iou_threshold: float = IOU_THRESHOLD,
) -> list[RegionMark]:
    """At most ``max_marks`` non-overlapping marks in the input image's pixel coordinates.

    ``boxes`` are the predictor's patch boxes in the scaled image (``scaled_shape``; the
    same as ``image_shape`` when the film was at training scale); ``heatmap`` is in the
    input image's coordinates, as ``ImagePrediction.heatmap``. A candidate is dropped when
    its box overlaps a kept one by more than ``iou_threshold`` or its centre falls inside a
    kept mark's circle.
    """
    scaled_shape = scaled_shape or image_shape
    fy = image_shape[0] / scaled_shape[0]
    fx = image_shape[1] / scaled_shape[1]
    boxes_in = np.asarray(boxes, dtype=float).reshape(-1, 4) * [fy, fx, fy, fx]
    probs = np.asarray(probabilities, dtype=float).reshape(-1)
    kept_boxes: list[np.ndarray] = []
    marks: list[RegionMark] = []
    for i in np.argsort(-probs, kind="stable"):
        if len(marks) >= max_marks or probs[i] < min_score:
            break
        box = boxes_in[i]
        if any(box_iou(box, k) > iou_threshold for k in kept_boxes):
            continue
        (row, col), region = _peak_in_box(heatmap, box)
        if any((row - m.row) ** 2 + (col - m.col) ** 2 <= m.radius**2 for m in marks):
            continue
        kept_boxes.append(box)
        marks.append(RegionMark(int(row), int(col), round(_radius(region, box)), float(probs[i])))
    return marks


def brightest_point_marks(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    max_marks: int = MAX_MARKS,
    sigma: float | None = None,
) -> list[RegionMark]:
    """The baseline a model must beat: the brightest spots of the smoothed film in the breast.

    Masses are often brighter than the tissue around them, so "mark the brightest blob"
    localises some lesions without any learning. The score is the smoothed intensity
    scaled to [0, 1]; each mark suppresses a disc of ``8 * sigma`` around it.
    """
    from scipy.ndimage import gaussian_filter

    img = np.asarray(image, dtype=np.float32)
    sigma = sigma or max(2.0, 0.01 * max(img.shape))
    smooth = gaussian_filter(img, sigma)
    lo, hi = float(smooth.min()), float(smooth.max())
    score = (smooth - lo) / (hi - lo) if hi > lo else np.zeros_like(smooth)
    if mask is not None and mask.any():
        score = np.where(mask, score, -1.0)
    rr, cc = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    radius = 8 * sigma
    marks: list[RegionMark] = []
    for _ in range(max_marks):
        r, c = np.unravel_index(int(np.argmax(score)), score.shape)
        if score[r, c] < 0:
            break
        marks.append(RegionMark(int(r), int(c), round(radius / 2), float(score[r, c])))
        score[(rr - r) ** 2 + (cc - c) ** 2 <= radius**2] = -1.0
    return marks


# --------------------------------------------------------------------------- FROC


Circle = tuple[float, float, float]  # row, col, radius


def _hits(mark: RegionMark, lesions: Sequence[Circle]) -> list[int]:
    return [
        j
        for j, (r, c, rad) in enumerate(lesions)
        if (mark.row - r) ** 2 + (mark.col - c) ** 2 <= rad**2
    ]


def froc(
    marks: Sequence[Sequence[RegionMark]], lesions: Sequence[Sequence[Circle]]
) -> list[tuple[float, float]]:
    """FROC points (false marks per image, lesion sensitivity), sweeping the mark score.

    A mark is a hit when its centre lies inside an annotated lesion circle; a lesion is
    found when any mark at or above the threshold hits it; every other mark is false.
    Images without lesions count in the denominator of false marks per image.
    """
    n_images = len(marks)
    n_lesions = sum(len(ls) for ls in lesions)
    flat = [
        (m.score, i, _hits(m, lesions[i])) for i, per_image in enumerate(marks) for m in per_image
    ]
    flat.sort(key=lambda t: -t[0])
    points = [(0.0, 0.0)]
    found: set[tuple[int, int]] = set()
    false = 0
    for k, (score, image, hit) in enumerate(flat):
        if hit:
            found.update((image, j) for j in hit)
        else:
            false += 1
        if k + 1 < len(flat) and flat[k + 1][0] == score:
            continue  # one threshold admits all marks of equal score together
        points.append(
            (false / max(n_images, 1), len(found) / n_lesions if n_lesions else float("nan"))
        )
    return points


def froc_steps(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points where sensitivity rises, plus the last: the same curve, a few points long.

    ``sensitivity_at`` reads the same figures from these as from the full sweep.
    """
    steps: list[tuple[float, float]] = []
    for f, s in points:
        if not steps or s > steps[-1][1]:
            steps.append((f, s))
    if points:
        last = (float(points[-1][0]), float(points[-1][1]))
        if steps[-1] != last:
            steps.append(last)
    return steps


def sensitivity_at(points: Sequence[tuple[float, float]], false_per_image: float) -> float:
    """Best lesion sensitivity reached with at most ``false_per_image`` false marks."""
    ok = [s for f, s in points if f <= false_per_image + 1e-12]
    return float(max(ok)) if ok else 0.0


def lesions_found(
    marks: Sequence[Sequence[RegionMark]],
    lesions: Sequence[Sequence[Circle]],
    false_per_image: float,
) -> list[bool]:
    """Which lesions (in order, image by image) the marks find at ``sensitivity_at``'s
    operating point: the lowest score threshold with at most ``false_per_image`` false
    marks per image. Recorded so two markers can be compared lesion by lesion."""
    n_images = len(marks)
    flat = [
        (m.score, i, _hits(m, lesions[i])) for i, per_image in enumerate(marks) for m in per_image
    ]
    flat.sort(key=lambda t: -t[0])
    found: set[tuple[int, int]] = set()
    taken: set[tuple[int, int]] = set()
    false = 0
    for k, (score, image, hit) in enumerate(flat):
        if hit:
            taken.update((image, j) for j in hit)
        else:
            false += 1
        if k + 1 < len(flat) and flat[k + 1][0] == score:
            continue  # one threshold admits all marks of equal score together
        if false / max(n_images, 1) > false_per_image + 1e-12:
            break
        found = set(taken)
    return [(i, j) in found for i, per_image in enumerate(lesions) for j in range(len(per_image))]
