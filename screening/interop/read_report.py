"""DICOM out: the readers' final report of a closed case, as a Comprehensive SR.

The AI's SR (``dicom_export``) says what a model measured; this one says what the readers
decided, so the read can leave the portal and land in the woman's study on the PACS. It
follows the concepts of DICOM's Breast Imaging Report (TID 4200), written with highdicom:

- root "Breast Imaging Report" (DCM 111400): the procedure (screening mammography);
- "Overall Assessment" (DCM 111413): the final decision, how the case closed (agreement of
  first and second reads, or arbitration) and, per breast, the BI-RADS assessment category
  (DCM 111005, CID 6026/6027 codes: SNOMED CT 0-5, ACR BI-RADS "MA.II.A.5.6" for 6) of the
  read whose decision closed it (``pathway.closing_kind``);
- one container per read (first, second, arbitration) with its reader as person observer
  (TID 1002), its decision, breast composition (CID 6000), per-breast categories and each
  finding (CID 6054) with its breast, clock face or quadrant (CID 6019/6020) and depth
  (CID 6024), and where the reader marked it on a film the report holds, the mark as an
  "Image Region" SCOORD (POINT, ELLIPSE, or an arrow as a two-point POLYLINE, tail then
  head) in the film's pixel coordinates, SELECTED FROM the film by its SOP Instance UID;
- an "Image Library" (DCM 111028) naming every film of the study by its SOP Instance UID
  as stored.

Readers are named by their user name: the read is a clinical act a reporting system must
tie to an accountable person, the name is what the audit trail records, and the staff are
not whom de-identification protects. The reader's free-text reason is left out: it is not
a coded value and could carry what de-identification removed.

The report's UIDs derive from the case, so building it twice gives the same instance: a
PACS keeps one copy however often it is sent.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from .. import pathway
from ..choices import (
    BiRads,
    Breast,
    CaseRoute,
    Decision,
    Density,
    FindingDepth,
    FindingType,
    MarkShape,
    ReadKind,
)
from ..models import Case, Finding, Image, Read, Study
from ..reading.queries import given
from .dicom_export import LOCAL_SCHEME, MANUFACTURER, _encode, _uid

SR_SERIES_NUMBER = 9003
REPORT_TITLE = ("111400", "DCM", "Breast Imaging Report")
OVERALL_ASSESSMENT = ("111413", "DCM", "Overall Assessment")
ASSESSMENT_CATEGORY = ("111005", "DCM", "Assessment Category")
BREAST_COMPOSITION = ("129715009", "SCT", "Breast composition")
FINDING = ("121071", "DCM", "Finding")
FINDING_SITE = ("363698007", "SCT", "Finding Site")
CLOCKFACE = ("111014", "DCM", "Clockface or region")
QUADRANT = ("111048", "DCM", "Quadrant location")
DEPTH = ("111020", "DCM", "Depth")
IMAGE_LIBRARY = ("111028", "DCM", "Image Library")
IMAGE_REGION = ("111030", "DCM", "Image Region")
SOURCE_IMAGE = ("121324", "DCM", "Source image")
PROCEDURE_REPORTED = ("121058", "DCM", "Procedure reported")
SCREENING_MAMMOGRAPHY = ("24623002", "SCT", "Screening mammography")
PERSON = ("121006", "DCM", "Person")

# CID 6026 Mammography Assessment, which includes CID 6027 Assessment from BI-RADS.
BIRADS_CODES = {
    BiRads.INCOMPLETE: (
        "397138000",
        "SCT",
        "0 - Incomplete - Need additional imaging evaluation +/- priors",
    ),
    BiRads.NEGATIVE: ("397140005", "SCT", "1 - Negative"),
    BiRads.BENIGN: ("397141009", "SCT", "2 - Benign"),
    BiRads.PROBABLY_BENIGN: ("397143007", "SCT", "3 - Probably Benign"),
    BiRads.SUSPICIOUS: ("397144001", "SCT", "4 - Suspicious"),
    BiRads.HIGHLY_SUGGESTIVE: ("397145000", "SCT", "5 - Highly suggestive of malignancy"),
    BiRads.KNOWN_MALIGNANCY: ("MA.II.A.5.6", "BI", "6 - Known biopsy proven malignancy"),
}
# CID 6000 Overall Breast Composition (BI-RADS 5th edition a-d).
DENSITY_CODES = {
    Density.A: ("129716005", "SCT", "Almost entirely fat"),
    Density.B: ("129717001", "SCT", "Scattered fibroglandular densities"),
    Density.C: ("129718006", "SCT", "Heterogeneously dense"),
    Density.D: ("129719003", "SCT", "Extremely dense"),
}
# CID 6022 Side.
BREAST_CODES = {
    Breast.RIGHT: ("73056007", "SCT", "Right breast"),
    Breast.LEFT: ("80248007", "SCT", "Left breast"),
}
# CID 6054 Breast Imaging Findings.
FINDING_CODES = {
    FindingType.MASS: ("129788004", "SCT", "Mammographic breast mass"),
    FindingType.CALCIFICATION: ("309587003", "SCT", "Calcification of breast"),
    FindingType.ASYMMETRY: ("129790003", "SCT", "Asymmetric breast tissue"),
    FindingType.DISTORTION: ("129792006", "SCT", "Architectural distortion of breast"),
}
# CID 6019 Clockface Location or Region, and CID 6020 Quadrant Location.
CLOCK_CODES = {
    "1": ("129772004", "SCT", "1 o'clock position"),
    "2": ("129773009", "SCT", "2 o'clock position"),
    "3": ("129774003", "SCT", "3 o'clock position"),
    "4": ("129775002", "SCT", "4 o'clock position"),
    "5": ("129776001", "SCT", "5 o'clock position"),
    "6": ("129777005", "SCT", "6 o'clock position"),
    "7": ("129778000", "SCT", "7 o'clock position"),
    "8": ("129779008", "SCT", "8 o'clock position"),
    "9": ("129780006", "SCT", "9 o'clock position"),
    "10": ("129781005", "SCT", "10 o'clock position"),
    "11": ("129782003", "SCT", "11 o'clock position"),
    "12": ("129783008", "SCT", "12 o'clock position"),
    "retroareolar": ("129784002", "SCT", "Subareolar region"),
    "axillary_tail": ("129785001", "SCT", "Axillary tail region"),
}
QUADRANT_CODES = {
    "UOQ": ("76365002", "SCT", "Upper outer quadrant of breast"),
    "UIQ": ("77831004", "SCT", "Upper inner quadrant of breast"),
    "LOQ": ("33564002", "SCT", "Lower outer quadrant of breast"),
    "LIQ": ("19100000", "SCT", "Lower inner quadrant of breast"),
}
# CID 6024 Depth.
DEPTH_CODES = {
    FindingDepth.ANTERIOR: ("255549009", "SCT", "Anterior"),
    FindingDepth.MIDDLE: ("C25569", "NCIt", "Middle"),
    FindingDepth.POSTERIOR: ("255551008", "SCT", "Posterior"),
}
# Concepts DICOM has no code for: the screening decision, which read, how the case closed.
DECISION = ("SCRDECISION", LOCAL_SCHEME, "Screening decision")
DECISION_CODES = {
    Decision.RECALL: ("RECALL", LOCAL_SCHEME, "Recall for assessment"),
    Decision.NO_RECALL: ("NORECALL", LOCAL_SCHEME, "No recall (routine screening)"),
}
READ = ("SCRREAD", LOCAL_SCHEME, "Screening read")
READ_KIND = ("READKIND", LOCAL_SCHEME, "Read in double reading")
READ_KIND_CODES = {
    ReadKind.FIRST: ("FIRSTREAD", LOCAL_SCHEME, "First read"),
    ReadKind.SECOND: ("SECONDREAD", LOCAL_SCHEME, "Second read"),
    ReadKind.ARBITRATION: ("ARBITRATION", LOCAL_SCHEME, "Arbitration"),
}
CLOSED_BY = ("CLOSEDBY", LOCAL_SCHEME, "Case closed by")
CLOSED_BY_CODES = {
    ReadKind.FIRST: (
        "FIRSTREAD",
        LOCAL_SCHEME,
        "First read alone (single reading, or agreed with the AI as second reader)",
    ),
    ReadKind.SECOND: ("AGREED", LOCAL_SCHEME, "Agreement of first and second reads"),
    ReadKind.ARBITRATION: ("ARBITRATED", LOCAL_SCHEME, "Arbitration of disagreeing reads"),
}


def report_study(case: Case) -> Study | None:
    """The study the report belongs to: the case's first study that came in as DICOM."""
    studies = [study for study in case.studies.order_by("pk") if study.is_dicom]
    return studies[0] if studies else None


