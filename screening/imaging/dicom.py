"""DICOM in: check a Part 10 file, de-identify it, and render its pixels.

Every DICOM file is parsed in full and its pixels decoded at upload, so anything pydicom
can raise on a bad or hostile file is turned into a clear refusal here, never in a worker.
The file that is stored is a *new* dataset built from an allow-list of attributes (see
``KEPT``), following the DICOM PS3.15 Annex E Basic Application Level Confidentiality
Profile with the Retain Longitudinal Temporal Information (Full Dates) option: what is
not needed to show and score a mammogram is left out rather than scrubbed, so an
identifying attribute nobody thought of (a private tag, a free-text comment) cannot
survive, at any depth: the allow-list is applied inside every sequence item too. The
original bytes are never written anywhere.

``rendition`` is the one pixel path: the browser shows it and the model scores it. The
upload renders the de-identified file exactly as the viewer and the worker will, and
refuses it unless that gives one 2-D film of the declared size with something on it.

The site's identity mode (``settings.IDENTITY_MODE``) decides what the rebuilt file keeps:
*research* (the default) de-identifies as above; *clinical* (inside the hospital) keeps
the same allow-list plus the woman's identifiers and the original UIDs (``CLINICAL_KEPT``),
so readers can check they read the right woman and results can go back into her study.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import re
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.utils.crypto import salted_hmac

from ..choices import IdentityMode, Laterality, View
from . import streams
from .films import FileRejected, refuse_blank

PART10_MAGIC = b"DICM"
MAMMOGRAPHY = "MG"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
CODE_STRING = re.compile(r"[A-Z0-9_ ]{1,16}")
BITS_ALLOCATED = (8, 16)

# The image storage classes accepted (with Modality MG): the digital mammography IOD, For
# Presentation and For Processing, and the older projection-radiography IODs that computed
# radiography and early digital mammography units still send mammograms as (CR, DX); all
# carry one 2-D grayscale projection with the same pixel semantics. Secondary Capture is
# refused: with Modality MG it carries CAD results, screenshots and vendor-private
# projections (e.g. Hologic's), whose burned-in marks or derived pixels would be shown and
# scored as a film. Reports (SR), presentation states and tomosynthesis are not 2-D images.
IMAGE_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray, For Presentation
        "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray, For Processing
        "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray, For Presentation
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray, For Processing
        "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography
    }
)

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
        "VOILUTFunction",
        "VOILUTSequence",
        "ModalityLUTSequence",
        "RescaleIntercept",
        "RescaleSlope",
        "PresentationLUTShape",
        "PixelData",
    }
)
# What a kept sequence's items keep: the LUTs' numbers. Free text (LUTExplanation, and
# WindowCenterWidthExplanation above) is dropped even where the parent is kept: an
# explanation, comment or description is where an operator types a name.
KEPT_IN_ITEMS = frozenset({"LUTDescriptor", "LUTData", "ModalityLUTType"})
# Coded entries are written again from the DICOM and SNOMED CT dictionaries (value,
# scheme, the dictionary's own meaning): none of the original item's text survives, and a
# code neither dictionary knows is dropped.
CODE_SEQUENCES = frozenset({"ViewCodeSequence", "ViewModifierCodeSequence"})
# Rescale Type is LO, but PS3.3 C.11.1.1.2 defines its terms: anything else is dropped.
RESCALE_TYPES = frozenset({"OD", "HU", "US", "MGML", "Z_EFF", "ED", "EDW", "HU_MOD", "PCT"})
# Attributes the IOD requires (Type 1 or 2) that carry identity: written back empty.
EMPTIED = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName")
# UIDs that tie the file to the hospital's records: remapped, the same way every time.
REMAPPED_UIDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)
# What a clinical-mode file keeps besides ``KEPT``: who the woman is and the hospital's own
# UIDs (its study, series, instance and frame of reference), nothing else.
CLINICAL_KEPT = frozenset(
    {
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "PatientAge",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        *REMAPPED_UIDS,
    }
)
DEID_METHOD = "PS3.15 E Basic Profile, Full Dates; allow-list"
DEID_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
)

VIEWS = {v.value for v in View if v.value}


@dataclass(frozen=True)
class DicomHeader:
    """What the upload needs from a file's header: in research mode no original identifier
    is kept here; in clinical mode the UIDs are the originals and the identity is kept."""

    study_uid: str  # remapped (research) or original (clinical)
    sop_uid: str  # remapped (research) or original (clinical)
    sop_class_uid: str
    laterality: str
    view: str
    accession_number: str  # stays in the database only, as for every upload
    study_date: dt.date | None
    patient_pseudonym: str
    birth_year: int | None
    burned_in_annotation: bool
    pixel_spacing_mm: float | None
    # Where the film was made, for drift monitoring: the unit's make and model as sent,
    # the site as a keyed code (``site_code``); "" where the header says nothing.
    manufacturer: str = ""
    scanner_model: str = ""
    site: str = ""
    # The identity mode the file was ingested in; name, id and age are kept in clinical
    # mode only ("" and None in research mode).
    identity_mode: str = IdentityMode.RESEARCH
    patient_name: str = ""
    patient_id: str = ""
    patient_age: int | None = None


@dataclass(frozen=True)
class InspectedDicom:
    content: bytes  # the rebuilt file (de-identified in research mode), the only bytes stored
    header: DicomHeader
    width: int
    height: int
    bit_depth: int


def is_part10(content: bytes) -> bool:
    """A DICOM Part 10 file: 128-byte preamble then ``DICM`` (what STOW-RS sends)."""
    return content[128:132] == PART10_MAGIC


def inspect_dicom(content: bytes) -> InspectedDicom:
    """Parse, check and fully decode one DICOM file, then rebuild it for storing (de-identified
    in research mode, identity kept in clinical mode: ``settings.IDENTITY_MODE``); or
    FileRejected."""
    ds = _parse(content)
    try:
        _check(ds)
        clinical = settings.IDENTITY_MODE == IdentityMode.CLINICAL
        header = _header(ds, clinical)
        stored = keep_identity(ds, header) if clinical else deidentify(ds, header)
        # Decode what is stored, through the viewer's and the worker's own function.
        _check_film(rendition_of(stored), int(ds.Rows), int(ds.Columns))
        return InspectedDicom(
            content=stored,
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
    except zlib.error as exc:  # a deflated dataset (raw deflate: no checksum of its own)
        if "truncated" in str(exc):
            raise streams.ended_early("deflated", "the compressed dataset stops") from None
        raise streams.corrupt("deflated", "the compressed dataset does not inflate") from None
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
    if str(ds.SOPClassUID) not in IMAGE_SOP_CLASSES:
        raise FileRejected(
            "not_mammography",
            f"SOP class {_sop_class_name(ds.SOPClassUID)} is not a mammography image: only "
            "digital mammography (For Presentation or For Processing), DX or CR images are "
            "accepted.",
        )
    _check_file_meta(ds)
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
    bits = int(ds.get("BitsAllocated") or 0)
    if bits not in BITS_ALLOCATED:
        raise FileRejected(
            "unsupported_bit_depth",
            f"{bits}-bit pixel data is not accepted: a mammogram is stored in 8 or 16 bits "
            "per pixel (1-bit data is a mask or an overlay).",
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
        _check_native_length(len(ds.PixelData), rows * columns * bits // 8)
    elif syntax.is_encapsulated:
        _check_stream(ds, decoder, rows, columns, bits)


def _check_file_meta(ds: Any) -> None:
    """The File Meta header and the dataset must name the same SOP class and instance
    (PS3.10 7.1): a file that contradicts itself is no trustworthy mammogram."""
    meta = ds.file_meta
    said = str(meta.get("MediaStorageSOPClassUID") or "")
    if said and said != str(ds.SOPClassUID):
        raise FileRejected(
            "sop_class_mismatch",
            f"The file's meta header says {_sop_class_name(said)} but its dataset says "
            f"{_sop_class_name(ds.SOPClassUID)}: one of them is wrong.",
        )
    said = str(meta.get("MediaStorageSOPInstanceUID") or "")
    if said and said != str(ds.SOPInstanceUID):
        raise FileRejected(
            "sop_class_mismatch",
            "The file's meta header names another SOP instance than its dataset: one of "
            "them is wrong.",
        )


def _check_stream(ds: Any, decoder: Any, rows: int, columns: int, bits: int) -> None:
    """The one compressed frame, walked whole (``streams``), then decoded by the strictest
    decoder for its kind as well as by the viewer's (``rendition``, later)."""
    from pydicom.encaps import generate_frames

    frames = list(generate_frames(ds.PixelData, number_of_frames=1))
    if len(frames) != 1:
        raise FileRejected(
            "multi_frame",
            f"DICOM pixel data holds {len(frames)} frames but the header declares one; send "
            "2-D mammograms (one frame per file).",
        )
    syntax = ds.file_meta.TransferSyntaxUID
    frame = streams.check_frame(frames[0], syntax, rows, columns, bits)
    plugin = streams.STRICT_PLUGINS.get(str(syntax))
    if plugin is None or (plugin == "pillow" and frame.precision > 8):
        return
    if plugin not in decoder.available_plugins:
        raise FileRejected(
            "unsupported_transfer_syntax",
            f"{syntax.name} is accepted only where its strict decoder ({plugin}) is "
            "installed, and it is not installed here.",
        )
    try:
        decoder.as_array(ds, decoding_plugin=plugin)
    except Exception as exc:  # each decoder raises its own types
        raise streams.corrupt(frame.kind, f"the strict decoder refuses it: {_short(exc)}") from None


