"""The business verbs of screening, shared by pages, API, management commands and tasks.

Each verb authorises nothing (callers do), writes its rows and audit event in one
transaction, and raises a domain error the caller turns into a clear response.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, NoReturn, Protocol

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Exists, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from . import events, inference, pathway, worklist_pages
from .assessment import Assessment, AssessmentError, FindingInput, Resolved, resolve
from .choices import (
    AIStatus,
    Architecture,
    CaseStatus,
    Decision,
    Modality,
    Outcome,
    OutcomeSource,
    ReadKind,
    SourceFormat,
)
from .dicom import DicomHeader
from .imaging import FileRejected, InspectedImage, inspect_image, view_from_name
from .models import AIResult, Case, Finding, Image, ModelVersion, Patient, Read, Study
from .roles import person
from .stored_dicom import StoredInstance

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A refusal the user can act on; ``status`` is the HTTP status it maps to."""

    status: int = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    status = HTTPStatus.NOT_FOUND


class Conflict(DomainError):
    status = HTTPStatus.CONFLICT


class UploadedFile(Protocol):
    """What an upload needs of a file: Django's uploads and test files both fit."""

    @property
    def name(self) -> str | None: ...

    @property
    def size(self) -> int | None: ...

    def read(self) -> bytes: ...


# --- Upload -------------------------------------------------------------------------


@dataclass
class FileResult:
    position: int
    name: str
    accepted: bool
    message: str
    code: str = "accepted"
    status: int = HTTPStatus.CREATED
    image_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.name,
            "accepted": self.accepted,
            "code": self.code,
            "message": self.message,
            "status": self.status,
            "image_id": self.image_id,
        }


@dataclass
class StudySpec:
    """Where an upload goes: a new study (and case) or an existing one."""

    accession_number: str
    new_study: bool = True
    patient_pseudonym: str = ""
    study_date: dt.date | None = None
    modality: str = Modality.MG
    birth_year: int | None = None
    synthetic: bool = False
    outcome: str = ""
    dicom_only: bool = False  # STOW-RS: a part that is not DICOM is refused


@dataclass
class UploadRefused(DomainError):
    """The whole upload was refused; ``results`` says why for each file."""

    message: str
    results: list[FileResult] = field(default_factory=list)
    status: int = HTTPStatus.BAD_REQUEST

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)


class ConcurrentUpload(UploadRefused):
    """Another upload committed the same study or image first."""


@dataclass
class UploadAccepted:
    study: Study  # the first (for PNG/JPEG the only) study stored
    results: list[FileResult]
    studies: list[Study] = field(default_factory=list)


def upload_study(actor: User, spec: StudySpec, files: Sequence[UploadedFile]) -> UploadAccepted:
    """Store every file of an upload, or none of them.

    All-or-nothing on purpose: a screening study read with a view missing is worse
    than a study not yet uploaded, so one bad file refuses the whole upload and the
    per-file results tell the admin exactly what to fix.

    DICOM files are grouped into studies by their StudyInstanceUID (one upload may hold
    several, all stored or none); accession number, date, laterality and view come from
    the header, and a study already stored under the same UID is added to.
    """
    if not files or len(files) > settings.UPLOAD_MAX_FILES:
        code = "no_files" if not files else "too_many_files"
        events.upload_rejected(actor, [{"position": -1, "code": code, "status": 400}])
        if not files:
            raise UploadRefused("No files were uploaded.")
        raise UploadRefused(
            f"{len(files)} files in one upload; at most {settings.UPLOAD_MAX_FILES} are allowed."
        )
    inspected, results = _inspect_all(files, spec.dicom_only)
    rejected = [r for r in results if not r.accepted]
    if rejected:
        _refuse(actor, results, rejected)
    try:
        try:
            return _store(actor, spec, files, inspected, results)
        except ConcurrentUpload:
            if not any(image.dicom for image in inspected):
                raise
            # A PACS pushes a study's instances in parallel requests: whichever created
            # the study first, the others add to it. A second clash is a real duplicate.
            return _store(actor, spec, files, inspected, results)
    except UploadRefused as refusal:
        for result in results:
            result.accepted, result.code, result.status = False, "not_stored", refusal.status
            result.message = "Valid, but not stored: " + refusal.message
        refusal.results = results
        events.upload_rejected(actor, [{"position": -1, "code": "study", "status": refusal.status}])
        raise