def report_study_uid(study: Study) -> str:
    """The one place that decides which Study Instance UID the report lands in.

    The UID as stored, the one the study's films carry: in research mode the remapped UID
    (the report lands beside the de-identified copy), in clinical mode the hospital's
    original, so the report lands in the woman's study on the PACS. Decided by the mode
    the study was ingested in, never the site's mode now: a research study stays remapped.
    """
    return study.study_instance_uid


def _concept(code: tuple[str, str, str]) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(*code)


def _code(name: tuple[str, str, str], value: tuple[str, str, str], relation: str) -> Any:
    import highdicom as hd

    return hd.sr.CodeContentItem(
        name=_concept(name), value=_concept(value), relationship_type=relation
    )


def _container(name: tuple[str, str, str], children: Sequence[Any], relation: str | None) -> Any:
    import highdicom as hd

    item = hd.sr.ContainerContentItem(name=_concept(name), relationship_type=relation)
    item.ContentSequence = hd.sr.ContentSequence(children)
    return item


def _with(item: Any, children: Sequence[Any]) -> Any:
    import highdicom as hd

    if children:
        item.ContentSequence = hd.sr.ContentSequence(children)
    return item


def _assessments(read: Read) -> list[Any]:
    """The read's BI-RADS category per breast, each with its breast as finding site; a read
    from before per-breast reading gives its one case-level category, with no site."""
    if read.birads_right is None or read.birads_left is None:
        return [_code(ASSESSMENT_CATEGORY, BIRADS_CODES[BiRads(read.birads)], "CONTAINS")]
    return [
        _with(
            _code(ASSESSMENT_CATEGORY, BIRADS_CODES[BiRads(category)], "CONTAINS"),
            [_code(FINDING_SITE, BREAST_CODES[breast], "HAS CONCEPT MOD")],
        )
        for breast, category in ((Breast.RIGHT, read.birads_right), (Breast.LEFT, read.birads_left))
    ]