def _check_native_length(length: int, expected: int) -> None:
    """Rows x Columns must account for every byte (one byte of padding to an even length).

    pydicom returns *all* the frames it finds in longer data, whatever the header says, so
    extra bytes would reach the viewer and the model as a frame nobody declared.
    """
    if length < expected:
        raise FileRejected(
            "corrupt", f"DICOM pixel data is truncated ({length} of {expected} bytes)."
        )
    if length >= 2 * expected:
        raise FileRejected(
            "multi_frame",
            f"DICOM pixel data holds {length // expected} frames of the declared size but the "
            "header declares one; send 2-D mammograms (one frame per file).",
        )
    if length > expected + expected % 2:
        raise FileRejected(
            "corrupt",
            f"DICOM pixel data does not match the declared image size ({length} bytes for "
            f"{expected}).",
        )


def _check_film(pixels: np.ndarray, rows: int, columns: int) -> None:
    """What the viewer and the model will get must be one film of the declared size."""
    if pixels.ndim == 3:
        raise FileRejected(
            "multi_frame",
            f"DICOM pixel data decodes to {pixels.shape[0]} frames but the header declares "
            "one; send 2-D mammograms (one frame per file).",
        )
    if pixels.shape != (rows, columns):
        raise FileRejected(
            "corrupt", "DICOM pixel data does not decode to the image size the header declares."
        )
    refuse_blank(pixels)