def _inspect_all(
    files: Sequence[UploadedFile], dicom_only: bool = False
) -> tuple[list[InspectedImage], list[FileResult]]:
    inspected: list[InspectedImage] = []
    results: list[FileResult] = []
    seen: dict[str, int] = {}
    seen_uids: dict[str, int] = {}
    for position, upload in enumerate(files):
        name = upload.name or f"file {position + 1}"
        try:
            image = inspect_image(name, upload.size, upload.read)
            if dicom_only and image.dicom is None:
                raise FileRejected("not_dicom", "Not a DICOM file: only DICOM is accepted here.")
            if image.dicom is not None:
                _check_new_instance(image.dicom, files, seen_uids)
            if image.sha256 in seen:
                raise FileRejected(
                    "duplicate",
                    f"Same content as {files[seen[image.sha256]].name} in this upload.",
                    HTTPStatus.CONFLICT,
                )
            existing = Image.objects.filter(sha256=image.sha256).values_list("study_id", flat=True)
            if existing:
                raise FileRejected(
                    "duplicate",
                    f"This image is already stored (study {existing[0]}).",
                    HTTPStatus.CONFLICT,
                )
        except FileRejected as rejection:
            results.append(
                FileResult(
                    position, name, False, rejection.message, rejection.code, rejection.status
                )
            )
            continue
        seen[image.sha256] = position
        if image.dicom is not None:
            seen_uids[image.dicom.sop_uid] = position
        inspected.append(image)
        results.append(FileResult(position, name, True, "Ready to store."))
    _refuse_mixed_formats(inspected, results)
    return inspected, results


def _check_new_instance(
    header: DicomHeader, files: Sequence[UploadedFile], seen_uids: dict[str, int]
) -> None:
    """A SOP instance is stored once: a second copy is a 409, like a duplicate image."""
    if header.sop_uid in seen_uids:
        raise FileRejected(
            "duplicate",
            f"Same SOPInstanceUID as {files[seen_uids[header.sop_uid]].name} in this upload.",
            HTTPStatus.CONFLICT,
        )
    existing = Image.objects.filter(sop_instance_uid=header.sop_uid).values_list(
        "study_id", flat=True
    )
    if existing:
        raise FileRejected(
            "duplicate",
            f"An image with this SOPInstanceUID is already stored (study {existing[0]}).",
            HTTPStatus.CONFLICT,
        )


def _refuse_mixed_formats(inspected: list[InspectedImage], results: list[FileResult]) -> None:
    """DICOM takes its study from the header, PNG/JPEG from the form: never both at once."""
    formats = {image.dicom is not None for image in inspected}
    if len(formats) < 2:
        return
    accepted = [r for r in results if r.accepted]
    for result, image in zip(accepted, list(inspected), strict=True):
        if image.dicom is None:
            result.accepted, result.code = False, "mixed_formats"
            result.status = HTTPStatus.BAD_REQUEST
            result.message = "PNG/JPEG cannot be uploaded together with DICOM; upload it apart."
            inspected.remove(image)


def _refuse(actor: User, results: list[FileResult], rejected: list[FileResult]) -> None:
    for result in results:
        if result.accepted:
            result.accepted, result.code, result.status = False, "not_stored", HTTPStatus.OK
            result.message = "Valid, but not stored because another file was refused."
    statuses = {r.status for r in rejected}
    status = statuses.pop() if len(statuses) == 1 else HTTPStatus.BAD_REQUEST
    events.upload_rejected(
        actor, [{"position": r.position, "code": r.code, "status": r.status} for r in rejected]
    )
    log.info("Upload refused: %d of %d files rejected", len(rejected), len(results))
    names = ", ".join(f"{r.name} ({r.message})" for r in rejected)
    raise UploadRefused(f"Upload refused, nothing was stored. Rejected: {names}", results, status)