# A mark's shape as an SCOORD graphic type: an arrow is the line from its tail to its head.
GRAPHIC_TYPES = {
    MarkShape.POINT: "POINT",
    MarkShape.ELLIPSE: "ELLIPSE",
    MarkShape.ARROW: "POLYLINE",
}


def _region(finding: Finding) -> Any:
    """The finding's mark as an SCOORD on its film (``None`` where it has none the report
    can point at: no mark, or a film without a SOP Instance UID in this report)."""
    import highdicom as hd
    import numpy as np

    points = np.array(finding.mark_points, dtype=float).reshape(-1, 2)
    if finding.mark_shape == MarkShape.ELLIPSE:
        axes = np.linalg.norm(points[[1, 3]] - points[[0, 2]], axis=1)
        if axes[0] < axes[1]:  # SCOORD ELLIPSE: the major axis's ends first
            points = points[[2, 3, 0, 1]]
    region = hd.sr.ScoordContentItem(
        name=_concept(IMAGE_REGION),
        graphic_type=GRAPHIC_TYPES[MarkShape(finding.mark_shape)],
        graphic_data=points,
        relationship_type="INFERRED FROM",
    )
    film = finding.image
    assert film is not None
    source = hd.sr.ImageContentItem(
        name=_concept(SOURCE_IMAGE),
        referenced_sop_class_uid=film.sop_class_uid,
        referenced_sop_instance_uid=film.sop_instance_uid,
        relationship_type="SELECTED FROM",
    )
    return _with(region, [source])


