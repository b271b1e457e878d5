"""DICOM out: a study's AI result as objects a PACS can store and show.

Two objects, both written with highdicom and both referencing the stored (de-identified)
source instances by their remapped UIDs:

- a Comprehensive SR (TID 1500 Measurement Report): one measurement group per image with
  its "Probability of cancer" (DCM 111047, calibrated where the version has a calibration)
  and exam score, one for the case score with the version's triage status and band, and
  one planar ROI group (TID 1410, a SCOORD circle) per region mark the version may show,
  each naming the algorithm and model version (TID 4019);
- a Secondary Capture per image: the image as the reader sees it with the Grad-CAM heatmap
  blended on top (RGB), for viewers that cannot overlay anything themselves.

UIDs of the exported objects are derived from the AI result they carry, so downloading the
same result twice gives the same instance, never a second copy in the PACS.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image as PILImage

from ..intake import dicom
from ..models import AIResult, Image, ModelVersion, Study, version_band

MANUFACTURER = "Mammo Portal"
RESEARCH_NOTICE = (
    "Research software, not a medical device: AI output supports, never replaces, the reader."
)
# Concepts DICOM has no code for (exam score, band, region score, triage validity).
LOCAL_SCHEME = "99MAMMOPORTAL"
_YES = ("373066001", "SCT", "Yes")
_NO = ("373067005", "SCT", "No")
SR_SERIES_NUMBER = 9001
SC_SERIES_NUMBER = 9002


def _uid(*parts: object) -> str:
    return dicom.remap_uid("export:" + ":".join(str(p) for p in parts))


def _source(image: Image, with_pixels: bool = False) -> Any:
    import pydicom

    with image.file.open("rb") as handle:
        return pydicom.dcmread(io.BytesIO(handle.read()), stop_before_pixels=not with_pixels)


def _algorithm(version: ModelVersion) -> Any:
    import highdicom as hd

    return hd.sr.AlgorithmIdentification(
        name=f"{MANUFACTURER} {version.get_architecture_display()}",
        version=version.version,
        manufacturer=MANUFACTURER,
    )


def _probability(value: float, version: ModelVersion) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.sr.Measurement(
        name=codes.DCM.ProbabilityOfCancer,
        value=round(float(value), 6),
        unit=codes.UCUM.NoUnits,
        algorithm_id=_algorithm(version),
    )


def _local(value: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value, LOCAL_SCHEME, meaning)


def _scores(result: AIResult) -> list[Any]:
    """Probability of cancer: the calibrated one where the version has a calibration (the
    raw maximum-patch score is no probability); the exam score 1-10 where it has deciles."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    version = result.model_version
    calibrated = result.calibrated_probability
    probability = calibrated if calibrated is not None else result.probability
    assert probability is not None  # export refuses a result without a score
    found = [_probability(probability, version)]
    if result.exam_score is not None:
        found.append(
            hd.sr.Measurement(
                name=_local("EXAMSCORE", "AI exam score (1-10, deciles of normal films)"),
                value=result.exam_score,
                unit=codes.UCUM.NoUnits,
                algorithm_id=_algorithm(version),
            )
        )
    return found


def _evaluations(result: AIResult) -> list[Any]:
    """Whether the version is validated for triage, and the band where it is."""
    import highdicom as hd

    version = result.model_version
    validated = version.validated_for_triage
    found = [
        hd.sr.QualitativeEvaluation(
            name=_local("TRIAGEVALID", "AI validated for triage"),
            value=hd.sr.CodedConcept(*(_YES if validated else _NO)),
        )
    ]
    if validated and result.probability is not None:
        band = version_band(result.probability, version)
        found.append(
            hd.sr.QualitativeEvaluation(
                name=_local("RISKBAND", "AI risk band"),
                value=_local(band.upper(), band.capitalize()),
            )
        )
    return found


