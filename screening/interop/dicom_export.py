"""DICOM out: a study's AI result as objects a PACS can store and show.

Two objects, both written with highdicom and both referencing the stored (de-identified)
source instances by their remapped UIDs:

- a Comprehensive SR (TID 1500 Measurement Report): one measurement group per image and
  one for the case, each naming the algorithm and model version (TID 4019), and one planar
  ROI group (TID 1410, a SCOORD circle) per region mark the version may show. The groups
  say only what the version measured (``ModelVersion``'s rule, as on every page): a
  calibrated probability only where the calibration was fitted on validation films, as
  "Probability of cancer" (DCM 111047) only for a version trained on cancers, else as its
  own concept, "Likelihood of an abnormal finding (benign or malignant)"; the exam score
  and band only from a version validated for triage. An unvalidated version's groups hold
  no score at all, only its triage status and, as a comment (DCM 121106), the statement a
  reader sees instead;
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

from ..imaging import dicom
from ..models import AIResult, Image, ModelVersion, Study

MANUFACTURER = "Mammo Portal"
RESEARCH_NOTICE = (
    "Research software, not a medical device: AI output supports, never replaces, the reader."
)
# Concepts DICOM has no code for (exam score, band, region score, triage validity, the
# likelihood of an abnormal finding: DCM 111047 means cancer only).
LOCAL_SCHEME = "99MAMMOPORTAL"
ABNORMAL_LIKELIHOOD = (
    "ABNLIKELIHOOD",
    "Likelihood of an abnormal finding (benign or malignant)",
)
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
    """The calibrated probability, named for what the version was trained to find."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    name = (
        codes.DCM.ProbabilityOfCancer
        if version.target == "malignant"
        else _local(*ABNORMAL_LIKELIHOOD)
    )
    return hd.sr.Measurement(
        name=name,
        value=round(float(value), 6),
        unit=codes.UCUM.NoUnits,
        algorithm_id=_algorithm(version),
    )


def _local(value: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value, LOCAL_SCHEME, meaning)


def _scores(result: AIResult) -> list[Any]:
    """The calibrated probability and the exam score 1-10, each where the version's
    evidence allows it (``AIResult`` answers None otherwise). The raw maximum-patch score
    is no probability and is never sent."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    version = result.model_version
    found = []
    if result.calibrated_probability is not None:
        found.append(_probability(result.calibrated_probability, version))
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


def _with_statement(group: Any, version: ModelVersion) -> Any:
    """A version not validated for triage: its group says so in the reader's words."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if version.not_shown_reason:
        group[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=codes.DCM.Comment,
                value=version.not_shown_reason,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    return group


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
    band = result.band
    if validated and band is not None:
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
        _with_statement(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=_uid("image-group", results[image.pk].pk),
                    identifier=f"AI image score: {image.label}",
                ),
                algorithm_id=_algorithm(version),
                measurements=_scores(results[image.pk]) or None,
                source_images=[
                    hd.sr.SourceImageForMeasurementGroup(
                        image.sop_class_uid, image.sop_instance_uid
                    )
                ],
            ),
            version,
        )
        for image in images
    ]
    case_group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_uid("case-group", case_result.pk), identifier="AI case score"
        ),
        algorithm_id=_algorithm(version),
        measurements=_scores(case_result) or None,
        qualitative_evaluations=_evaluations(case_result),
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(i.sop_class_uid, i.sop_instance_uid)
            for i in images
        ],
    )
    groups.append(_with_statement(case_group, version))
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
    said = version.not_shown_reason or f"AI score {result.probability:.3f} ({version})."
    sc.ImageComments = f"{said} {RESEARCH_NOTICE}"[:10240]
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