def _store(
    actor: User,
    spec: StudySpec,
    files: Sequence[UploadedFile],
    inspected: list[InspectedImage],
    results: list[FileResult],
) -> UploadAccepted:
    written: list[str] = []
    studies: list[Study] = []
    try:
        with transaction.atomic():
            groups = _study_groups(inspected)
            for group in groups:
                header = inspected[group[0]].dicom
                if header is None:
                    study = _study_for(spec, inspected[group[0]].source_format)
                else:
                    study = _dicom_study_for(spec, header, several=len(groups) > 1)
                images = []
                for index in group:
                    row = _image_row(study, files[index].name or "", inspected[index])
                    if row.file.name:
                        written.append(row.file.name)
                    row.save()
                    images.append(row)
                    results[index].image_id, results[index].message = row.pk, "Stored."
                events.study_uploaded(actor, study, [i.pk for i in images])
                request_inference(study)
                studies.append(study)
    except IntegrityError:
        _delete_files(written)
        raise ConcurrentUpload(
            "Another upload stored the same study or image at the same moment; nothing was "
            "stored from this one.",
            results,
            HTTPStatus.CONFLICT,
        ) from None
    except BaseException:
        _delete_files(written)
        raise
    for study in studies:
        log.info("Stored images in study %s (case %s)", study.pk, study.case_id)
    return UploadAccepted(study=studies[0], results=results, studies=studies)


def _study_groups(inspected: list[InspectedImage]) -> list[list[int]]:
    """Indexes of the files of each study: DICOM by StudyInstanceUID, else all together."""
    groups: dict[str, list[int]] = {}
    for index, image in enumerate(inspected):
        key = image.dicom.study_uid if image.dicom is not None else ""
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def _image_row(study: Study, name: str, image: InspectedImage) -> Image:
    laterality, view = view_from_name(name)
    header = image.dicom
    row = Image(
        study=study,
        laterality=header.laterality if header and header.laterality else laterality,
        view=header.view if header and header.view else view,
        width=image.width,
        height=image.height,
        bit_depth=image.bit_depth,
        sha256=image.sha256,
    )
    if header is not None:
        row.sop_instance_uid = header.sop_uid
        row.sop_class_uid = header.sop_class_uid
        row.pixel_spacing_mm = header.pixel_spacing_mm
        row.burned_in_annotation = header.burned_in_annotation
    row.file.save(f"upload.{image.extension}", ContentFile(image.content), save=False)
    return row


def _dicom_study_for(spec: StudySpec, header: DicomHeader, several: bool) -> Study:
    """The study a DICOM file belongs to: found by its (remapped) UID, or created.

    The accession number and date come from the header; the form's are a fallback for
    a single study whose header has none. The patient is the header's pseudonym, the
    same one written into the stored file.

    A PACS pushes a study's instances in parallel: another request may commit the study
    between our lookup and our insert. The insert is tried under a savepoint; if it
    clashes (the accession number or UID is taken by then) the committed study is looked
    up again and added to, so every instance is stored however the requests interleave.
    """
    study = _locked_study(header.study_uid)
    if study is None:
        try:
            with transaction.atomic():
                return _study_for(
                    _dicom_spec(spec, header, several),
                    SourceFormat.DICOM,
                    study_instance_uid=header.study_uid,
                )
        except (IntegrityError, UploadRefused):
            # PostgreSQL's unique index made our insert wait for the other transaction;
            # at READ COMMITTED this new query sees what it committed.
            study = _locked_study(header.study_uid)
            if study is None:
                raise
    _check_can_add(study)
    return study


def _locked_study(study_uid: str) -> Study | None:
    return (
        Study.objects.select_for_update()
        .select_related("case")
        .filter(study_instance_uid=study_uid)
        .first()
    )


def _dicom_spec(spec: StudySpec, header: DicomHeader, several: bool) -> StudySpec:
    accession = header.accession_number or ("" if several else spec.accession_number.strip())
    if not accession:
        accession = "DCM-" + hashlib.sha256(header.study_uid.encode()).hexdigest()[:12].upper()
    fields = {
        "accession_number": accession,
        "patient_pseudonym": header.patient_pseudonym,
        "birth_year": header.birth_year,
        "study_date": header.study_date or (None if several else spec.study_date),
        "modality": Modality.MG,  # checked in the header
    }
    return StudySpec(**{**spec.__dict__, **fields, "new_study": True})