def _region_marks(image: Image, result: AIResult) -> list[Any]:
    """TID 1410 planar ROI groups: each shown region mark as a circle with its score."""
    import highdicom as hd

    version = result.model_version
    groups = []
    for number, mark in enumerate(result.shown_marks, start=1):
        centre = [float(mark["col"]), float(mark["row"])]
        edge = [float(mark["col"] + mark["radius"]), float(mark["row"])]
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=_uid("mark", result.pk, number),
                    identifier=f"AI region mark {number}: {image.label}",
                ),
                referenced_region=hd.sr.ImageRegion(
                    graphic_type=hd.sr.GraphicTypeValues.CIRCLE,
                    graphic_data=np.array([centre, edge]),
                    source_image=hd.sr.SourceImageForRegion(
                        image.sop_class_uid, image.sop_instance_uid
                    ),
                ),
                algorithm_id=_algorithm(version),
                measurements=[
                    hd.sr.Measurement(
                        name=_local("REGIONSCORE", "AI region score"),
                        value=round(float(mark["score"]), 6),
                        unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
                        algorithm_id=_algorithm(version),
                    )
                ],
            )
        )
    return groups


def study_report(study: Study, case_result: AIResult, results: dict[int, AIResult]) -> bytes:
    """The Comprehensive SR of one study's AI result: case and per-image scores with the
    version's triage status and band, and the region marks its evidence lets it show."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    version = case_result.model_version
    images = [i for i in study.images.order_by("pk") if i.pk in results]
    evidence = [_source(image) for image in images]
    groups: list[Any] = [
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=_uid("image-group", results[image.pk].pk),
                identifier=f"AI image score: {image.label}",
            ),
            algorithm_id=_algorithm(version),
            measurements=_scores(results[image.pk]),
            source_images=[
                hd.sr.SourceImageForMeasurementGroup(image.sop_class_uid, image.sop_instance_uid)
            ],
        )
        for image in images
    ]
    groups.append(
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=_uid("case-group", case_result.pk), identifier="AI case score"
            ),
            algorithm_id=_algorithm(version),
            measurements=_scores(case_result),
            qualitative_evaluations=_evaluations(case_result),
            source_images=[
                hd.sr.SourceImageForMeasurementGroup(i.sop_class_uid, i.sop_instance_uid)
                for i in images
            ],
        )
    )
    for image in images:
        groups.extend(_region_marks(image, results[image.pk]))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_uid("device", version.pk),
            name=MANUFACTURER,
            manufacturer_name=MANUFACTURER,
            model_name=f"{version.architecture} {version.version}",
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("24623002", "SCT", "Screening mammography"),
        imaging_measurements=groups,
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=_uid("sr-series", study.pk, version.pk),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=_uid("sr", case_result.pk, study.pk),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"AI result, model {version.version}"[:64],
    )
    return _encode(sr)


def heatmap_capture(image: Image, result: AIResult) -> bytes:
    """A Secondary Capture of the image with its heatmap blended on top (RGB, 8-bit)."""
    import highdicom as hd

    source = _source(image, with_pixels=True)
    gray = dicom.rendition(source).astype(np.float32)
    with result.heatmap.open("rb") as handle, PILImage.open(io.BytesIO(handle.read())) as heat:
        rgba = heat.convert("RGBA").resize(
            (gray.shape[1], gray.shape[0]), PILImage.Resampling.BILINEAR
        )
        heat_pixels = np.asarray(rgba, dtype=np.float32)
    alpha = heat_pixels[..., 3:4] / 255.0
    blended = gray[..., None] * (1.0 - alpha) + heat_pixels[..., :3] * alpha
    version = result.model_version
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.clip(blended.round(), 0, 255).astype(np.uint8),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=_uid("sc-series", image.study_id, version.pk),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=_uid("sc", result.pk),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=_orientation(source),
        laterality=image.laterality or None,
        series_description=f"AI heatmap, model {version.version}"[:64],
    )
    sc.BurnedInAnnotation = "NO"
    sc.ImageComments = f"AI score {result.probability:.3f} ({version}). {RESEARCH_NOTICE}"[:10240]
    sc.DerivationDescription = "Grad-CAM heatmap of the AI model blended over the image"
    reference = _reference(image)
    sc.SourceImageSequence = [reference]
    return _encode(sc)


def _orientation(source: Any) -> tuple[str, str]:
    value = source.get("PatientOrientation")
    if value and len(value) == 2:
        return (str(value[0]), str(value[1]))
    return ("A", "R") if str(source.get("ImageLaterality", "")) == "L" else ("P", "L")


def _reference(image: Image) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = image.sop_class_uid
    item.ReferencedSOPInstanceUID = image.sop_instance_uid
    return item


def _encode(dataset: Any) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
