"""DICOM in: check a Part 10 file, de-identify it, and render its pixels.

Every DICOM file is parsed in full and its pixels decoded at upload, so anything pydicom
can raise on a bad or hostile file is turned into a clear refusal here, never in a worker.
The file that is stored is a *new* dataset built from an allow-list of attributes (see
``KEPT``), following the DICOM PS3.15 Annex E Basic Application Level Confidentiality
Profile with the Retain Longitudinal Temporal Information (Full Dates) option: what is
not needed to show and score a mammogram is left out rather than scrubbed, so an
identifying attribute nobody thought of (a private tag, a free-text comment) cannot
survive. The original bytes are never written anywhere.

``rendition`` is the one pixel path: the browser shows it and the model scores it.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.utils.crypto import salted_hmac

from .choices import Laterality, View
from .imaging import FileRejected

PART10_MAGIC = b"DICM"
MAMMOGRAPHY = "MG"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
CODE_STRING = re.compile(r"[A-Z0-9_ ]{1,16}")

# What a de-identified mammogram keeps: image pixel and presentation attributes, the
# acquisition technique, laterality and view, dates (the Full Dates option: screening
# intervals need them) and the manufacturer. Everything else is dropped; the identifying
# Type 1/2 attributes the IOD requires are written again with pseudonymous or empty values.
KEPT = frozenset(
    {
        "SpecificCharacterSet",
        "ImageType",
        "SOPClassUID",
        "StudyDate",
        "SeriesDate",
        "AcquisitionDate",
        "ContentDate",
        "StudyTime",
        "SeriesTime",
        "AcquisitionTime",
        "ContentTime",
        "Modality",
        "PresentationIntentType",
        "Manufacturer",
        "ManufacturerModelName",
        "BodyPartExamined",
        "KVP",
        "DistanceSourceToDetector",
        "DistanceSourceToPatient",
        "ExposureTime",
        "XRayTubeCurrent",
        "Exposure",
        "ExposureInuAs",
        "FilterMaterial",
        "AnodeTargetMaterial",
        "BodyPartThickness",
        "CompressionForce",
        "PositionerPrimaryAngle",
        "EstimatedRadiographicMagnificationFactor",
        "ImagerPixelSpacing",
        "ViewPosition",
        "ViewCodeSequence",
        "ImageLaterality",
        "Laterality",
        "PatientOrientation",
        "BreastImplantPresent",
        "SeriesNumber",
        "InstanceNumber",
        "BurnedInAnnotation",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "PixelSpacing",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PixelPaddingValue",
        "PixelIntensityRelationship",
        "PixelIntensityRelationshipSign",
        "WindowCenter",
        "WindowWidth",
        "WindowCenterWidthExplanation",
        "VOILUTFunction",
        "VOILUTSequence",
        "ModalityLUTSequence",
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
        "PresentationLUTShape",
        "PixelData",
    }
)
# Attributes the IOD requires (Type 1 or 2) that carry identity: written back empty.
EMPTIED = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName")
# UIDs that tie the file to the hospital's records: remapped, the same way every time.
REMAPPED_UIDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)
DEID_METHOD = "PS3.15 E Basic Profile, Full Dates; allow-list"
DEID_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
)

VIEWS = {v.value for v in View if v.value}


@dataclass(frozen=True)
class DicomHeader:
    """What the upload needs from a file's header: no original identifier is kept here."""

    study_uid: str  # remapped
    sop_uid: str  # remapped
    sop_class_uid: str
    laterality: str
    view: str
    accession_number: str  # stays in the database only, as for every upload
    study_date: dt.date | None
    patient_pseudonym: str
    birth_year: int | None
    burned_in_annotation: bool
    pixel_spacing_mm: float | None


@dataclass(frozen=True)
class InspectedDicom:
    content: bytes  # the de-identified file, the only bytes ever stored
    header: DicomHeader
    width: int
    height: int
    bit_depth: int