def _sop_class_name(uid: Any) -> str:
    """A standard SOP class by its name; any other value is not repeated."""
    from pydicom.uid import UID

    name = UID(str(uid)).name
    return name if name != str(uid) else "(not a standard image class)"


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
    8-bit digitised films, so it scores what a reader would see on a screen. A rescale or
    window that gives values that are not numbers raises FileRejected ("blank_image"),
    here rather than only at upload, so such a file is never shown or scored as black.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # checked: ``_not_numbers``
        shown = _shown(ds)
    shown = np.clip(shown, 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        shown = 1.0 - shown
    return (shown * 255.0).round().astype(np.uint8)


def _shown(ds: Any) -> np.ndarray:
    """Modality LUT, then VOI, to 0..1 (not yet clipped); refused where not numbers."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    pixels = apply_modality_lut(ds.pixel_array, ds)
    if not np.isfinite(pixels).all():
        raise _not_numbers()
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        looked_up = apply_voi(np.round(pixels).astype(np.int64), ds, index=0)
        shown = looked_up.astype(np.float64) / float(2**bits - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        shown = _window(pixels.astype(np.float64), ds)
    else:
        lo, hi = float(pixels.min()), float(pixels.max())
        shown = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    if not np.isfinite(shown).all():
        raise _not_numbers()
    return shown


def _not_numbers() -> FileRejected:
    """A rescale or window that is not a number (NaN, infinite, overflowing) shows nothing."""
    return FileRejected(
        "blank_image",
        "DICOM pixel values are not numbers after rescale and windowing (the header's "
        "rescale or window is not a number), so the film would show blank.",
    )


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


# Header values the database keeps as text: a control character (a NUL byte above all,
# which PostgreSQL refuses) is not valid in their value representations.
STORED_TEXT = ("AccessionNumber", "StudyDate", "ImageLaterality", "Laterality", "ViewPosition")
# UIDs kept as sent in clinical mode: the database keeps them, so they must be UIDs.
UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")


def _refuse_control_characters(ds: Any) -> None:
    for keyword in STORED_TEXT:
        if any(ord(ch) < 32 for ch in str(ds.get(keyword) or "")):
            raise FileRejected(
                "corrupt", f"DICOM header {keyword} holds control characters: not a valid value."
            )


def _header(ds: Any, clinical: bool = False) -> DicomHeader:
    _refuse_control_characters(ds)
    laterality = str(ds.get("ImageLaterality") or ds.get("Laterality") or "").upper()
    view = str(ds.get("ViewPosition") or "").upper()
    if view not in VIEWS:
        view = _view_from_code(ds)
    uid = _original_uid if clinical else remap_uid
    study_date = _date(ds.get("StudyDate"))
    identity: dict[str, Any] = {}
    if clinical:
        identity = {
            "identity_mode": IdentityMode.CLINICAL,
            "patient_name": _person_name(ds.get("PatientName")),
            "patient_id": _label(ds.get("PatientID")),
            "patient_age": _age(ds.get("PatientAge"), ds.get("PatientBirthDate"), study_date),
        }
    return DicomHeader(
        study_uid=uid(str(ds.StudyInstanceUID)),
        sop_uid=uid(str(ds.SOPInstanceUID)),
        sop_class_uid=str(ds.SOPClassUID),
        laterality=laterality if laterality in (Laterality.LEFT, Laterality.RIGHT) else "",
        view=view if view in VIEWS else View.UNKNOWN,
        accession_number=str(ds.get("AccessionNumber") or "").strip()[:64],
        study_date=study_date,
        patient_pseudonym=pseudonym_for(
            str(ds.get("PatientID") or ""),
            str(ds.get("IssuerOfPatientID") or ""),
            str(ds.StudyInstanceUID),
        ),
        birth_year=_year(ds.get("PatientBirthDate")),
        burned_in_annotation=str(ds.get("BurnedInAnnotation") or "").upper() == "YES",
        pixel_spacing_mm=_spacing(ds),
        manufacturer=_label(ds.get("Manufacturer")),
        scanner_model=_label(ds.get("ManufacturerModelName")),
        site=site_code(_label(ds.get("InstitutionName")) or _label(ds.get("StationName"))),
        **identity,
    )


def _original_uid(uid: str) -> str:
    """A UID kept as sent (clinical mode): refused unless it is one (PS3.5 9.1)."""
    uid = uid.strip().rstrip("\0")
    if len(uid) > 64 or not UID_PATTERN.fullmatch(uid):
        raise FileRejected("corrupt", "DICOM header holds a UID that is not a valid UID.")
    return uid


def _person_name(value: Any) -> str:
    """A person name (PN) as a reader reads it: "FAMILY, Given Middle" (the alphabetic
    group only), control characters dropped; "" where the header has none."""
    text = "".join(ch for ch in str(value or "").split("=")[0] if ord(ch) >= 32)
    parts = [" ".join(part.split()) for part in text.split("^")]
    family, given = parts[0], " ".join(p for p in parts[1:3] if p)
    name = f"{family.upper()}, {given}" if family and given else family.upper() or given
    return name[:128]


def _age(age: Any, birth: Any, study_date: dt.date | None) -> int | None:
    """Age in whole years at screening: Patient's Age (nnnY) if given, else birth date to
    study date; None where neither says."""
    text = str(age or "").strip().upper()
    if len(text) == 4 and text[:3].isdigit() and text[3] == "Y":
        return int(text[:3])
    born = _date(birth)
    if born is None or study_date is None or born > study_date:
        return None
    return (
        study_date.year - born.year - ((study_date.month, study_date.day) < (born.month, born.day))
    )


def _label(value: Any) -> str:
    """A header's short text as the database keeps it: control characters (a NUL above
    all, which PostgreSQL refuses) dropped, at most 64 characters."""
    text = "".join(ch for ch in str(value or "") if ord(ch) >= 32)
    return " ".join(text.split())[:64]


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
        synonyms = _synonyms(item)
        view = by_code.get(synonyms[0].value) if synonyms else None
        if view is not None:
            return view
    return View.UNKNOWN


@functools.cache
def _code_dictionary() -> dict[tuple[str, str], list[Any]]:
    """(scheme, value) -> the dictionary's Codes for it (one per synonym), SNOMED RT codes
    (schemes SRT, SNM3, still sent by GE) mapped to SNOMED CT."""
    from pydicom.sr.codedict import codes

    table: dict[tuple[str, str], list[Any]] = {}
    for scheme in ("SCT", "DCM"):
        for code in getattr(codes, scheme).concepts.values():
            table.setdefault((scheme, code.value), []).append(code)
    try:  # pydicom's own SNOMED RT -> CT table (what ``Code.__eq__`` uses)
        from pydicom.sr._snomed_dict import mapping
    except ImportError:  # a future pydicom may move it: SNOMED RT codes are then dropped
        return table
    for old, new in mapping.get("SRT", {}).items():
        if ("SCT", new) in table:
            table[("SRT", old)] = table[("SNM3", old)] = table[("SCT", new)]
    return table


def _synonyms(item: Any) -> list[Any]:
    """The dictionary's Codes for a coded item; none for a code it does not know."""
    scheme = str(item.get("CodingSchemeDesignator") or "").strip().upper()
    value = str(item.get("CodeValue") or "").strip()
    return _code_dictionary().get((scheme, value), [])


