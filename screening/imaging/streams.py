"""Compressed pixel streams checked whole before a film is stored (issue 22).

The decoders the app uses are lenient on purpose, for viewing: libjpeg (pylibjpeg) decodes a
JPEG cut to a fifth of its length and fills the rest with flat grey; Pillow does the same for
a cut stream that still ends with its end-of-image marker, and neither complains of corrupt
entropy-coded data. A film decoded like that would be read and scored as if seen whole.

So every stream is first walked through its own structure, which says where it must end:
JPEG and JPEG-LS marker segments up to the end-of-image marker, JPEG 2000 tile-parts by
their declared lengths up to the end-of-codestream marker, RLE segments by the bytes they
decode to. A stream that stops before that end, carries bytes after it, is of another kind
than its transfer syntax names, or describes another image than the header does, is
refused here with the reason. Then ``dicom`` decodes it with the strictest decoder there is
for its kind (``STRICT_PLUGINS``) as well as the viewer's own.

What this cannot see: a flipped bit in entropy-coded data that the decoders read without
complaint into a plausible image (JPEG baseline and lossless, JPEG 2000, RLE carry no
checksum). The README gives the measured rates.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from .films import FileRejected

# The kind of stream each transfer syntax may carry (PS3.5 A.4). Extended JPEG decoders
# read baseline too (PS3.5 A.4.1), and HTJ2K allows plain JPEG 2000 code-blocks.
KINDS_BY_SYNTAX: dict[str, frozenset[str]] = {
    JPEGBaseline8Bit: frozenset({"JPEG baseline (SOF0)"}),
    JPEGExtended12Bit: frozenset({"JPEG baseline (SOF0)", "JPEG extended (SOF1)"}),
    JPEGLossless: frozenset({"JPEG lossless (SOF3)"}),
    JPEGLosslessSV1: frozenset({"JPEG lossless (SOF3)"}),
    JPEGLSLossless: frozenset({"JPEG-LS (SOF55)"}),
    JPEGLSNearLossless: frozenset({"JPEG-LS (SOF55)"}),
    JPEG2000Lossless: frozenset({"JPEG 2000"}),
    JPEG2000: frozenset({"JPEG 2000"}),
    HTJ2KLossless: frozenset({"JPEG 2000", "HTJ2K"}),
    HTJ2KLosslessRPCL: frozenset({"JPEG 2000", "HTJ2K"}),
    HTJ2K: frozenset({"JPEG 2000", "HTJ2K"}),
    RLELossless: frozenset({"RLE"}),
}
# The syntaxes whose frames are JPEG or JPEG-LS marker streams (APPn and COM included).
JPEG_SYNTAXES = frozenset(
    {
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
    }
)
J2K_SYNTAXES = frozenset({JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K})
# A decoder that refuses what the viewer's decoder pads: CharLS checks every JPEG-LS run,
# libjpeg-turbo (through Pillow) refuses an 8-bit JPEG that ends early.
STRICT_PLUGINS: dict[str, str] = {
    JPEGLSLossless: "pyjpegls",
    JPEGLSNearLossless: "pyjpegls",
    JPEGBaseline8Bit: "pillow",
    JPEGExtended12Bit: "pillow",
}

JPEG_FRAMES = {
    0xC0: "JPEG baseline (SOF0)",
    0xC1: "JPEG extended (SOF1)",
    0xC2: "JPEG progressive (SOF2)",
    0xC3: "JPEG lossless (SOF3)",
    0xF7: "JPEG-LS (SOF55)",
}
JPEG_LS_FRAME = 0xF7
OTHER_FRAMES = frozenset({0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
SOI, EOI, SOS, COM = 0xD8, 0xD9, 0xDA, 0xFE
RESTARTS = range(0xD0, 0xD8)
# Where entropy-coded data ends: 0xFF then a marker byte. JPEG stuffs 0x00 after a data
# 0xFF; JPEG-LS stuffs a zero bit, so its data never has 0xFF then a byte of 0x80 or more.
NEXT_MARKER = re.compile(rb"\xff[^\x00]")
NEXT_LS_MARKER = re.compile(rb"\xff[\x80-\xff]")
J2K_SOC, J2K_SIZ, J2K_CAP, J2K_SOT, J2K_EOC = 0xFF4F, 0xFF51, 0xFF50, 0xFF90, 0xFFD9
J2K_COM, J2K_TLM, J2K_SOD = 0xFF64, 0xFF55, 0xFF93
J2K_CODESTREAM = b"\xff\x4f\xff\x51"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


@dataclass(frozen=True)
class Frame:
    """What a stream's own header says of the image it holds."""

    kind: str
    rows: int
    columns: int
    components: int
    precision: int