def is_part10(content: bytes) -> bool:
    """A DICOM Part 10 file: 128-byte preamble then ``DICM`` (what STOW-RS sends)."""
    return content[128:132] == PART10_MAGIC


def inspect_dicom(content: bytes) -> InspectedDicom:
    """Parse, check and fully decode one DICOM file, then de-identify it; or FileRejected."""
    ds = _parse(content)
    try:
        _check(ds)
        rendition(ds)
        header = _header(ds)
        return InspectedDicom(
            content=deidentify(ds, header),
            header=header,
            width=int(ds.Columns),
            height=int(ds.Rows),
            bit_depth=int(ds.get("BitsStored") or ds.BitsAllocated),
        )
    except FileRejected:
        raise
    except Exception as exc:  # mutated values and pixel handlers raise many types
        raise FileRejected(
            "corrupt", f"DICOM file or its pixel data cannot be decoded ({_short(exc)})."
        ) from None


def _quiet_pydicom() -> None:
    """pydicom's validation warnings quote attribute values, i.e. possibly identifiers:
    they must never reach a log. Values are checked by this module instead."""
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")


def _parse(content: bytes) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    _quiet_pydicom()
    try:
        ds = pydicom.dcmread(io.BytesIO(content))
        # Force every element (nested sequences too) to be decoded now, not in a worker.
        for element in ds.iterall():
            _ = element.value
        _ = ds.file_meta.TransferSyntaxUID
    except InvalidDicomError as exc:
        raise FileRejected("not_dicom", f"Not a valid DICOM file ({_short(exc)}).") from None
    except RecursionError:
        raise FileRejected("corrupt", "DICOM file is nested too deeply to read.") from None
    except Exception as exc:  # truncated or mutated headers raise all kinds of errors
        raise FileRejected(
            "corrupt", f"DICOM file is truncated or corrupt ({_short(exc)})."
        ) from None
    return ds