def _canonical_code(item: Any) -> Any:
    """The dictionary's Code for a coded item, or None for a code it does not know.

    The item's own meaning is kept only where it is one of the dictionary's synonyms (in
    the dictionary's spelling); otherwise the longest synonym, the most specific
    ("Cranio-caudal projection (qualifier value)", not "caudad").
    """
    synonyms = _synonyms(item)
    if not synonyms:
        return None
    said = str(item.get("CodeMeaning") or "").strip().lower()
    same = [code for code in synonyms if code.meaning.lower() == said]
    return same[0] if same else max(synonyms, key=lambda code: (len(code.meaning), code.meaning))


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


def site_code(name: str) -> str:
    """A site named by a keyed code, the same for the same name every time: drift is
    watched per site, yet the institution's and station's names, which PS3.15 removes,
    reach neither the stored file nor the database. "" for a header that names none."""
    if not name:
        return ""
    digest = salted_hmac("screening.dicom.site", name.upper(), secret=_secret()).hexdigest()
    return f"SITE-{digest[:8].upper()}"


def deidentify(ds: Any, header: DicomHeader) -> bytes:
    """A new Part 10 file holding only the allow-listed attributes, identity replaced."""
    clean = _rebuilt(ds, KEPT)
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
    return _part10(clean, ds)