def _finding(finding: Finding, films: frozenset[int]) -> Any:
    """One finding: its type, breast, clock face or quadrant, depth where given, and its
    mark where it is on one of ``films`` (the report's films, by id)."""
    site = (
        (CLOCKFACE, CLOCK_CODES[finding.site])
        if finding.site in CLOCK_CODES
        else (QUADRANT, QUADRANT_CODES[finding.site])
    )
    properties = [
        _code(FINDING_SITE, BREAST_CODES[Breast(finding.breast)], "HAS CONCEPT MOD"),
        _code(*site, "HAS PROPERTIES"),
    ]
    if finding.depth:
        properties.append(_code(DEPTH, DEPTH_CODES[FindingDepth(finding.depth)], "HAS PROPERTIES"))
    if finding.image_id in films:
        properties.append(_region(finding))
    return _with(
        _code(FINDING, FINDING_CODES[FindingType(finding.finding)], "CONTAINS"), properties
    )


def _observer(read: Read) -> list[Any]:
    """TID 1002: the person who gave the read, by user name (see the module's docstring)."""
    import highdicom as hd

    username = read.reader.get_username()
    return list(
        hd.sr.ObserverContext(
            observer_type=_concept(PERSON),
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                # One component (the trailing caret says so) within PN's 64 characters.
                name=f"{username[:63]}^",
                login_name=username,
            ),
        )
    )


def _read(read: Read, films: frozenset[int]) -> Any:
    children = [
        *_observer(read),
        _code(READ_KIND, READ_KIND_CODES[ReadKind(read.kind)], "CONTAINS"),
        _code(DECISION, DECISION_CODES[Decision(read.decision)], "CONTAINS"),
    ]
    if read.density:
        children.append(_code(BREAST_COMPOSITION, DENSITY_CODES[Density(read.density)], "CONTAINS"))
    children.extend(_assessments(read))
    findings = read.findings.select_related("image")
    children.extend(_finding(finding, films) for finding in findings)
    return _container(READ, children, "CONTAINS")


def _overall(case: Case, reads: Sequence[Read]) -> Any:
    """The final decision, how the case closed and the closing read's categories."""
    plan = pathway.Plan(case.route or CaseRoute.DOUBLE, case.ai_decision)
    closing = pathway.closing_kind([given(read) for read in reads], plan)
    deciding = next(read for read in reads if read.kind == closing)
    children = [
        _code(DECISION, DECISION_CODES[Decision(case.final_decision)], "CONTAINS"),
        _code(CLOSED_BY, CLOSED_BY_CODES[ReadKind(closing)], "CONTAINS"),
        *_assessments(deciding),
    ]
    return _container(OVERALL_ASSESSMENT, children, "CONTAINS")


def _library(images: Sequence[Image]) -> Any:
    import highdicom as hd

    return _container(
        IMAGE_LIBRARY,
        [
            hd.sr.ImageContentItem(
                name=_concept(SOURCE_IMAGE),
                referenced_sop_class_uid=image.sop_class_uid,
                referenced_sop_instance_uid=image.sop_instance_uid,
                relationship_type="CONTAINS",
            )
            for image in images
        ],
        "CONTAINS",
    )


def _evidence(image: Image, study_uid: str) -> Any:
    """The stored film's header, holding its UIDs as the database stores them: the report
    copies the woman's (pseudonymised) patient module from it and references it."""
    import pydicom

    with image.file.open("rb") as handle:
        header = pydicom.dcmread(io.BytesIO(handle.read()), stop_before_pixels=True)
    header.StudyInstanceUID = study_uid
    header.SOPInstanceUID = image.sop_instance_uid
    header.SOPClassUID = image.sop_class_uid
    return header


def read_report(case: Case, study: Study, reads: Sequence[Read]) -> bytes:
    """The Comprehensive SR of a closed case's reads (see the module's docstring)."""
    import highdicom as hd

    study_uid = report_study_uid(study)
    images = list(study.images.exclude(sop_instance_uid="").order_by("pk"))
    root = _container(
        REPORT_TITLE,
        [
            _code(PROCEDURE_REPORTED, SCREENING_MAMMOGRAPHY, "HAS CONCEPT MOD"),
            _overall(case, reads),
            *(_read(read, frozenset(image.pk for image in images)) for read in reads),
            _library(images),
        ],
        None,
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[_evidence(image, study_uid) for image in images],
        content=root,
        series_instance_uid=_uid("read-report-series", study.pk),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=_uid("read-report", case.pk, study.pk),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        # Final: the case is closed and its reads never change. Unverified: the portal has
        # no attestation (signature) step, and verifying would claim one.
        is_final=True,
        series_description="Screening read: final report",
    )
    return _encode(sr)