def _check(ds: Any) -> None:
    from pydicom.pixels.decoders.base import get_decoder

    # pydicom reads a file cut short without complaint, so a missing Type 1 attribute or
    # missing pixel data may also mean truncation: the messages say so.
    for keyword in ("Modality", "StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not str(ds.get(keyword, "") or ""):
            raise FileRejected(
                "missing_attribute", f"DICOM header has no {keyword} (or the file is truncated)."
            )
    if ds.Modality != MAMMOGRAPHY:
        raise FileRejected(
            "not_mammography",
            f"Modality {_quoted(ds.Modality)}: only mammography (MG) is accepted.",
        )
    if "PixelData" not in ds:
        raise FileRejected(
            "no_pixel_data",
            "DICOM file has no pixel data (a report, a vendor-private projection, or a "
            "truncated file).",
        )
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise FileRejected(
            "multi_frame",
            f"Multi-frame DICOM ({frames} frames, e.g. tomosynthesis) is not accepted; "
            "send 2-D mammograms (one frame per file).",
        )
    if int(ds.get("SamplesPerPixel") or 1) != 1 or ds.get("PhotometricInterpretation") not in (
        MONOCHROME
    ):
        raise FileRejected(
            "not_grayscale",
            f"Photometric interpretation {_quoted(ds.get('PhotometricInterpretation'))}: only "
            "MONOCHROME1 or MONOCHROME2 mammograms are accepted.",
        )
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows <= 0 or columns <= 0:
        raise FileRejected("corrupt", "DICOM header declares no image size.")
    # Refuse on the declared size, before a single pixel is decoded.
    if rows * columns > settings.UPLOAD_MAX_PIXELS:
        raise FileRejected(
            "too_many_pixels",
            f"Image is {columns}×{rows} pixels, above the limit of "
            f"{settings.UPLOAD_MAX_PIXELS // 1_000_000} megapixels.",
        )
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        decoder = None
    if decoder is None or not decoder.is_available:
        raise FileRejected(
            "unsupported_transfer_syntax",
            f"Transfer syntax {syntax.name} ({syntax}) cannot be decoded here.",
        )
    if not syntax.is_compressed:
        expected = rows * columns * int(ds.get("BitsAllocated") or 16) // 8
        if len(ds.PixelData) < expected:
            raise FileRejected(
                "corrupt",
                f"DICOM pixel data is truncated ({len(ds.PixelData)} of {expected} bytes).",
            )


def _quoted(value: Any) -> str:
    """A code string (CS) fit to quote in a message; anything else is not repeated."""
    text = str(value or "")
    return text if CODE_STRING.fullmatch(text) else "(an invalid value)"


def rendition(ds: Any) -> np.ndarray:
    """The 8-bit grayscale image a reader sees and the model scores (one path for both).

    Modality LUT (rescale) first, then the file's own VOI: its VOI LUT if it has one, else
    its first window centre/width (LINEAR, LINEAR_EXACT or SIGMOID), else the stored
    range stretched; MONOCHROME1 is inverted so that dense tissue is bright, as in the
    films the model learnt from. The result is 0..255: the shipped model was trained on
    8-bit digitised films, so it scores what a reader would see on a screen.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi

    pixels = apply_modality_lut(ds.pixel_array, ds)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        looked_up = apply_voi(np.round(pixels).astype(np.int64), ds, index=0)
        shown = looked_up.astype(np.float64) / float(2**bits - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        shown = _window(pixels.astype(np.float64), ds)
    else:
        lo, hi = float(pixels.min()), float(pixels.max())
        shown = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    shown = np.clip(shown, 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        shown = 1.0 - shown
    return (shown * 255.0).round().astype(np.uint8)


def _first(value: Any) -> float:
    from pydicom.multival import MultiValue

    return float(value[0] if isinstance(value, MultiValue | list | tuple) else value)


def _window(pixels: np.ndarray, ds: Any) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing to 0..1."""
    centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (pixels - centre) / max(width, 1e-6)))
    if function == "LINEAR_EXACT":
        return (pixels - centre) / max(width, 1e-6) + 0.5
    return (pixels - (centre - 0.5)) / max(width - 1.0, 1.0) + 0.5


def _header(ds: Any) -> DicomHeader:
    laterality = str(ds.get("ImageLaterality") or ds.get("Laterality") or "").upper()
    view = str(ds.get("ViewPosition") or "").upper()
    if view not in VIEWS:
        view = _view_from_code(ds)
    return DicomHeader(
        study_uid=remap_uid(str(ds.StudyInstanceUID)),
        sop_uid=remap_uid(str(ds.SOPInstanceUID)),
        sop_class_uid=str(ds.SOPClassUID),
        laterality=laterality if laterality in (Laterality.LEFT, Laterality.RIGHT) else "",
        view=view if view in VIEWS else View.UNKNOWN,
        accession_number=str(ds.get("AccessionNumber") or "").strip()[:64],
        study_date=_date(ds.get("StudyDate")),
        patient_pseudonym=pseudonym_for(
            str(ds.get("PatientID") or ""),
            str(ds.get("IssuerOfPatientID") or ""),
            str(ds.StudyInstanceUID),
        ),
        birth_year=_year(ds.get("PatientBirthDate")),
        burned_in_annotation=str(ds.get("BurnedInAnnotation") or "").upper() == "YES",
        pixel_spacing_mm=_spacing(ds),
    )