def ended_early(kind: str, where: str) -> FileRejected:
    return FileRejected(
        "truncated",
        f"The {kind} pixel data ends early ({where}): the file was cut short in transfer "
        "or on disk, and the missing part of the film would be shown and scored as flat grey.",
    )


def corrupt(kind: str, what: str) -> FileRejected:
    return FileRejected("corrupt", f"The {kind} pixel data is corrupt ({what}).")


def check_frame(stream: bytes, syntax: UID, rows: int, columns: int, bits_allocated: int) -> Frame:
    """One encapsulated DICOM frame: whole, of the kind ``syntax`` names, of the header's size."""
    allowed = KINDS_BY_SYNTAX.get(str(syntax))
    if allowed is None:
        raise FileRejected(
            "unsupported_transfer_syntax",
            f"Transfer syntax {syntax.name} ({syntax}) cannot be checked here.",
        )
    frame = read_frame(stream)
    if frame.kind not in allowed:
        raise FileRejected(
            "transfer_syntax_mismatch",
            f"The pixel data is a {frame.kind} stream, but the transfer syntax says "
            f"{syntax.name}: the file was mislabelled, so it cannot be trusted to decode right.",
        )
    if frame.kind == "RLE":
        check_rle(stream, rows, columns, bits_allocated)
        return frame
    if (frame.rows, frame.columns, frame.components) != (rows, columns, 1):
        raise FileRejected(
            "transfer_syntax_mismatch",
            f"The {frame.kind} stream holds a {frame.columns}×{frame.rows} image of "
            f"{frame.components} component(s), but the header declares {columns}×{rows} "
            "grayscale.",
        )
    return frame


def read_frame(stream: bytes) -> Frame:
    """Walk a stream of any supported kind to its end; refuse it if it stops short."""
    if stream[:2] == b"\xff\xd8":
        return read_jpeg(stream)
    if stream.startswith(JP2_SIGNATURE) or stream[:4] == J2K_CODESTREAM:
        return read_j2k(stream)
    if len(stream) >= 64 and struct.unpack_from("<I", stream, 4) == (64,):
        return read_rle_header(stream)
    raise FileRejected(
        "transfer_syntax_mismatch",
        "The pixel data is not a JPEG, JPEG-LS, JPEG 2000 or RLE stream (it starts with "
        "none of their markers).",
    )


# --- JPEG and JPEG-LS -----------------------------------------------------------------


def read_jpeg(stream: bytes, trailing_allowed: bool = False) -> Frame:
    """Every marker segment from start-of-image to end-of-image, and nothing after it."""
    return _jpeg_segments(stream, trailing_allowed)[0]


def jpeg_end(stream: bytes) -> int:
    """Where a checked JPEG stream's end-of-image marker ends."""
    return _jpeg_segments(stream, True)[1]


def _jpeg_segments(stream: bytes, trailing_allowed: bool) -> tuple[Frame, int]:
    frame: Frame | None = None
    kind = "JPEG"
    position, size = 2, len(stream)
    while True:
        position = _skip_fill(stream, position)
        if position + 2 > size:
            raise ended_early(kind, "no end-of-image marker")
        marker = stream[position + 1]
        if marker == EOI:
            break
        if marker == SOI or marker in RESTARTS:
            raise corrupt(kind, f"marker FF{marker:02X} out of place")
        if position + 4 > size:
            raise ended_early(kind, "a marker segment is cut")
        (length,) = struct.unpack_from(">H", stream, position + 2)
        end = position + 2 + length
        if length < 2 or end > size:
            raise ended_early(kind, "a marker segment is cut")
        if marker in JPEG_FRAMES or marker in OTHER_FRAMES:
            if frame is not None:
                raise corrupt(kind, "two frame headers")
            frame = _jpeg_frame(marker, stream[position + 4 : end])
            kind = frame.kind
        position = end
        if marker == SOS:
            if frame is None:
                raise corrupt(kind, "a scan before the frame header")
            position = _scan_end(stream, position, kind, frame.kind.startswith("JPEG-LS"))
    if frame is None:
        raise corrupt(kind, "no frame header")
    end = position + 2
    if not trailing_allowed and stream[end:].strip(b"\0"):
        raise FileRejected(
            "multi_frame",
            f"The {kind} stream goes on after its end-of-image marker (a second image, or "
            "data that belongs to no image); send one frame per file.",
        )
    return frame, end


