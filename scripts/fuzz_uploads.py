"""Fuzz the upload API with mutated DICOM, PNG and JPEG files; print the answers by status.

    .venv/bin/python scripts/fuzz_uploads.py                  # 1000 uploads, own server and DB
    .venv/bin/python scripts/fuzz_uploads.py --count 5000 --seed 7 --save /tmp/fuzz-500s
    .venv/bin/python scripts/fuzz_uploads.py --url http://127.0.0.1:8000 --token ADMIN_TOKEN

Seeds are the tests' DICOM mammograms (``tests/dicom_files.py``: 12/16-bit, MONOCHROME1,
RLE-compressed, no VOI) and synthetic films as 8/16-bit PNG and JPEG. Each upload is one
seed with one or more mutations: bit flips, truncation, byte runs inserted or deleted,
DICOM header values (sizes, bit depths, transfer syntax, strings with NUL or bidi controls),
PNG header fields with a valid CRC, and file names. Without ``--url`` the script starts a
live server on a throw-away test database of DATABASE_URL (default SQLite) with an
in-memory broker, so nothing is queued for a worker. Every answer must be a 2xx or 4xx:
each 5xx is printed (and saved with ``--save``), and the exit status is then 1.

Not in CI: a thousand uploads take a few minutes.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import struct
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mammo_portal.settings")
os.environ.setdefault("SECRET_KEY", "fuzz-only-secret-key-not-for-production-use")
os.environ.setdefault("SECURE_HTTPS", "0")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("DB_CONN_MAX_AGE", "0")  # the server's threads leave no connection open

import django  # noqa: E402

django.setup()

import pydicom  # noqa: E402
import requests  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from ml.synthetic import generate_film  # noqa: E402
from tests.dicom_files import dicom_bytes  # noqa: E402

# Refusals are the expected answers; a 5xx is still logged, with its traceback.
for _name in ("django.request", "django.server", "pydicom", "screening"):
    logging.getLogger(_name).setLevel(logging.ERROR)

STRANGE_TEXT = ["", "\x00", "A\x00B", "\u202eGNP.exe", "x" * 300, "../../etc/passwd", "é😀", " "]


@dataclass(frozen=True)
class Sample:
    kind: str  # the seed: dicom, png or jpeg
    mutation: str
    name: str
    content: bytes


# --- Seeds ---------------------------------------------------------------------------------


def dicom_seeds() -> list[bytes]:
    return [
        dicom_bytes(seed=1, size=64),
        dicom_bytes(seed=2, size=64, bits=16),
        dicom_bytes(seed=3, size=64, photometric="MONOCHROME1", voi=None),
        dicom_bytes(seed=4, size=64, compressed=True),
        dicom_bytes(seed=5, size=64, voi="lut"),
    ]


def image_seeds() -> list[tuple[str, bytes]]:
    film = generate_film(11, height=64, width=52)
    seeds = []
    for kind, pixels, fmt in (
        ("png", film.to_8bit(), "PNG"),
        ("png", film.pixels, "PNG"),
        ("jpeg", film.to_8bit(), "JPEG"),
    ):
        buffer = io.BytesIO()
        PILImage.fromarray(pixels).save(buffer, format=fmt)
        seeds.append((kind, buffer.getvalue()))
    return seeds


def fresh_dicom(seed: bytes, rng: random.Random, n: int) -> pydicom.Dataset:
    """The seed as a new study and instance, so duplicates do not hide the decoding paths."""
    ds = pydicom.dcmread(io.BytesIO(seed))
    ds.StudyInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.AccessionNumber = f"FUZZ-{n}"
    ds.PatientID = f"FUZZ-P-{rng.randrange(50)}"
    return ds


def saved(ds: pydicom.Dataset) -> bytes | None:
    """The file, or None when pydicom itself cannot write the mutated value."""
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=False)
    except (ValueError, TypeError, OverflowError, struct.error):
        return None
    return buffer.getvalue()


# --- Mutations -----------------------------------------------------------------------------


def flip_bits(content: bytes, rng: random.Random) -> bytes:
    data = bytearray(content)
    for _ in range(rng.choice([1, 2, 8, 32])):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def truncate(content: bytes, rng: random.Random) -> bytes:
    # Often inside the header, where parsers are most fragile.
    cut = rng.choice([rng.randrange(0, min(len(content), 600)), rng.randrange(len(content))])
    return content[:cut]


def splice(content: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(content))
    if rng.random() < 0.5:
        return content[:at] + content[at + rng.randrange(1, 64) :]
    run = rng.choice([b"\x00", b"\xff", b"A", bytes(rng.randrange(256) for _ in range(8))])
    return content[:at] + run * rng.randrange(1, 200) + content[at:]


DICOM_VALUES: list[tuple[str, list]] = [
    ("Rows", [0, 1, 65535]),
    ("Columns", [0, 1, 65535]),
    ("BitsAllocated", [0, 1, 8, 32, 64]),
    ("BitsStored", [0, 1, 15, 17, 32]),
    ("HighBit", [0, 31, 64]),
    ("PixelRepresentation", [1, 2]),
    ("SamplesPerPixel", [0, 3, 4]),
    ("PhotometricInterpretation", ["RGB", "YBR_FULL", "PALETTE COLOR", "", "MONOCHROME3"]),
    ("NumberOfFrames", [0, 2, 1000000, "x"]),
    ("PixelSpacing", [[0, 0], [-1, 1], ["nan", "inf"], [1e300, 1]]),
    ("WindowWidth", [0, -1, 1e308]),
    ("WindowCenter", ["nan", 1e308]),
    ("RescaleSlope", [0, "nan", 1e308]),
    ("Modality", ["CT", "", "MG\x00"]),
    ("SOPClassUID", ["1.2.3", "", "1.2.840.10008.5.1.4.1.1.7"]),
    ("ImageLaterality", ["X", "", "LR"]),
    ("ViewPosition", ["", "ZZZ", "\u202eCC"]),
    ("StudyDate", ["", "20241340", "99999999", "2024-03-15"]),
    ("AccessionNumber", STRANGE_TEXT),
    ("PatientID", STRANGE_TEXT),
    ("StudyInstanceUID", ["", "1." * 40, "not-a-uid"]),
    ("SOPInstanceUID", ["", "1." * 40]),
    ("SpecificCharacterSet", ["ISO_IR 192", "GB18030", "NONSENSE"]),
    ("BurnedInAnnotation", ["YES", "MAYBE"]),
]
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # implicit little endian
    "1.2.840.10008.1.2.2",  # explicit big endian (retired)
    "1.2.840.10008.1.2.4.50",  # JPEG baseline, for pixels that are not JPEG
    "1.2.840.10008.1.2.4.90",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE
    "1.2.3.4.5.6",  # unknown
]


def mutate_header(ds: pydicom.Dataset, rng: random.Random) -> str:
    """Set one header value the file may not survive; the description names it."""
    if rng.random() < 0.2:
        uid = rng.choice(TRANSFER_SYNTAXES)
        ds.file_meta.TransferSyntaxUID = uid
        return f"TransferSyntaxUID={uid}"
    if rng.random() < 0.1 and "PixelData" in ds:
        del ds.PixelData
        return "no PixelData"
    keyword, values = rng.choice(DICOM_VALUES)
    value = rng.choice(values)
    try:
        setattr(ds, keyword, value)
    except (ValueError, TypeError, OverflowError):
        return f"{keyword} (refused by pydicom)"
    return f"{keyword}={value!r}"[:80]


def png_chunks(content: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at + 8 <= len(content):
        (length,) = struct.unpack(">I", content[at : at + 4])
        kind = content[at + 4 : at + 8]
        chunks.append((kind, content[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def png_file(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = [b"\x89PNG\r\n\x1a\n"]
    for kind, data in chunks:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        out.append(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc))
    return b"".join(out)


def mutate_png_header(content: bytes, rng: random.Random) -> tuple[str, bytes]:
    """A header field changed, with a valid CRC so the decoder believes it."""
    chunks = png_chunks(content)
    kind, ihdr = chunks[0]
    width, height, depth, colour, compression, filt, interlace = struct.unpack(">IIBBBBB", ihdr)
    field = rng.choice(["width", "height", "depth", "colour", "interlace", "extra", "no IDAT"])
    if field == "width":
        width = rng.choice([0, 1, 2**31 - 1, 100000])
    elif field == "height":
        height = rng.choice([0, 1, 2**31 - 1, 100000])
    elif field == "depth":
        depth = rng.choice([0, 3, 7, 32])
    elif field == "colour":
        colour = rng.choice([1, 2, 3, 5, 6, 9])
    elif field == "interlace":
        interlace = rng.choice([1, 7])
    elif field == "extra":
        chunks.insert(1, (b"tEXt", b"Comment\x00" + "\u202e".encode() * 100))
    else:
        chunks = [c for c in chunks if c[0] != b"IDAT"]
    header = struct.pack(">IIBBBBB", width, height, depth, colour, compression, filt, interlace)
    chunks[0] = (kind, header)
    return f"IHDR {field}", png_file(chunks)


def strange_name(kind: str, rng: random.Random) -> tuple[str, str]:
    choice = rng.choice(["nul", "bidi", "long", "bare", "wrong ext", "traversal"])
    ext = {"dicom": "dcm", "png": "png", "jpeg": "jpg"}[kind]
    names = {
        "nul": f"L_CC\x00.{ext}",
        "bidi": f"L_CC\u202e{ext[::-1]}.exe",
        "long": "R_MLO_" + "x" * 400 + f".{ext}",
        "bare": "L_CC",
        "wrong ext": "L_CC." + rng.choice(["png", "dcm", "jpg", "txt"]),
        "traversal": f"../../L_CC.{ext}",
    }
    return f"name {choice}", names[choice]


# --- The run -------------------------------------------------------------------------------


def samples(count: int, rng: random.Random) -> Iterator[Sample]:
    dicoms, images = dicom_seeds(), image_seeds()
    for n in range(count):
        if rng.random() < 0.6:
            seed = rng.choice(dicoms)
            ds = fresh_dicom(seed, rng, n)
            kind, name, steps = "dicom", f"{rng.choice('LR')}_CC_{n}.dcm", []
            if rng.random() < 0.5:
                steps.append(mutate_header(ds, rng))
            content = saved(ds)
            if content is None:  # a value pydicom will not write: mutate the bytes instead
                content, steps = saved(fresh_dicom(seed, rng, n)) or seed, []
        else:
            kind, content = rng.choice(images)
            name, steps = f"{rng.choice('LR')}_MLO_{n}.{'png' if kind == 'png' else 'jpg'}", []
            if kind == "png" and rng.random() < 0.4:
                step, content = mutate_png_header(content, rng)
                steps.append(step)
        byte_level: list[tuple[str, Callable[[bytes, random.Random], bytes]]] = [
            ("bit flips", flip_bits),
            ("truncated", truncate),
            ("spliced", splice),
        ]
        if not steps or rng.random() < 0.5:
            label, mutate = rng.choice(byte_level)
            content, steps = mutate(content, rng), [*steps, label]
        if rng.random() < 0.1:
            label, name = strange_name(kind, rng)
            steps.append(label)
        yield Sample(kind, " + ".join(steps), name, content)


def upload(session: requests.Session, url: str, sample: Sample, n: int) -> requests.Response:
    form = {"accession_number": f"FUZZ-IMG-{n}", "patient_pseudonym": f"FUZZ-P-{n % 50}"}
    files = [("files", (sample.name, sample.content, "application/octet-stream"))]
    return session.post(f"{url}/api/studies/", data=form, files=files, timeout=120)


def run(url: str, token: str, count: int, seed: int, save: Path | None) -> int:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Token {token}"
        return report(session, url, count, seed, save)


def report(session: requests.Session, url: str, count: int, seed: int, save: Path | None) -> int:
    rng = random.Random(seed)
    by_status: Counter[int] = Counter()
    by_kind: Counter[tuple[str, int]] = Counter()
    errors = []
    started = time.perf_counter()
    for n, sample in enumerate(samples(count, rng)):
        response = upload(session, url, sample, n)
        by_status[response.status_code] += 1
        by_kind[(sample.kind, response.status_code)] += 1
        if response.status_code >= 500:
            errors.append((n, sample, response.text[:300]))
            if save:
                save.mkdir(parents=True, exist_ok=True)
                (save / f"{n:05d}-{sample.kind}.bin").write_bytes(sample.content)
    elapsed = time.perf_counter() - started
    print(f"\n{count} uploads to {url}/api/studies/ in {elapsed:.0f} s (seed {seed})\n")
    print("| status | uploads | dicom | png | jpeg |")
    print("|-------:|--------:|------:|----:|-----:|")
    for code in sorted(by_status):
        cells = " | ".join(str(by_kind[(kind, code)]) for kind in ("dicom", "png", "jpeg"))
        print(f"| {code} | {by_status[code]} | {cells} |")
    print(f"\nserver errors (5xx): {len(errors)}")
    for n, sample, body in errors:
        print(f"  #{n} {sample.kind} [{sample.mutation}] {sample.name!r}: {body!r}")
    return 1 if errors else 0


@contextmanager
def own_server() -> Iterator[tuple[str, str]]:
    """A live server on a throw-away test database, with an admin and their token."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.db import connection
    from django.test.testcases import LiveServerThread
    from django.test.utils import setup_test_environment
    from rest_framework.authtoken.models import Token

    from screening.choices import Role

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    server = LiveServerThread("localhost", StaticFilesHandler, connections_override={})
    try:
        admin = get_user_model().objects.create_user("fuzz-admin")  # token only, no password
        admin.groups.add(Group.objects.get_or_create(name=Role.ADMIN)[0])
        token = Token.objects.create(user=admin).key
        server.daemon = True
        server.start()
        server.is_ready.wait()
        if server.error:
            raise server.error
        yield f"http://localhost:{server.port}", token
    finally:
        server.terminate()
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="uploads to send (1000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: same seed, same files")
    parser.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", help="an admin's API token (with --url)")
    parser.add_argument("--save", type=Path, help="folder to save the files that got a 5xx")
    args = parser.parse_args()
    if args.url:
        if not args.token:
            parser.error("--url needs --token (an admin's API token)")
        return run(args.url.rstrip("/"), args.token, args.count, args.seed, args.save)
    with own_server() as (url, token):
        return run(url, token, args.count, args.seed, args.save)


if __name__ == "__main__":
    sys.exit(main())