def _check_can_add(study: Study) -> None:
    if study.case.reads.exists() or study.case.status == CaseStatus.CLOSED:
        raise UploadRefused(
            "This case is already being read; images can no longer be added.",
            status=HTTPStatus.CONFLICT,
        )


def _study_for(spec: StudySpec, source_format: str, study_instance_uid: str = "") -> Study:
    accession = spec.accession_number.strip()
    if not accession:
        raise UploadRefused("An accession number is required.")
    if not spec.new_study:
        study = (
            Study.objects.select_for_update()
            .select_related("case")
            .filter(accession_number=accession)
            .first()
        )
        if study is None:
            raise UploadRefused(
                "Unknown accession number: no such study.", status=HTTPStatus.NOT_FOUND
            )
        _check_can_add(study)
        return study
    if Study.objects.filter(accession_number=accession).exists():
        raise UploadRefused(
            "A study with this accession number already exists; add to it instead.",
            status=HTTPStatus.CONFLICT,
        )
    if not spec.patient_pseudonym.strip():
        raise UploadRefused("A patient pseudonym is required for a new study.")
    patient, _ = Patient.objects.get_or_create(
        pseudonym=spec.patient_pseudonym.strip(), defaults={"birth_year": spec.birth_year}
    )
    case = Case.objects.create(patient=patient, is_synthetic=spec.synthetic, outcome=spec.outcome)
    return Study.objects.create(
        case=case,
        accession_number=accession,
        modality=spec.modality,
        study_date=spec.study_date or timezone.localdate(),
        source_format=SourceFormat.SYNTHETIC if spec.synthetic else source_format,
        study_instance_uid=study_instance_uid,
    )


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            log.exception("Could not remove orphan file %s", name)


# --- DICOM export -------------------------------------------------------------------


@dataclass(frozen=True)
class DicomExport:
    filename: str  # database ids only: never an accession number or a name
    content: bytes


def export_study_report(actor: User, study_id: int) -> DicomExport:
    """A study's AI result as a DICOM Structured Report, for the PACS.

    Refused (and audited) unless the study came in as DICOM, whose instances the report
    must reference, and its case has a finished AI result.
    """
    from . import dicom_export

    study = (
        Study.objects.select_related("case__ai_result__model_version").filter(pk=study_id).first()
    )
    if study is None:
        raise NotFound("No such study.")
    case_result = _exportable(actor, study, study.case.ai_result)
    results = case_ai_results(study.case)
    content = dicom_export.study_report(study, case_result, results)
    events.dicom_exported(actor, study, "sr", case_result)
    return DicomExport(f"ai-report-study-{study.pk}.dcm", content)


def shown_heatmap(result_id: int) -> AIResult:
    """The result whose heatmap may be shown: stored, and its version's heatmaps passed
    the randomisation test (ml.evidence); NotFound says why not."""
    result = AIResult.objects.select_related("model_version").filter(pk=result_id).first()
    if result is None or not result.heatmap:
        raise NotFound("No heatmap for this result.")
    if not result.shows_heatmap:
        raise NotFound(_heatmap_hidden(result))
    return result


def _heatmap_hidden(result: AIResult) -> str:
    return f"Heatmaps of this version are hidden: {result.model_version.heatmap_reason}"


def export_heatmap_capture(actor: User, result_id: int) -> DicomExport:
    """One image's heatmap overlay as a DICOM Secondary Capture, for the PACS."""
    from . import dicom_export

    result = (
        AIResult.objects.select_related("image__study", "model_version")
        .filter(pk=result_id, image__isnull=False)
        .first()
    )
    if result is None:
        raise NotFound("No such image result.")
    image = result.scored_image
    _exportable(actor, image.study, result)
    if not result.heatmap:
        _refuse_export(actor, image.study, "No heatmap was stored for this image.")
    if not result.shows_heatmap:
        _refuse_export(actor, image.study, _heatmap_hidden(result))
    content = dicom_export.heatmap_capture(image, result)
    events.dicom_exported(actor, image.study, "sc", result)
    return DicomExport(f"ai-heatmap-image-{result.image_id}.dcm", content)