def _view_from_code(ds: Any) -> str:
    """The view from View Code Sequence (SNOMED CT, CID 4014), for files without ViewPosition."""
    from pydicom.sr.codedict import codes

    by_code = {
        codes.SCT.CranioCaudal.value: View.CC,
        codes.SCT.MedioLateralObliqueProjection.value: View.MLO,
        codes.SCT.MedioLateralProjection.value: View.ML,
        codes.SCT.LateroMedial.value: View.LM,
        codes.SCT.LateroMedialObliqueProjection.value: View.LMO,
        codes.SCT.CranioCaudalExaggeratedLaterally.value: View.XCCL,
        codes.SCT.CranioCaudalExaggeratedMedially.value: View.XCCM,
        codes.SCT.SuperolateralToInferomedialOblique.value: View.SIO,
        codes.SCT.CleavageMammographyView.value: View.CV,
        codes.SCT.AxillaryTailMammographyView.value: View.AT,
    }
    for item in ds.get("ViewCodeSequence") or []:
        view = by_code.get(str(item.get("CodeValue") or ""))
        if view is not None:
            return view
    return View.UNKNOWN


def _date(value: Any) -> dt.date | None:
    try:
        return dt.datetime.strptime(str(value or "")[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _year(value: Any) -> int | None:
    text = str(value or "")[:4]
    return int(text) if text.isdigit() and 1900 <= int(text) <= 2100 else None


def _spacing(ds: Any) -> float | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            spacing = _first(value) if value else 0.0
        except (TypeError, ValueError):
            continue
        if 0.01 <= spacing <= 1.0:
            return spacing
    return None


def _secret() -> str:
    return settings.DICOM_DEID_KEY


def remap_uid(uid: str) -> str:
    """The same original UID gives the same new one, every upload, every file.

    Keyed by the de-identification secret, so the original cannot be recovered or
    confirmed by someone who only knows the algorithm.
    """
    digest = salted_hmac("screening.dicom.uid", uid, secret=_secret()).digest()
    # A UUID-derived UID (PS3.5 B.2): "2.25." and a 128-bit integer, at most 44 characters.
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def pseudonym_for(patient_id: str, issuer: str, study_uid: str) -> str:
    """A stable pseudonymous patient id: one per (issuer, patient id), else one per study."""
    value = f"patient:{issuer}:{patient_id}" if patient_id.strip() else f"study:{study_uid}"
    digest = salted_hmac("screening.dicom.pseudonym", value, secret=_secret()).hexdigest()
    return f"DCM-{digest[:16].upper()}"


def deidentify(ds: Any, header: DicomHeader) -> bytes:
    """A new Part 10 file holding only the allow-listed attributes, identity replaced."""
    from pydicom.dataset import Dataset, FileMetaDataset

    clean = Dataset()
    for element in ds:
        if element.keyword in KEPT:
            clean.add(element)
    for keyword in REMAPPED_UIDS:
        original = ds.get(keyword)
        if original:
            setattr(clean, keyword, remap_uid(str(original)))
    clean.PatientName = header.patient_pseudonym + "^"  # a family-name-only person name
    clean.PatientID = header.patient_pseudonym
    for keyword in EMPTIED:
        setattr(clean, keyword, "")
    clean.PatientIdentityRemoved = "YES"
    clean.DeidentificationMethod = DEID_METHOD
    clean.DeidentificationMethodCodeSequence = [
        _code(value, meaning) for value, meaning in DEID_CODES
    ]
    clean.LongitudinalTemporalInformationModified = "UNMODIFIED"
    clean.file_meta = FileMetaDataset()
    clean.file_meta.MediaStorageSOPClassUID = clean.SOPClassUID
    clean.file_meta.MediaStorageSOPInstanceUID = clean.SOPInstanceUID
    clean.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    buffer = io.BytesIO()
    clean.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _code(value: str, meaning: str) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def read(content: bytes) -> Any:
    """A stored (already checked, de-identified) file as a pydicom dataset."""
    import pydicom

    return pydicom.dcmread(io.BytesIO(content))


def rendition_of(content: bytes) -> np.ndarray:
    return rendition(read(content))


def _short(exc: BaseException) -> str:
    # The exception's type only: pydicom's messages can quote attribute values, which
    # may be the very identifiers that must never be shown or logged.
    return type(exc).__name__