def keep_identity(ds: Any, header: DicomHeader) -> bytes:
    """Clinical mode: the same allow-listed file, with the woman's identifiers and the
    original UIDs kept as sent (``CLINICAL_KEPT``); still no private tag, free text or
    other attribute beyond the allow-list."""
    clean = _rebuilt(ds, KEPT | CLINICAL_KEPT)
    for keyword in ("PatientName", "PatientID", *EMPTIED):  # Type 2: present, maybe empty
        if keyword not in clean:
            setattr(clean, keyword, "")
    return _part10(clean, ds)


def _rebuilt(ds: Any, allowed: frozenset[str]) -> Any:
    clean = _kept(ds, allowed)
    _pixels_only(clean, ds.file_meta.TransferSyntaxUID)
    if str(ds.get("RescaleType") or "").strip() in RESCALE_TYPES:
        clean.RescaleType = str(ds.RescaleType).strip()
    return clean


def _part10(clean: Any, ds: Any) -> bytes:
    from pydicom.dataset import FileMetaDataset

    clean.file_meta = FileMetaDataset()
    clean.file_meta.MediaStorageSOPClassUID = clean.SOPClassUID
    clean.file_meta.MediaStorageSOPInstanceUID = clean.SOPInstanceUID
    clean.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    buffer = io.BytesIO()
    clean.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _pixels_only(clean: Any, syntax: Any) -> None:
    """A JPEG, JPEG-LS or JPEG 2000 frame keeps its tables and compressed data and loses
    its APPn and comment segments: an encoder may write a name into EXIF or a comment
    inside the pixel data, which the allow-list keeps whole. (For one grayscale component
    no APPn changes how the pixels decode.) The stored file is decoded again at upload."""
    from pydicom.encaps import encapsulate, generate_frames

    if str(syntax) in streams.JPEG_SYNTAXES:
        strip = streams.jpeg_without_metadata
    elif str(syntax) in streams.J2K_SYNTAXES:
        strip = streams.j2k_without_comments
    else:
        return
    (frame,) = generate_frames(clean.PixelData, number_of_frames=1)
    stripped = strip(frame)
    clean.PixelData = encapsulate([stripped + b"\0" * (len(stripped) % 2)])
    clean["PixelData"].VR = "OB"