def _exportable(actor: User, study: Study, result: AIResult | None) -> AIResult:
    if not study.is_dicom:
        _refuse_export(
            actor, study, "This study was not uploaded as DICOM: there is nothing to reference."
        )
    if result is None or result.status != AIStatus.DONE or result.probability is None:
        _refuse_export(actor, study, "There is no finished AI result to export yet.", Conflict)
    return result


def _refuse_export(
    actor: User, study: Study, reason: str, error: type[DomainError] = NotFound
) -> NoReturn:
    events.dicom_export_refused(actor, study, reason)
    raise error(reason)


# --- Worklist -----------------------------------------------------------------------


@dataclass(frozen=True)
class WorklistFilter:
    status: str = ""
    band: str = ""
    include_awaiting_ai: bool = True


def worklist(user: User, flt: WorklistFilter | None = None) -> QuerySet[Case]:
    """Cases this reader can act on: highest AI risk first, then longest waiting.

    The reading pathway decides which reads the user's roles give; a case they already
    read never comes back to them (independent second read, independent arbitration).
    Cases still awaiting AI stay readable so an AI outage never stops screening.
    """
    flt = flt or WorklistFilter()
    statuses = [
        s
        for s in pathway.statuses_read_by(person(user))
        if flt.include_awaiting_ai or s != CaseStatus.AWAITING_AI
    ]
    if flt.status:
        statuses = [s for s in statuses if s == flt.status]
    already_read = Read.objects.filter(case=OuterRef("pk"), reader=user)
    cases = (
        Case.objects.filter(status__in=statuses)
        # Only these statuses have reads, so only their rows need the anti-join.
        .exclude(Q(status__in=pathway.STATUSES_WITH_READS) & Exists(already_read))
        .select_related("patient", "ai_result__model_version")
        # what a row never shows: large JSON decoded 50 times a page for nothing
        .defer(
            "ai_result__timings",
            "ai_result__marks",
            "ai_result__model_version__metrics",
        )
    )
    cases = _filter_band(cases, flt.band)
    return cases.order_by("-triage_priority", "received_at", "pk")


def worklist_page(
    user: User, flt: WorklistFilter | None = None, after: str = "", number: str = ""
) -> worklist_pages.Page:
    """One page of the worklist: after a cursor (the Next link), else by page number (old
    links; an OFFSET walk), else the first. Raises ``worklist_pages.BadCursor``."""
    cases = worklist(user, flt)
    size = settings.WORKLIST_PAGE_SIZE
    if after:
        return worklist_pages.page_after(cases, worklist_pages.Cursor.decode(after), size)
    return worklist_pages.page_number(cases, number, size)


def _filter_band(cases: QuerySet[Case], band: str) -> QuerySet[Case]:
    return cases.filter(risk_band=band) if band else cases


def next_case(user: User, after: Case | None = None) -> Case | None:
    cases = worklist(user)
    if after is not None:
        cases = cases.exclude(pk=after.pk)
    return cases.first()


# --- Reads --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadInput:
    """A read as the reader gave it.

    ``kind`` (or, for API clients of the first version, the ``expected_status`` they saw)
    says which read this is; a read whose role no longer holds is refused, never turned
    into another kind. Per-breast categories and density make a structured read; without
    them ``decision`` and ``birads`` are the whole case's (first API version).
    """

    decision: str = ""
    birads: int | None = None
    birads_right: int | None = None
    birads_left: int | None = None
    density: str = ""
    findings: tuple[FindingInput, ...] = ()
    reason: str = ""
    seconds_taken: int | None = None
    kind: str = ""
    expected_status: str = ""

    @property
    def stated_kind(self) -> str:
        return self.kind or pathway.kind_for_expected_status(self.expected_status) or ""

    def assessment(self) -> Assessment:
        return Assessment(
            birads_right=self.birads_right,
            birads_left=self.birads_left,
            density=self.density,
            findings=self.findings,
            birads=self.birads,
            decision=self.decision,
        )


