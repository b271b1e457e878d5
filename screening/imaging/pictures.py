"""Checks an uploaded file is a whole, sane PNG, JPEG or DICOM before anything is stored.

Everything Pillow can raise is caught here, at upload, by forcing a full decode (and, for
PNG, a check of every chunk up to IEND), so a bad file never reaches the database, the
storage or a worker. DICOM files are handed to ``dicom``, which checks, decodes
and de-identifies them. Either way a film with nothing on it is refused (``films.refuse_blank``).
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from http import HTTPStatus

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from PIL import Image as PILImage
from PIL import ImageFile, UnidentifiedImageError

from ..choices import Laterality, SourceFormat, View
from . import dicom, streams
from .dicom import DicomHeader
from .films import FileRejected, refuse_blank

ACCEPTED_FORMATS = {"PNG": SourceFormat.PNG, "JPEG": SourceFormat.JPEG}
BIT_DEPTH_BY_MODE = {
    "1": 1,
    "L": 8,
    "P": 8,
    "LA": 8,
    "RGB": 8,
    "RGBA": 8,
    "I;16": 16,
    "I;16B": 16,
    "I;16L": 16,
    "I": 32,
    "F": 32,
}
# Pillow modes whose first plane is the grey level, the plane the model scores (and the
# worker reads). Refused: "1" (bilevel: a mask, not a film), "P"/"PA" (palette indices,
# not intensities), "CMYK" (the first plane is cyan ink), and modes no film is stored in.
GREY_FIRST_MODES = frozenset({"L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I"})
# "L_CC", "RMLO", "left-cc" ... in a file name tell laterality and view when known.
VIEW_IN_NAME = re.compile(r"(?<![a-z])(l|r|left|right)[-_ ]?(cc|mlo)(?![a-z])", re.IGNORECASE)


@dataclass(frozen=True)
class InspectedImage:
    content: bytes
    sha256: str
    source_format: str
    width: int
    height: int
    bit_depth: int
    extension: str
    dicom: DicomHeader | None = None  # DICOM only; ``content`` is then the de-identified file


def _too_large() -> FileRejected:
    limit_mb = settings.UPLOAD_MAX_FILE_BYTES // (1024 * 1024)
    return FileRejected(
        "too_large",
        f"File is larger than the {limit_mb} MB limit.",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    )


def inspect_image(name: str, size: int | None, content_reader) -> InspectedImage:  # noqa: ANN001
    """Read, hash and fully decode one uploaded file, or raise FileRejected.

    ``size`` is the upload's declared size, checked before reading; a file that declares
    none (Django's uploads always do) is measured once read.

    For DICOM the original bytes only live in memory here: what is returned (and
    hashed, and later stored) is the de-identified file.
    """
    if size is not None and size > settings.UPLOAD_MAX_FILE_BYTES:
        raise _too_large()
    content = content_reader()
    if size is None and len(content) > settings.UPLOAD_MAX_FILE_BYTES:
        raise _too_large()
    if not content:
        raise FileRejected("empty", "File is empty.")
    if dicom.is_part10(content):
        checked = dicom.inspect_dicom(content)
        return InspectedImage(
            content=checked.content,
            sha256=hashlib.sha256(checked.content).hexdigest(),
            source_format=SourceFormat.DICOM,
            width=checked.width,
            height=checked.height,
            bit_depth=checked.bit_depth,
            extension="dcm",
            dicom=checked.header,
        )
    image_format, width, height, mode = _decode_fully(content)
    stored = pixels_only(content, image_format)
    return InspectedImage(
        content=stored,
        sha256=hashlib.sha256(stored).hexdigest(),
        source_format=ACCEPTED_FORMATS[image_format],
        width=width,
        height=height,
        bit_depth=BIT_DEPTH_BY_MODE.get(mode, 8),
        extension="png" if image_format == "PNG" else "jpg",
    )


def _decode_fully(content: bytes) -> tuple[str, int, int, str]:
    max_pixels = settings.UPLOAD_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(content)) as img:
                if img.format not in ACCEPTED_FORMATS:
                    raise FileRejected(
                        "unsupported_format",
                        f"{img.format} images are not accepted; upload PNG or JPEG.",
                    )
                width, height = img.size
                # Refuse on the declared size, before a single pixel is decoded.
                if width * height > max_pixels:
                    raise FileRejected(
                        "too_many_pixels",
                        f"Image is {width}×{height} pixels, above the limit of "
                        f"{max_pixels // 1_000_000} megapixels.",
                    )
                if getattr(img, "n_frames", 1) > 1:
                    raise FileRejected("multi_frame", "Multi-frame images are not accepted.")
                _load_film(img)
                image_format, mode = img.format, img.mode
            if image_format == "PNG":
                _verify_png(content)
            else:
                _check_jpeg(content)
            return image_format, width, height, mode
    except FileRejected:
        raise
    except UnidentifiedImageError:
        raise FileRejected(
            "not_an_image", "Not a PNG or JPEG image, nor a DICOM (Part 10) file."
        ) from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise FileRejected(
            "decompression_bomb", "Image declares more pixels than allowed (decompression bomb)."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise FileRejected("corrupt", f"Image is truncated or corrupt ({_short(exc)}).") from None


def _load_film(img: PILImage.Image) -> None:
    """Decode every pixel, and check the plane the worker will score is a film."""
    if img.mode not in GREY_FIRST_MODES:
        raise FileRejected(
            "not_grayscale",
            f"Image mode {img.mode} (palette, bilevel, CMYK or other) is not accepted; save "
            "the film as a grayscale (or RGB) PNG or JPEG.",
        )
    _require_strict_pillow()
    img.load()
    refuse_blank(_as_shown(_scored_plane(np.asarray(img), img.height, img.width)))


def _require_strict_pillow() -> None:
    """Pillow pads a truncated JPEG with grey when this global is on: never accept that."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImproperlyConfigured(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on: truncated uploads would be accepted."
        )


