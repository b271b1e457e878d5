"""A film's frame losslessly compressed as JPEG-LS (ISO 14495-1, lossless mode; DICOM
transfer syntax 1.2.840.10008.1.2.4.80), which WADO-RS sends a client that takes any
transfer syntax, such as the case viewer, where the site says so
(``settings.DICOMWEB_LOSSLESS_FRAMES``): half or less of a native frame's bytes on the wire
(issue 24: 108 MB of native frames per four-view case), decoded in the browser's worker by
the CharLS codec the viewer already carries (``viewer/build.mjs``). It pays only where the
link, not the reading station's CPU, is what is slow (``docs/viewer-frames.md``).

Never lossy: the encoded frame is decoded again when it is made and kept only where every
decoded value equals the stored one, so a codec that changed a single pixel leaves the film
served as stored. Made for films stored native (uncompressed Little Endian, one frame, one
sample, unsigned, values within Bits Stored); a film stored compressed is sent as it lies.

Made once per stored file (keyed by its SHA-256) when the upload stores it (on a site that
sends them), else on the first frame request, and kept under the media folder's ``frames/``: derived data, remade
whenever it is missing, so backups need not hold it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from ..errors import StorageFull
from ..models import Image

log = logging.getLogger(__name__)

JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
FOLDER = "frames"
NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})
MISSING = b""  # kept for a film that gets no rendition, so it is not tried on every request


def name_of(image: Image) -> str:
    return f"{FOLDER}/{image.sha256}.jls"


def compressed_frame(image: Image) -> bytes | None:
    """The film's JPEG-LS lossless frame, made now if it is not kept yet; None for a film
    that gets none (not stored native, or a round trip that was not exact)."""
    name = name_of(image)
    try:
        with default_storage.open(name, "rb") as handle:
            return bytes(handle.read()) or None
    except FileNotFoundError:
        pass
    with image.file.open("rb") as handle:
        frame = encode(handle.read())
    if not default_storage.exists(name):  # two first requests at once: keep one
        try:
            default_storage.save(name, ContentFile(frame or MISSING))
        except (StorageFull, OSError):  # kept next time there is room; served now anyway
            log.warning("Lossless frame of image %s not kept: storage", image.pk, exc_info=True)
    return frame


def encode(content: bytes) -> bytes | None:
    """The JPEG-LS lossless frame of a Part 10 file stored native, checked bit for bit
    against the stored pixels; None where the file does not qualify or the check fails."""
    import pydicom
    from pydicom.pixels import get_encoder
    from pydicom.uid import JPEGLSLossless

    ds = pydicom.dcmread(io.BytesIO(content))
    stored = native_values(ds)
    if stored is None:
        return None
    frame = bytes(get_encoder(JPEGLSLossless).encode(ds, index=0, encoding_plugin="pyjpegls"))
    if not decodes_to(frame, stored):
        log.error("JPEG-LS round trip differed for SOP %s: served native", ds.SOPInstanceUID)
        return None
    return frame


def native_values(ds: Any) -> np.ndarray | None:
    """The stored frame's values exactly as its bytes hold them (rows x columns), for a
    film that qualifies; None otherwise."""
    if str(ds.file_meta.TransferSyntaxUID) not in NATIVE_SYNTAXES or "PixelData" not in ds:
        return None
    if int(ds.get("NumberOfFrames", 1) or 1) != 1 or int(ds.SamplesPerPixel) != 1:
        return None
    bits, allocated = int(ds.BitsStored), int(ds.BitsAllocated)
    if int(ds.PixelRepresentation) != 0 or allocated not in (8, 16) or not 2 <= bits <= 16:
        return None
    rows, columns = int(ds.Rows), int(ds.Columns)
    dtype = np.dtype("<u2") if allocated == 16 else np.dtype("u1")
    raw = bytes(ds.PixelData)[: rows * columns * dtype.itemsize]
    if len(raw) != rows * columns * dtype.itemsize:
        return None
    values = np.frombuffer(raw, dtype=dtype).reshape(rows, columns)
    if int(values.max(initial=0)) >= 1 << bits:  # bits above Bits Stored: leave as stored
        return None
    return values


def decodes_to(frame: bytes, stored: np.ndarray) -> bool:
    """Whether the JPEG-LS frame decodes (CharLS, the browser's codec too) to exactly the
    stored values."""
    import jpeg_ls

    decoded = np.asarray(jpeg_ls.decode(np.frombuffer(frame, dtype=np.uint8)))
    return decoded.shape == stored.shape and bool(np.array_equal(decoded, stored))


def warm(images: Iterable[Image]) -> None:
    """Make the lossless frames of newly stored films, so their first viewing is sent
    compressed at once; a film whose frame cannot be made is logged and served as stored."""
    for image in images:
        if not (image.file.name or "").endswith(".dcm"):
            continue
        try:
            compressed_frame(image)
        except Exception:  # never fails an upload that stored its film
            log.warning("No lossless frame made for image %s", image.pk, exc_info=True)
