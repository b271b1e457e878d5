"""DICOM mammograms made by the tests from the synthetic films, with real-world-shaped headers.

Every identifying attribute a hospital file carries is filled in (``IDENTITY``), at the top
level and inside sequence items and free-text attributes (``NESTED_IDENTITY``), so tests
can prove that none of it survives ingest.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from ml.synthetic import MAX_12BIT, generate_film

# The GE files of the shared vendor headers (shared/data/dicom-mg-headers): real headers
# around 1 x 2 or 4 x 4 placeholder pixels.
GE_VENDOR_FILES = (
    "MG-Im-GE_Seno_1_ForPresentation.dcm",
    "MG-Im-GE_Seno_2_ForPresentation.dcm",
    "MG-Im-GE_Seno_1_ForProcessing.dcm",
    "MG-Im-GE-SenDS-scaled.dcm",
)
MG_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.2")

# What a real hospital file says about the woman, the staff and the place: all of it must go.
IDENTITY = {
    "PatientName": "Doe^Jane^Quinn",
    "PatientID": "HOSP-0042-7731",
    "IssuerOfPatientID": "ST-ELSEWHERE-MRN",
    "PatientBirthDate": "19650312",
    "PatientAge": "059Y",
    "PatientAddress": "12 Acacia Avenue, Springfield",
    "PatientTelephoneNumbers": "+44 20 7946 0958",
    "OtherPatientNames": "Smith^Jane",
    "PatientMotherBirthName": "Roe^Mary",
    "EthnicGroup": "Cornish",
    "AdditionalPatientHistory": "Sister treated at St Elsewhere 2019",
    "PatientComments": "Prefers morning appointments",
    "InstitutionName": "St Elsewhere Breast Unit",
    "InstitutionAddress": "1 Hospital Road, Springfield",
    "InstitutionalDepartmentName": "Breast Screening Dept",
    "ReferringPhysicianName": "House^Gregory",
    "PerformingPhysicianName": "Quinn^Michaela",
    "OperatorsName": "Nightingale^Florence",
    "NameOfPhysiciansReadingStudy": "Grey^Meredith",
    "StationName": "MAMMO-ROOM-3",
    "DeviceSerialNumber": "SN-998877",
    "StudyID": "STUDY-5521",
    "StudyDescription": "Screening mammogram Jane Doe",
    "SeriesDescription": "Doe bilateral",
    "ImageComments": "Jane was anxious",
    "RequestingPhysician": "Watson^John",
    "PerformedProcedureStepID": "PPS-1234",
    "ContentCreatorName": "Tech^Terry",
}
PRIVATE_CREATOR = "ACME MAMMO 1.0"
PRIVATE_VALUE = "Jane Doe private note"
# Identifiers where a top-level allow-list does not look: inside the items of a kept
# sequence (a person's name, a private tag, a coded entry's text) and in the free text of
# kept attributes' explanations.
NESTED_IDENTITY = {
    "item_patient_name": "Nested^Janet^Item",
    "item_private": "Janet nested private note",
    "code_meaning": "cranio-caudal, Janet Item's film",
    "modifier_meaning": "spot view Janet Item asked for",
    "window_explanation": "Window set for Janet Item",
    "lut_explanation": "Curve tuned for Janet Item",
    "rescale_type": "Janet Item units",
}
VIEW_CODES = {
    "CC": codes.SCT.CranioCaudal,
    "MLO": codes.SCT.MedioLateralObliqueProjection,
    "XCCL": codes.SCT.CranioCaudalExaggeratedLaterally,
}


def dicom_bytes(
    seed: int = 1,
    *,
    size: int = 128,
    photometric: str = "MONOCHROME2",
    bits: int = 12,
    voi: str | None = "window",
    compressed: bool = False,
    laterality: str = "L",
    view: str = "CC",
    study_uid: str | None = None,
    sop_uid: str | None = None,
    accession: str = "ACC-DCM-1",
    patient_id: str | None = None,
    modality: str = "MG",
    frames: int = 1,
    pixel_data: bool = True,
    study_date: str = "20240315",
) -> bytes:
    """A Part 10 digital mammogram (For Presentation) of a synthetic film."""
    ds = dataset(
        seed,
        size=size,
        photometric=photometric,
        bits=bits,
        voi=voi,
        laterality=laterality,
        view=view,
        study_uid=study_uid,
        sop_uid=sop_uid,
        accession=accession,
        patient_id=patient_id,
        modality=modality,
        frames=frames,
        pixel_data=pixel_data,
        study_date=study_date,
    )
    if compressed:
        ds.compress(RLELossless)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def with_transfer_syntax(content: bytes, uid: str) -> bytes:
    """The same file relabelled with a compressed syntax (pixel data merely encapsulated)."""
    ds = pydicom.dcmread(io.BytesIO(content))
    ds.PixelData = encapsulate([ds.PixelData])
    ds.file_meta.TransferSyntaxUID = UID(uid)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def stored_pixels(seed: int, size: int, bits: int) -> np.ndarray:
    film = generate_film(seed, height=size, width=size * 13 // 16)
    pixels = film.pixels.astype(np.uint16)
    return pixels * 16 if bits == 16 else pixels


def dataset(
    seed: int,
    *,
    size: int,
    photometric: str,
    bits: int,
    voi: str | None,
    laterality: str,
    view: str,
    study_uid: str | None,
    sop_uid: str | None,
    accession: str,
    patient_id: str | None,
    modality: str,
    frames: int,
    pixel_data: bool,
    study_date: str,
) -> Dataset:
    top = MAX_12BIT * 16 if bits == 16 else MAX_12BIT
    pixels = stored_pixels(seed, size, bits)
    if photometric == "MONOCHROME1":
        pixels = (top - pixels).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = MG_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = modality
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.ContentTime = "093015"
    ds.AccessionNumber = accession
    ds.Manufacturer = "Synthetic Mammo Co"
    ds.ManufacturerModelName = "Phantom 3000"
    for keyword, value in IDENTITY.items():
        setattr(ds, keyword, value)
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.PatientSex = "F"
    ds.OtherPatientIDsSequence = Sequence([_other_id()])
    ds.RequestAttributesSequence = Sequence([_request()])
    block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", PRIVATE_VALUE)
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    if view in VIEW_CODES:
        ds.ViewCodeSequence = Sequence([_view_code(VIEW_CODES[view])])
    ds.BurnedInAnnotation = "NO"
    ds.PixelSpacing = ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.RescaleType = NESTED_IDENTITY["rescale_type"]
    if voi == "window":
        ds.WindowCenter = top / 2
        ds.WindowWidth = top
        ds.WindowCenterWidthExplanation = NESTED_IDENTITY["window_explanation"]
    elif voi == "lut":
        ds.VOILUTSequence = Sequence([_voi_lut(top + 1)])
    if frames > 1:
        ds.NumberOfFrames = frames
        pixels = np.concatenate([pixels] * frames)
    if pixel_data:
        ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def _voi_lut(entries: int) -> Dataset:
    """A gamma curve to 12 bits, so a test can tell it was applied rather than a window."""
    item = Dataset()
    levels = np.arange(entries) / (entries - 1)
    item.add_new(0x00283002, "US", [entries, 0, 12])  # LUTDescriptor
    item.add_new(0x00283006, "US", [int(v) for v in np.round(levels**0.5 * 4095)])  # LUTData
    item.LUTExplanation = NESTED_IDENTITY["lut_explanation"]
    return item


def _view_code(code: Code) -> Dataset:
    """The view's SNOMED CT code, with identifiers where only the code belongs."""
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = "SCT"
    item.CodeMeaning = NESTED_IDENTITY["code_meaning"]
    item.PatientName = NESTED_IDENTITY["item_patient_name"]
    block = item.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", NESTED_IDENTITY["item_private"])
    modifier = Dataset()
    modifier.CodeValue = codes.SCT.SpotCompression.value
    modifier.CodingSchemeDesignator = "SCT"
    modifier.CodeMeaning = NESTED_IDENTITY["modifier_meaning"]
    item.ViewModifierCodeSequence = Sequence([modifier])
    return item