def _check_jpeg(content: bytes) -> None:
    """The stream walked whole to its end-of-image marker (``streams``), then decoded a
    second time by libjpeg, which refuses some corrupt data libjpeg-turbo pads."""
    import libjpeg

    kind = streams.read_jpeg(content, trailing_allowed=True).kind
    try:
        libjpeg.decode(content[: streams.jpeg_end(content)])
    except (RuntimeError, ValueError) as exc:
        raise streams.corrupt(kind, f"the strict decoder refuses it: {_short(exc)}") from None


def _verify_png(content: bytes) -> None:
    """Every chunk's CRC, up to IEND: Pillow decodes a PNG cut after its image data."""
    with PILImage.open(io.BytesIO(content)) as img:
        img.verify()


def pixels_only(content: bytes, image_format: str) -> bytes:
    """The file as it is stored: its pixels and nothing else (issue 22).

    Text chunks, EXIF, XMP, comments and ICC profiles can carry a name, and the stored file
    is what readers download and what backups hold. A PNG is encoded again from its
    decoded pixels (lossless, in its own mode); a JPEG keeps its tables and compressed
    data byte for byte and loses only its APPn and COM segments (a re-encode would lose
    detail). Either way the result must decode to exactly the pixels checked, or the film
    is refused rather than stored changed.
    """
    original = _decoded(content)
    if image_format == "PNG":
        with PILImage.open(io.BytesIO(content)) as img:
            img.load()
            bare = PILImage.frombytes(img.mode, img.size, img.tobytes())
        buffer = io.BytesIO()
        bare.save(buffer, format="PNG")
        candidates = [buffer.getvalue()]
    else:
        clean = streams.jpeg_without_metadata(content)
        # An Adobe segment's transform flag decides how three components decode: kept,
        # rewritten without its text, only where leaving it out would change the colours.
        candidates = [clean, clean[:2] + streams.adobe_segment(content) + clean[2:]]
    for candidate in candidates:
        if _decoded(candidate) == original:
            return candidate
    raise FileRejected(
        "corrupt", "Image cannot be stored without its metadata: its pixels would change."
    )


def _decoded(content: bytes) -> tuple[str, tuple[int, int], bytes]:
    with PILImage.open(io.BytesIO(content)) as img:
        img.load()
        return img.mode, img.size, img.tobytes()


def _scored_plane(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The plane the worker scores: the image as decoded, its first channel if several."""
    plane = pixels[..., 0] if pixels.ndim == 3 else pixels
    if plane.shape != (height, width):
        raise FileRejected(
            "corrupt", "Image does not decode to one 2-D plane of the size it declares."
        )
    return plane


def _as_shown(plane: np.ndarray) -> np.ndarray:
    """8-bit as stored; deeper data stretched from its own range, as viewer and model do."""
    if plane.dtype == np.uint8:
        return plane
    lo, hi = float(plane.min()), float(plane.max())
    if hi <= lo:
        return np.zeros(plane.shape, np.uint8)
    scaled = (plane.astype(np.float32) - lo) * np.float32(255.0 / (hi - lo))
    return scaled.round().astype(np.uint8)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def view_from_name(name: str) -> tuple[str, str]:
    """Laterality and view from a conventional file name, blank when not stated."""
    match = VIEW_IN_NAME.search(name.rsplit("/", 1)[-1])
    if not match:
        return Laterality.UNKNOWN, View.UNKNOWN
    side = Laterality.LEFT if match.group(1).lower().startswith("l") else Laterality.RIGHT
    return side, View(match.group(2).upper())


def display_png(content: bytes) -> bytes:
    """An 8-bit rendition for the browser, which shows only the top byte of a 16-bit PNG.

    Detector data (12-bit in a 16-bit container) would look black; the stored pixels'
    own range is stretched to 0-255, the default window of a viewer with no VOI LUT.
    A DICOM file is shown through its own VOI (``dicom.rendition``, what the model sees).
    """
    buffer = io.BytesIO()
    PILImage.fromarray(display_pixels(content)).save(buffer, format="PNG")
    return buffer.getvalue()


def display_pixels(content: bytes) -> np.ndarray:
    """The stored file as the 8-bit grayscale a reader sees, whatever its format."""
    return pixels_and_rendition(content)[1]


def pixels_and_rendition(content: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The stored file decoded once: the pixels the model scores (a PNG/JPEG as stored, a
    DICOM through its VOI) and the 8-bit grayscale a reader sees (the same for DICOM)."""
    if dicom.is_part10(content):
        shown = dicom.rendition_of(content)
        return shown, shown
    with PILImage.open(io.BytesIO(content)) as img:
        img.load()
        pixels = np.asarray(img)
    return pixels, stretch_to_8bit(pixels)


def stretch_to_8bit(pixels: np.ndarray) -> np.ndarray:
    """Decoded PNG/JPEG pixels as a reader sees them: the first channel, its own range
    stretched to 0-255."""
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    lo, hi = float(pixels.min()), float(pixels.max())
    scaled = (pixels.astype(np.float32) - lo) * (255.0 / (hi - lo)) if hi > lo else pixels * 0
    return scaled.round().astype(np.uint8)