def submit_read(reader: User, case_id: int, data: ReadInput) -> Read:
    """Record a read exactly as given and move the case along the reading pathway.

    The case row is locked so two readers deciding at once cannot both win: the
    second gets a Conflict, and nothing is overwritten.
    """
    try:
        resolved = resolve(data.assessment())
    except AssessmentError as error:
        raise DomainError(str(error)) from None
    try:
        with transaction.atomic():
            case = (
                Case.objects.select_for_update(of=("self",))
                .select_related("ai_result__model_version")
                .filter(pk=case_id)
                .first()
            )
            if case is None:
                raise NotFound("No such case.")
            earlier = given_reads(case)
            kind = _read_role(reader, case, earlier, data)
            read = _create_read(reader, case, kind, data, resolved)
            _advance(case, [*earlier, _given(read)], case.note_read(read))
            events.read_recorded(reader, read)
    except Conflict as conflict:
        case = Case.objects.filter(pk=case_id).first()
        if case is not None:
            events.read_conflicted(reader, case, conflict.message)
        raise
    log.info("Read %s recorded on case %s by user %s", read.kind, case.pk, reader.pk)
    return read


def visible_reads(user: User, case: Case) -> list[Read]:
    """The case's reads this user may see (the pathway's blind-reading rule), oldest first."""
    reads = list(
        case.reads.select_related("reader").prefetch_related("findings").order_by("created_at")
    )
    shown = pathway.visible_reads(person(user), case.status, [_given(r) for r in reads])
    shown_readers = {(read.kind, read.reader_id) for read in shown}
    return [read for read in reads if (read.kind, read.reader_id) in shown_readers]


def eligible_arbitrators(case: Case) -> int:
    """How many users could arbitrate this case: readers by role who gave neither read."""
    users = get_user_model().objects.filter(
        is_active=True, groups__name__in=pathway.ROLES_FOR_KIND[ReadKind.ARBITRATION]
    )
    return users.exclude(reads__case=case).distinct().count()


def given_reads(case: Case) -> list[pathway.GivenRead]:
    """The case's reads as the pathway sees them, oldest first."""
    rows = case.reads.order_by("created_at", "pk").values_list("kind", "reader_id", "decision")
    return [pathway.GivenRead(kind, reader_id, decision) for kind, reader_id, decision in rows]


def _given(read: Read) -> pathway.GivenRead:
    return pathway.GivenRead(read.kind, read.reader_id, read.decision)


def _read_role(reader: User, case: Case, earlier: list[pathway.GivenRead], data: ReadInput) -> str:
    try:
        return pathway.read_role(person(reader), case.status, earlier, data.stated_kind)
    except pathway.ReadNotAllowed as refusal:
        if refusal.status == HTTPStatus.CONFLICT:
            raise Conflict(refusal.message) from None
        error = DomainError(refusal.message)
        error.status = refusal.status
        raise error from None


def _create_read(reader: User, case: Case, kind: str, data: ReadInput, resolved: Resolved) -> Read:
    ai_result = case.ai_result if case.ai_score is not None else None
    ai_recall = case.ai_recommends_recall
    agrees = None if ai_recall is None else (resolved.decision == Decision.RECALL) == ai_recall
    if agrees is False and not data.reason.strip():
        raise DomainError("A reason is required when overriding the AI.")
    try:
        with transaction.atomic():
            read = Read.objects.create(
                case=case,
                reader=reader,
                kind=kind,
                decision=resolved.decision,
                birads=resolved.birads,
                birads_right=data.birads_right,
                birads_left=data.birads_left,
                density=data.density,
                ai_result=ai_result,
                agrees_with_ai=agrees,
                reason=data.reason.strip(),
                seconds_taken=data.seconds_taken,
            )
            Finding.objects.bulk_create(
                Finding(read=read, breast=f.breast, finding=f.finding, site=f.site, depth=f.depth)
                for f in data.findings
            )
            return read
    except IntegrityError:
        raise Conflict("Another reader recorded this read first; nothing was saved.") from None


def _advance(case: Case, reads: list[pathway.GivenRead], noted: Sequence[str] = ()) -> None:
    """Move the case along the pathway; ``noted``: read columns already set on it."""
    after = pathway.after_read(reads)
    case.status = after.status
    if after.status == CaseStatus.CLOSED:
        case.final_decision = after.final_decision
        case.closed_at = timezone.now()
    case.save(update_fields=["status", "final_decision", "closed_at", *noted])


# --- Outcomes -----------------------------------------------------------------------


