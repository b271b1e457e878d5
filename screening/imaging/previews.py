"""A film's preview: a small 8-bit picture the case page paints at once, while the viewer
loads the full-bit-depth film (issue 16: the first image within 300 ms of navigation).

The preview is the film's own rendition (``pictures.display_pixels``: the file's modality
LUT and VOI, MONOCHROME1 inverted, what the AI scores), scaled to at most ``HEIGHT`` rows
and already turned as the hanging protocol hangs it (chest wall towards the middle), so
the viewer's full film replaces it without a jump. It is a picture only: window/level,
measurement and the probe wait for the full film, and the page labels the preview as one.

Made once per stored file (keyed by its SHA-256) when the upload stores it, else on the
first request, and kept under the media folder's ``previews/``: it is derived data,
remade whenever it is missing, so backups need not hold it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from ..choices import Laterality
from ..errors import StorageFull
from ..models import Image
from . import dicom
from .pictures import display_pixels

log = logging.getLogger(__name__)

HEIGHT = 1024  # rows: a 4-up viewport on a 4K reading screen is about this tall
QUALITY = 90
FOLDER = "previews"


def name_of(image: Image) -> str:
    return f"{FOLDER}/{image.sha256}.jpg"


def preview(image: Image) -> bytes:
    """The film's preview (JPEG), made now if it is not kept yet."""
    name = name_of(image)
    try:
        with default_storage.open(name, "rb") as handle:
            return bytes(handle.read())
    except FileNotFoundError:
        pass
    content = make(image)
    if not default_storage.exists(name):  # two first requests at once: keep one
        try:
            default_storage.save(name, ContentFile(content))
        except (StorageFull, OSError):  # kept next time there is room; served now anyway
            log.warning("Preview of image %s not kept: storage", image.pk, exc_info=True)
    return content


def make(image: Image) -> bytes:
    """The preview's JPEG from the stored file (raises FileNotFoundError, FileRejected)."""
    with image.file.open("rb") as handle:
        content = handle.read()
    pixels = display_pixels(content)
    if image.laterality in (Laterality.RIGHT, Laterality.LEFT):
        if chest_wall_on_right(content, pixels) != (image.laterality == Laterality.RIGHT):
            pixels = pixels[:, ::-1]
    picture = PILImage.fromarray(np.ascontiguousarray(pixels))
    if picture.height > HEIGHT:
        width = max(1, round(picture.width * HEIGHT / picture.height))
        picture = picture.resize((width, HEIGHT), PILImage.Resampling.BOX)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def chest_wall_on_right(content: bytes, shown: np.ndarray) -> bool:
    """Where the chest wall is in the stored film, by the viewer's rule
    (viewer/src/viewer.js, hangBackToBack): the header's PatientOrientation where its row
    direction says (P: columns run towards the back), else the edge the tissue touches
    (the brighter tenth of the rendition, in which dense tissue is bright)."""
    if dicom.is_part10(content):
        import pydicom

        ds = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
        orientation = ds.get("PatientOrientation")
        rows = str(orientation[0]) if orientation and len(orientation) >= 1 else ""
        if "P" in rows or "A" in rows:
            return "P" in rows
    band = max(1, shown.shape[1] // 10)
    left = float(shown[::4, :band].astype(np.float64).sum())
    right = float(shown[::4, -band:].astype(np.float64).sum())
    return right > left


def warm(images: Iterable[Image]) -> None:
    """Make the previews of newly stored films, so even a case's first opening paints at
    once; a film whose preview cannot be made is logged and made (or refused) on request."""
    for image in images:
        try:
            preview(image)
        except Exception:  # a preview never fails an upload that stored its film
            log.warning("No preview made for image %s", image.pk, exc_info=True)
