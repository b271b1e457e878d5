"""Synthetic mammogram-like images for demos and tests: never a real patient.

A film is a breast outline against the chest wall, fibroglandular texture
(low-pass filtered noise, denser near the nipple-chest axis), and optional
findings: masses (bright blobs, spiculated or not) and clusters of
microcalcifications. Pixel values are 12-bit (0-4095) in a uint16 array, the
range of most digital mammography detectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_12BIT = 4095


@dataclass(frozen=True)
class Finding:
    kind: str  # "mass" or "calcification"
    row: int
    col: int
    radius: int


@dataclass
class SyntheticFilm:
    pixels: np.ndarray  # uint16, 12-bit values
    laterality: str  # "L" or "R"
    view: str  # "CC" or "MLO"
    findings: list[Finding] = field(default_factory=list)

    def to_8bit(self) -> np.ndarray:
        return (self.pixels.astype(np.float32) * (255 / MAX_12BIT)).round().astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Gaussian-filtered white noise via the FFT, normalised to zero mean, unit variance."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * scale) ** 2 * (fx**2 + fy**2))
    smooth = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=shape)
    return (smooth - smooth.mean()) / (smooth.std() + 1e-9)


def _breast_mask(height: int, width: int, laterality: str, view: str) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    # Chest wall on the left edge for a left breast image read as hanging protocol, right otherwise.
    depth = cols if laterality == "L" else (width - 1 - cols)
    centre = height * (0.45 if view == "MLO" else 0.5)
    half_height = height * (0.46 if view == "MLO" else 0.40)
    reach = width * 0.78
    return (depth / reach) ** 2 + ((rows - centre) / half_height) ** 2 <= 1.0


def generate_film(
    seed: int,
    height: int = 1024,
    width: int = 832,
    laterality: str = "L",
    view: str = "CC",
    masses: int = 0,
    calcification_clusters: int = 0,
) -> SyntheticFilm:
    """One synthetic film; the same seed always gives the same pixels."""
    rng = np.random.default_rng(seed)
    mask = _breast_mask(height, width, laterality, view)
    coarse = _smooth_noise(rng, (height, width), scale=height / 40)
    fine = _smooth_noise(rng, (height, width), scale=height / 250)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = cols if laterality == "L" else (width - 1 - cols)
    density = np.clip(1.0 - depth / (width * 0.8), 0, 1) * 0.5 + 0.25
    tissue = 0.35 + 0.18 * density + 0.10 * coarse * density + 0.03 * fine
    if view == "MLO":  # the pectoral muscle: a bright triangle in the upper chest-wall corner
        pectoral = (depth / (width * 0.35) + rows / (height * 0.45)) < 1.0
        tissue = np.where(pectoral, tissue + 0.22, tissue)
    image = np.where(mask, tissue, 0.02 + 0.01 * rng.random((height, width)))
    findings: list[Finding] = []
    for _ in range(masses):
        finding = _place(rng, mask, "mass", radius=int(rng.integers(height // 40, height // 16)))
        image = _add_mass(image, finding, rng)
        findings.append(finding)
    for _ in range(calcification_clusters):
        finding = _place(
            rng, mask, "calcification", radius=int(rng.integers(height // 60, height // 30))
        )
        image = _add_calcifications(image, finding, rng)
        findings.append(finding)
    pixels = np.clip(image, 0, 1) * MAX_12BIT
    return SyntheticFilm(pixels.round().astype(np.uint16), laterality, view, findings)


def _place(rng: np.random.Generator, mask: np.ndarray, kind: str, radius: int) -> Finding:
    inside = np.argwhere(mask)
    # Keep findings away from the skin line.
    for _ in range(100):
        row, col = inside[rng.integers(len(inside))]
        r0, r1 = max(0, row - radius), min(mask.shape[0], row + radius + 1)
        c0, c1 = max(0, col - radius), min(mask.shape[1], col + radius + 1)
        if mask[r0:r1, c0:c1].all():
            break
    return Finding(kind, int(row), int(col), radius)


def _add_mass(image: np.ndarray, finding: Finding, rng: np.random.Generator) -> np.ndarray:
    rows, cols = np.ogrid[0 : image.shape[0], 0 : image.shape[1]]
    dist = np.hypot(rows - finding.row, cols - finding.col)
    angle = np.arctan2(rows - finding.row, cols - finding.col)
    spikes = 1 + 0.25 * np.sin(angle * rng.integers(5, 11) + rng.random() * 6.28)
    blob = np.exp(-((dist / (finding.radius * spikes)) ** 2) * 2.0)
    return image + 0.30 * blob + 0.08 * (dist < finding.radius * 0.5 * spikes)


def _add_calcifications(
    image: np.ndarray, finding: Finding, rng: np.random.Generator
) -> np.ndarray:
    out = image.copy()
    for _ in range(int(rng.integers(6, 16))):
        dr, dc = rng.normal(0, finding.radius / 2, size=2)
        r, c = int(finding.row + dr), int(finding.col + dc)
        size = int(rng.integers(1, 3))
        out[max(0, r - size) : r + size + 1, max(0, c - size) : c + size + 1] += 0.45
    return out


def screening_study(
    seed: int, malignant: bool, height: int = 1024, width: int = 832
) -> list[SyntheticFilm]:
    """Four views (L/R × CC/MLO); a malignant study carries findings on one side."""
    rng = np.random.default_rng(seed)
    side = "L" if rng.random() < 0.5 else "R"
    films = []
    for index, (laterality, view) in enumerate(
        [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
    ):
        with_finding = malignant and laterality == side
        films.append(
            generate_film(
                seed * 10 + index,
                height,
                width,
                laterality,
                view,
                masses=int(with_finding and rng.random() < 0.7),
                calcification_clusters=int(with_finding and rng.random() < 0.5),
            )
        )
    return films