def record_outcome(actor: User, accession_number: str, outcome: str, source: str) -> Case:
    """Attach the screen's outcome (biopsy or follow-up) to the case of a study.

    Outcomes arrive weeks after the reads, keyed by the hospital's accession number; they
    are what sensitivity and specificity are measured against. A later result replaces an
    earlier one, and the audit event keeps the one it replaced.
    """
    if outcome not in Outcome.values:
        raise DomainError(f"Outcome must be one of {', '.join(Outcome.values)}.")
    if source not in OutcomeSource.values:
        raise DomainError(f"Source must be one of {', '.join(OutcomeSource.values)}.")
    with transaction.atomic():
        case = (
            Case.objects.select_for_update()
            .filter(studies__accession_number=accession_number.strip())
            .first()
        )
        if case is None:
            raise NotFound("Unknown accession number: no such study.")
        previous = case.outcome
        case.outcome, case.outcome_source = outcome, source
        case.save(update_fields=["outcome", "outcome_source"])
        events.outcome_recorded(actor, case, previous)
    log.info("Outcome recorded on case %s", case.pk)
    return case


# --- Model versions -----------------------------------------------------------------


def activate_model_version(actor: User | None, model_version_id: int) -> ModelVersion:
    """Make one model version the one that triages; exactly one is ever active."""
    with transaction.atomic():
        target = ModelVersion.objects.select_for_update().filter(pk=model_version_id).first()
        if target is None:
            raise NotFound("No such model version.")
        previous = ModelVersion.objects.filter(is_active=True).exclude(pk=target.pk).first()
        if previous is not None:
            previous.is_active = False
            previous.save(update_fields=["is_active"])
        target.is_active = True
        target.activated_at = timezone.now()
        target.save(update_fields=["is_active", "activated_at"])
        events.model_activated(actor, target, previous.pk if previous else None)
        transaction.on_commit(lambda: _fan_out_rescore(target.pk))
    log.info("Model version %s activated (previous %s)", target.pk, previous and previous.pk)
    return target


def _fan_out_rescore(model_version_id: int) -> None:
    from .tasks import rescore_open_cases_task

    try:
        rescore_open_cases_task.delay(model_version_id)
    except Exception:  # broker down: the admin can activate again, nothing is lost
        log.warning(
            "Broker unavailable: re-scoring for model version %s not queued", model_version_id
        )


def active_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def request_inference(study: Study) -> list[int]:
    """Queue a study for the active model, if there is one; the job is sent after commit."""
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is None:
        return []
    return inference.queue_study(study.pk, active.pk)


def register_model_version(
    actor: User | None, artifact: str, activate: bool = False
) -> ModelVersion:
    """Record a trained artifact as a model version, after verifying its checksum."""
    from ml.artifacts import ArtifactError, verify_checksum

    path = Path(artifact).resolve()
    try:
        manifest = verify_checksum(path)
    except ArtifactError as error:
        raise DomainError(f"Artifact refused: {error}") from None
    if manifest.architecture not in Architecture.values:
        raise DomainError(f"Unknown architecture {manifest.architecture!r}.")
    try:
        stored_path = str(path.relative_to(settings.BASE_DIR))
    except ValueError:
        stored_path = str(path)
    version, created = ModelVersion.objects.get_or_create(
        architecture=manifest.architecture,
        version=manifest.version,
        defaults={
            "artifact_path": stored_path,
            "checksum": manifest.sha256,
            "input_size": manifest.input_size,
            "threshold": manifest.threshold,
            "metrics": manifest.metrics,
            "evidence": manifest.evidence,
        },
    )
    if not created and version.checksum != manifest.sha256:
        raise Conflict(f"{version} is already registered with a different checksum.")
    if created:
        events.model_evidence_loaded(actor, version)
    elif version.evidence != manifest.evidence:
        version = load_model_evidence(actor, version, manifest.evidence)
    if activate and not version.is_active:
        version = activate_model_version(actor, version.pk)
    return version