def jpeg_without_metadata(stream: bytes) -> bytes:
    """The same JPEG with every APPn and COM segment left out, and nothing after its
    end-of-image marker: EXIF, XMP, ICC profiles, JFIF thumbnails and comments can carry
    a name. The tables and the entropy-coded data are copied byte for byte, so the pixels
    decode exactly as before (a lossy re-encode would change them). ``stream`` must have
    been checked by ``read_jpeg``; JPEG-LS streams too (their parameters are in LSE
    segments, which are kept)."""
    kept, position, ls = [stream[:2]], 2, False
    while True:
        position = _skip_fill(stream, position)
        marker = stream[position + 1]
        if marker == EOI:
            kept.append(b"\xff\xd9")
            return b"".join(kept)
        (length,) = struct.unpack_from(">H", stream, position + 2)
        end = position + 2 + length
        ls = ls or marker == JPEG_LS_FRAME
        if marker == SOS:
            end = _scan_end(stream, end, "JPEG", ls)
        if not (0xE0 <= marker <= 0xEF or marker == COM):
            kept.append(stream[position:end])
        position = end


def adobe_segment(stream: bytes) -> bytes:
    """The stream's Adobe (APP14) segment written again from its one number that changes
    how colours decode (the transform flag), without its text; empty if it has none."""
    at = stream.find(b"\xff\xee")
    while at >= 0:
        if stream[at + 4 : at + 9] == b"Adobe" and at + 16 <= len(stream):
            return b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00" + stream[at + 15 : at + 16]
        at = stream.find(b"\xff\xee", at + 2)
    return b""


def _skip_fill(stream: bytes, position: int) -> int:
    """A marker may be preceded by any number of 0xFF fill bytes."""
    if stream[position : position + 1] != b"\xff":
        if position >= len(stream):
            return position
        raise corrupt("JPEG", f"no marker where one must be (byte {position})")
    while stream[position + 1 : position + 2] == b"\xff":
        position += 1
    return position


def _scan_end(stream: bytes, position: int, kind: str, ls: bool) -> int:
    """Past a scan's entropy-coded data and its restart markers, to the next marker."""
    pattern = NEXT_LS_MARKER if ls else NEXT_MARKER
    expected_restart = 0
    while True:
        match = pattern.search(stream, position)
        if match is None:
            raise ended_early(kind, "no end-of-image marker")
        marker = stream[match.start() + 1]
        if marker == 0xFF:  # fill before a marker
            position = match.start() + 1
            continue
        if marker not in RESTARTS:
            return match.start()
        if marker != 0xD0 + expected_restart:
            raise corrupt(kind, "restart markers out of sequence: part of the scan is missing")
        expected_restart = (expected_restart + 1) % 8
        position = match.end()


def _jpeg_frame(marker: int, body: bytes) -> Frame:
    kind = JPEG_FRAMES.get(marker, f"JPEG (SOF{marker - 0xC0})")
    if len(body) < 6:
        raise corrupt(kind, "frame header cut")
    precision, rows, columns, components = struct.unpack_from(">BHHB", body)
    if rows == 0:
        raise FileRejected(
            "unsupported_transfer_syntax",
            f"The {kind} stream declares its height later (DNL marker): not accepted.",
        )
    return Frame(kind, rows, columns, components, precision)


# --- JPEG 2000 and HTJ2K ---------------------------------------------------------------


def read_j2k(stream: bytes) -> Frame:
    """Main header, then every tile-part by its declared length, then end-of-codestream."""
    start = stream.find(J2K_CODESTREAM)
    if start < 0:
        raise ended_early("JPEG 2000", "no codestream in the JP2 file")
    stream = stream[start:].rstrip(b"\0")
    kind, size = "JPEG 2000", len(stream)
    frame: Frame | None = None
    position = 2
    while True:  # main header: marker segments up to the first tile-part
        if position + 4 > size:
            raise ended_early(kind, "the main header is cut")
        marker, length = struct.unpack_from(">HH", stream, position)
        if marker == J2K_SOT:
            break
        if position + 2 + length > size:
            raise ended_early(kind, "the main header is cut")
        if marker == J2K_SIZ:
            frame = _j2k_frame(stream[position + 4 : position + 2 + length])
        elif marker == J2K_CAP:
            kind = "HTJ2K"
        position += 2 + length
    if frame is None:
        raise corrupt(kind, "no image size (SIZ)")
    while True:  # tile-parts, each by its length (Psot), to end-of-codestream
        if position + 2 > size:
            raise ended_early(kind, "no end-of-codestream marker")
        (marker,) = struct.unpack_from(">H", stream, position)
        if marker == J2K_EOC:
            break
        if marker != J2K_SOT or position + 12 > size:
            raise corrupt(kind, f"no tile-part where one must be (byte {position})")
        (length,) = struct.unpack_from(">I", stream, position + 6)
        if length == 0:  # the last tile-part runs to end-of-codestream
            if stream[-2:] != b"\xff\xd9":
                raise ended_early(kind, "no end-of-codestream marker")
            position = size - 2
            continue
        if position + length > size:
            raise ended_early(kind, "a tile-part is shorter than it declares")
        position += length
    if position + 2 != size:
        raise FileRejected(
            "multi_frame",
            f"The {kind} codestream goes on after its end marker; send one frame per file.",
        )
    return Frame(kind, frame.rows, frame.columns, frame.components, frame.precision)