def _kept(source: Any, allowed: frozenset[str]) -> Any:
    """A new dataset of the allow-listed elements; sequences are rebuilt item by item.

    Private elements have no keyword, so they are never allowed, at any depth.
    """
    from pydicom.dataset import Dataset

    clean = Dataset()
    for element in source:
        if element.keyword not in allowed:
            continue
        if element.VR == "SQ":
            clean.add_new(element.tag, "SQ", _items(element.keyword, element.value))
        else:
            clean.add(element)
    return clean


def _items(keyword: str, items: Any) -> list[Any]:
    if keyword not in CODE_SEQUENCES:
        return [_kept(item, KEPT_IN_ITEMS) for item in items]
    rewritten = [_code_item(item) for item in items]
    return [item for item in rewritten if item is not None]


def _code_item(item: Any) -> Any:
    """A coded entry written again from the dictionary: no text of the original survives."""
    code = _canonical_code(item)
    if code is None:
        return None
    clean = _code(code.value, code.meaning, code.scheme_designator)
    for element in item:
        if element.keyword in CODE_SEQUENCES:  # e.g. the view's modifiers
            clean.add_new(element.tag, "SQ", _items(element.keyword, element.value))
    return clean


def _code(value: str, meaning: str, scheme: str = "DCM") -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def read(content: bytes) -> Any:
    """A stored (already checked and rebuilt) file as a pydicom dataset."""
    import pydicom

    return pydicom.dcmread(io.BytesIO(content))


def rendition_of(content: bytes) -> np.ndarray:
    return rendition(read(content))


def _short(exc: BaseException) -> str:
    # The exception's type only: pydicom's messages can quote attribute values, which
    # may be the very identifiers that must never be shown or logged.
    return type(exc).__name__