def load_model_evidence(actor: User | None, version: ModelVersion, evidence: dict) -> ModelVersion:
    """Take a re-evaluated manifest's evidence for the same model file (same checksum).

    What the worklist, bands and heatmaps show follows at once: every case this version's
    result is shown on gets its worklist key and band again.
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        version.evidence = evidence
        version.save(update_fields=["evidence"])
        shown = Case.objects.filter(ai_result__model_version=version).select_related("ai_result")
        changed = []
        for case in shown.iterator(chunk_size=2000):
            result = case.ai_result
            assert result is not None  # the filter joins through it
            result.model_version = version
            case.show_ai_result(result)
            changed.append(case)
        Case.objects.bulk_update(changed, ["triage_priority", "risk_band"], batch_size=1000)
        events.model_evidence_loaded(actor, version)
    log.info(
        "Model version %s: evidence loaded (validated for triage: %s)",
        version.pk,
        version.validated_for_triage,
    )
    return version


def retry_ai_result(actor: User, result_id: int) -> AIResult:
    result = AIResult.objects.filter(pk=result_id).select_related("image").first()
    if result is None:
        raise NotFound("No such AI result.")
    if result.status != AIStatus.FAILED:
        raise Conflict("Only a failed result can be retried.")
    with transaction.atomic():
        inference.retry_result(result)
        events.ai_retried(actor, result)
    return result


def case_ai_results(case: Case) -> dict[int, AIResult]:
    """The shown model version's finished result for each image of the case."""
    if case.ai_result is None:
        return {}
    results = AIResult.objects.filter(
        case=case,
        model_version_id=case.ai_result.model_version_id,
        image__isnull=False,
        status=AIStatus.DONE,
    ).select_related("model_version", "image")
    return {r.image_id: r for r in results if r.image_id is not None}


def case_ai_states(cases: list[Case]) -> dict[int, str]:
    """What a reader sees of each case's AI, in one query for a whole page of cases.

    The shown result's status (done or failed) when there is one; otherwise the work in
    flight for its images (running before queued); otherwise "pending": no job yet.
    """
    waiting = [c.pk for c in cases if c.ai_result_id is None]
    in_flight: dict[int, set[str]] = {pk: set() for pk in waiting}
    if waiting:
        rows = AIResult.objects.filter(
            case_id__in=waiting,
            image__isnull=False,
            status__in=[AIStatus.QUEUED, AIStatus.RUNNING],
        ).values_list("case_id", "status")
        for case_id, status in rows.distinct():
            in_flight[case_id].add(status)
    states = {}
    for case in cases:
        if case.ai_result is not None:
            states[case.pk] = case.ai_result.status
        elif AIStatus.RUNNING in in_flight[case.pk]:
            states[case.pk] = AIStatus.RUNNING.value
        elif AIStatus.QUEUED in in_flight[case.pk]:
            states[case.pk] = AIStatus.QUEUED.value
        else:
            states[case.pk] = "pending"
    return states


# --- Viewer: DICOMweb retrieve and priors ---------------------------------------------


def wado_retrieve(
    actor: User,
    study_uid: str,
    series_uid: str = "",
    sop_uid: str = "",
    audit: bool = True,
) -> list[StoredInstance]:
    """The stored instances of a study, a series of it or one instance, for WADO-RS.

    Retrieving a study's DICOM is viewing its case: audited as such (``via="wado-rs"``).
    """
    study = (
        Study.objects.filter(study_instance_uid=study_uid)
        .exclude(study_instance_uid="")
        .select_related("case")
        .first()
    )
    if study is None:
        raise NotFound("No stored study has this Study Instance UID.")
    images = study.images.exclude(sop_instance_uid="").order_by("pk")
    if sop_uid:
        images = images.filter(sop_instance_uid=sop_uid)
    instances = [StoredInstance.of(image) for image in images]
    if series_uid:
        instances = [i for i in instances if i.series_uid == series_uid]
    if not instances:
        raise NotFound("No stored instance matches.")
    if audit:
        events.case_opened(actor, study.case, via="wado-rs")
    return instances


def priors(case: Case) -> list[Case]:
    """The same woman's earlier screens (same patient pseudonym), newest first."""
    dated = Case.objects.annotate(first_study=Min("studies__study_date"))
    own = dated.get(pk=case.pk).first_study
    earlier = dated.filter(patient_id=case.patient_id).exclude(pk=case.pk)
    if own is not None:
        earlier = earlier.filter(first_study__lt=own)
    return list(earlier.select_related("patient").order_by("-first_study", "-pk"))
