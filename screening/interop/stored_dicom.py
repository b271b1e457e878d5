"""A stored, de-identified DICOM instance as DICOMweb retrieves it: its bytes, its
metadata (DICOM JSON) and its frame's pixel data.

The stored file is the one the upload checked and de-identified (``screening.imaging.dicom``):
nothing here reads anything but that file, so retrieve can give out nothing the
de-identification removed.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..imaging import lossless
from ..models import Image

EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", EXPLICIT_LITTLE})
PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class StoredInstance:
    image: Image
    series_uid: str

    @classmethod
    def of(cls, image: Image) -> StoredInstance:
        import pydicom

        with image.file.open("rb") as handle:
            ds = pydicom.dcmread(
                handle, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]
            )
        return cls(image=image, series_uid=str(ds.get("SeriesInstanceUID", "")))

    def content(self) -> bytes:
        with self.image.file.open("rb") as handle:
            return handle.read()

    def dataset(self) -> Any:
        import pydicom

        return pydicom.dcmread(io.BytesIO(self.content()))

    def metadata(self) -> dict[str, Any]:
        """DICOM JSON (PS3.18 F.2) of the instance without its pixel data, plus the
        transfer syntax (0002,0010) so a client knows how its frames are encoded."""
        import pydicom

        with self.image.file.open("rb") as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
        meta = ds.to_json_dict(bulk_data_threshold=1 << 20)
        meta["00020010"] = {"vr": "UI", "Value": [str(ds.file_meta.TransferSyntaxUID)]}
        return meta

    def native_pixels(self) -> tuple[int, int] | None:
        """(offset, length) of the pixel data in the stored file when it is stored native
        (little endian, one frame), so a frame can be streamed from the file as it lies;
        None otherwise."""
        import pydicom

        with self.image.file.open("rb") as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
            if str(ds.file_meta.TransferSyntaxUID) not in NATIVE_SYNTAXES:
                return None
            start = handle.tell()
            head = handle.read(12)
        explicit = str(ds.file_meta.TransferSyntaxUID) == EXPLICIT_LITTLE
        if head[:4] != b"\xe0\x7f\x10\x00":
            return None
        size_at, header = (8, 12) if explicit else (4, 8)
        length = int.from_bytes(head[size_at : size_at + 4], "little")
        return (start + header, length) if length != 0xFFFFFFFF else None

    def lossless_frame(self) -> bytes | None:
        """The frame as JPEG-LS lossless (``screening.imaging.lossless``), for a film stored
        native; None where there is none."""
        return lossless.compressed_frame(self.image)

    def chunks(self, offset: int, length: int, size: int = 1 << 23) -> Iterator[bytes]:
        with self.image.file.open("rb") as handle:
            handle.seek(offset)
            while length > 0:
                data = handle.read(min(size, length))
                if not data:
                    return
                length -= len(data)
                yield data

    def frame(self, native: bool) -> tuple[str, bytes]:
        """(transfer syntax, pixel data) of the one frame: as stored, or when ``native``
        (or stored big-endian) decoded to Explicit VR Little Endian."""
        ds = self.dataset()
        syntax = str(ds.file_meta.TransferSyntaxUID)
        if syntax in NATIVE_SYNTAXES:
            return EXPLICIT_LITTLE, bytes(ds.PixelData)
        if not native and ds.file_meta.TransferSyntaxUID.is_compressed:
            from pydicom.encaps import generate_fragmented_frames

            fragments = next(generate_fragmented_frames(ds.PixelData, number_of_frames=1))
            return syntax, b"".join(fragments)
        pixels = ds.pixel_array
        return EXPLICIT_LITTLE, pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