def j2k_without_comments(stream: bytes) -> bytes:
    """The same codestream without its comment (COM) segments, which can carry any text,
    in the main header or a tile-part header: each tile-part's declared length (Psot)
    follows, the optional tile-part index (TLM) is left out rather than rewritten, and the
    coded data is copied byte for byte. ``stream`` must have been checked by ``read_j2k``."""
    stream = stream[stream.find(J2K_CODESTREAM) :].rstrip(b"\0")
    kept, position = [stream[:2]], 2
    while True:  # the main header
        marker, length = struct.unpack_from(">HH", stream, position)
        if marker == J2K_SOT:
            break
        if marker not in (J2K_COM, J2K_TLM):
            kept.append(stream[position : position + 2 + length])
        position += 2 + length
    while True:  # each tile-part: SOT, its header up to SOD, its data
        (marker,) = struct.unpack_from(">H", stream, position)
        if marker == J2K_EOC:
            kept.append(stream[position:])
            return b"".join(kept)
        (declared,) = struct.unpack_from(">I", stream, position + 6)
        end = position + declared if declared else len(stream) - 2
        header, cursor = [], position + 12
        while struct.unpack_from(">H", stream, cursor)[0] != J2K_SOD:
            (length,) = struct.unpack_from(">H", stream, cursor + 2)
            if struct.unpack_from(">H", stream, cursor)[0] != J2K_COM:
                header.append(stream[cursor : cursor + 2 + length])
            cursor += 2 + length
        body = b"".join(header) + stream[cursor:end]
        length = 12 + len(body) if declared else 0
        sot = stream[position : position + 6] + struct.pack(">I", length)
        kept.append(sot + stream[position + 10 : position + 12] + body)
        position = end


def _j2k_frame(body: bytes) -> Frame:
    if len(body) < 39:
        raise corrupt("JPEG 2000", "image size (SIZ) cut")
    capabilities, width, height, x_offset, y_offset = struct.unpack_from(">HIIII", body)
    (components,) = struct.unpack_from(">H", body, 34)
    kind = "HTJ2K" if capabilities & 0x4000 else "JPEG 2000"
    return Frame(kind, height - y_offset, width - x_offset, components, (body[36] & 0x7F) + 1)


# --- RLE ----------------------------------------------------------------------------


def read_rle_header(stream: bytes) -> Frame:
    """The segment table; the image size is not in an RLE stream, so ``check_rle`` sizes it."""
    (count,) = struct.unpack_from("<I", stream)
    if not 1 <= count <= 15:
        raise corrupt("RLE", "segment table")
    return Frame("RLE", 0, 0, 1, 0)


def check_rle(stream: bytes, rows: int, columns: int, bits_allocated: int) -> None:
    """One segment per byte of a grayscale sample, each decoding to exactly rows × columns."""
    count, *offsets = struct.unpack_from("<16I", stream)
    if count != bits_allocated // 8:
        raise FileRejected(
            "transfer_syntax_mismatch",
            f"The RLE stream holds {count} segment(s), but {bits_allocated}-bit grayscale "
            f"needs {bits_allocated // 8}.",
        )
    bounds = [*offsets[:count], len(stream)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        if not 64 <= start <= end <= len(stream):
            raise ended_early("RLE", "a segment starts beyond the data")
        decoded = _packbits_length(stream[start:end])
        if decoded < rows * columns:
            raise ended_early("RLE", f"a segment decodes to {decoded} of {rows * columns} bytes")


def _packbits_length(segment: bytes) -> int:
    """How many bytes a PackBits segment decodes to, a literal run cut short counting as none."""
    position, decoded, size = 0, 0, len(segment)
    while position < size:
        header = segment[position]
        if header < 128:
            if position + header + 2 > size:
                return decoded
            decoded += header + 1
            position += header + 2
        elif header > 128:
            decoded += 257 - header
            position += 2
        else:
            position += 1
    return decoded