def _other_id() -> Dataset:
    item = Dataset()
    item.PatientID = "NHS-943 476 5919"
    item.IssuerOfPatientID = "NHS"
    return item


def _request() -> Dataset:
    item = Dataset()
    item.RequestedProcedureID = "RP-7788"
    item.ScheduledProcedureStepID = "SPS-7788"
    return item


def identifying_strings() -> list[str]:
    """Every original identifying value, as it could appear in a file's bytes."""
    return [
        *IDENTITY.values(),
        *NESTED_IDENTITY.values(),
        PRIVATE_VALUE,
        "NHS-943 476 5919",
        "RP-7788",
        "SPS-7788",
    ]


def with_film_pixels(content: bytes, seed: int = 7, size: int = 128) -> bytes:
    """A real vendor header with a synthetic film in place of its stub pixel data.

    The shared vendor files carry a 1 x 2 or 4 x 4 placeholder (refused as blank): the film
    keeps their header, VOI and bit depth, so header handling is tested on a real header.
    """
    ds = pydicom.dcmread(io.BytesIO(content))
    bits = int(ds.BitsStored)
    film = generate_film(seed, height=size, width=size * 13 // 16).pixels / MAX_12BIT
    if ds.PhotometricInterpretation == "MONOCHROME1":
        film = 1.0 - film
    lo, hi = 0.0, 2.0**bits - 1
    if "WindowCenter" in ds:  # where the vendor's own VOI puts a real film's values
        centre, width = float(ds.WindowCenter[0]), float(ds.WindowWidth[0])
        lo, hi = max(lo, centre - width), min(hi, centre + width)
    pixels = np.round(lo + film * (hi - lo)).astype(np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.HighBit, ds.PixelRepresentation = 16, bits - 1, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def eight_bit_dicom(seed: int = 1, **kwargs: object) -> bytes:
    """The synthetic film as an 8-bit mammogram (what JPEG baseline can carry)."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(seed, **kwargs)))  # type: ignore[arg-type]
    pixels = (ds.pixel_array >> (int(ds.BitsStored) - 8)).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def jpeg_baseline_dicom(seed: int = 1, **kwargs: object) -> bytes:
    """An 8-bit mammogram whose pixels are one JPEG baseline stream (Pillow's encoder)."""
    from PIL import Image as PILImage

    ds = pydicom.dcmread(io.BytesIO(eight_bit_dicom(seed, **kwargs)))
    buffer = io.BytesIO()
    PILImage.fromarray(ds.pixel_array).save(buffer, format="JPEG", quality=95)
    return with_stream(eight_bit_dicom(seed, **kwargs), buffer.getvalue(), JPEGBaseline8Bit)


def compressed_dicom(syntax: str, seed: int = 1) -> bytes:
    """The 12-bit film compressed by pydicom's own encoders (JPEG-LS, JPEG 2000, RLE)."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(seed)))
    ds.compress(syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def pixel_stream(content: bytes) -> bytes:
    """The one compressed frame of an encapsulated file, its fragments joined."""
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(io.BytesIO(content))
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def with_stream(content: bytes, stream: bytes, syntax: str | None = None) -> bytes:
    """The file with its pixel data replaced by one encapsulated stream (syntax kept or set)."""
    ds = pydicom.dcmread(io.BytesIO(content))
    ds.PixelData = encapsulate([stream if len(stream) % 2 == 0 else stream + b"\0"])
    ds["PixelData"].VR = "OB"
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = UID(syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def cut(stream: bytes, fraction: float) -> bytes:
    """A stream ending early, as a dropped connection or a full disk leaves it."""
    return stream[: int(len(stream) * fraction)]


def flip_bit(stream: bytes, position: int, bit: int) -> bytes:
    """One bit of ``stream`` inverted: what a bad cable or a failing disk does."""
    flipped = bytearray(stream)
    flipped[position] ^= 1 << bit
    return bytes(flipped)


def jpeg_lossless_dicom(seed: int = 1) -> bytes:
    """The 12-bit film as JPEG Lossless, first-order prediction (what most mammography
    units send); nothing here encodes it, so ``lossless_jpeg`` does."""
    from pydicom.uid import JPEGLosslessSV1

    content = dicom_bytes(seed)
    pixels = pydicom.dcmread(io.BytesIO(content)).pixel_array
    return with_stream(content, lossless_jpeg(pixels, precision=12), JPEGLosslessSV1)


def lossless_jpeg(pixels: np.ndarray, precision: int) -> bytes:
    """A JPEG Lossless (process 14, selection value 1) stream of a 2-D image.

    One Huffman table giving each of the 17 difference categories a 5-bit code: not
    compact, but a valid stream every decoder reads."""
    rows, columns = pixels.shape
    values = pixels.astype(np.int64)
    predicted = np.empty_like(values)
    predicted[0, 0] = 1 << (precision - 1)
    predicted[0, 1:] = values[0, :-1]
    predicted[1:, 0] = values[:-1, 0]
    predicted[1:, 1:] = values[1:, :-1]
    bits: list[str] = []
    for diff in ((values - predicted + 32768) % 65536 - 32768).ravel().tolist():
        category = int(abs(diff)).bit_length()
        bits.append(format(category, "05b"))
        if 0 < category < 16:
            extra = diff if diff > 0 else diff - 1
            bits.append(format(extra & ((1 << category) - 1), f"0{category}b"))
    text = "".join(bits)
    text += "1" * (-len(text) % 8)
    data = int(text, 2).to_bytes(len(text) // 8, "big").replace(b"\xff", b"\xff\x00")
    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)
    return b"".join(
        [
            b"\xff\xd8",
            _segment(
                0xC3, bytes([precision]) + struct.pack(">HHB", rows, columns, 1) + b"\1\x11\0"
            ),
            _segment(0xC4, b"\0" + counts + bytes(range(17))),
            _segment(0xDA, b"\1\1\0\1\0\0"),
            data,
            b"\xff\xd9",
        ]
    )


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body
