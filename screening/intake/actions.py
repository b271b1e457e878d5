"""The intake verb: check, de-identify and file uploaded films as a study and case.

Shared by the upload page, the API, STOW-RS and the import command. It authorises nothing
(callers do), writes its rows and audit event in one transaction and queues the AI work.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from .. import events
from ..ai.actions import request_inference
from ..choices import CaseStatus, Modality, SourceFormat
from ..errors import DomainError
from ..imaging import lossless, previews
from ..imaging.dicom import DicomHeader
from ..imaging.films import FileRejected
from ..imaging.pictures import InspectedImage, inspect_image, view_from_name
from ..models import Case, Image, Patient, Study

log = logging.getLogger(__name__)


class UploadedFile(Protocol):
    """What an upload needs of a file: Django's uploads and test files both fit."""

    @property
    def name(self) -> str | None: ...

    @property
    def size(self) -> int | None: ...

    def read(self) -> bytes: ...


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
    # STOW-RS: an instance sent again (a client's retry after a timeout) whose stored copy
    # is the same object is answered as stored, not refused as a duplicate.
    resend_is_stored: bool = False
    # The identity mode the files were inspected in ("": the site's now) and who the films
    # are of: DICOM in clinical mode only (the header's), else empty.
    identity_mode: str = ""
    patient_name: str = ""
    patient_id: str = ""
    patient_age: int | None = None
    # Marked as a prior (the upload page's box, the API's ``prior``, a fetch from the PACS):
    # stored as history with no case. A new study dated before the woman's newest screen
    # is a prior whether marked or not.
    prior: bool = False


ALREADY_STORED = "already_stored"


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
    inspected, results = _inspect_all(files, spec.dicom_only, spec.resend_is_stored)
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
            # the study first, the others add to it; an instance the other request stored
            # is, for STOW-RS, already stored. A second clash is a real duplicate.
            if spec.resend_is_stored:
                for image, result in zip(inspected, results, strict=True):
                    _mark_if_stored(image, result)
            return _store(actor, spec, files, inspected, results)
    except UploadRefused as refusal:
        for result in results:
            result.accepted, result.code, result.status = False, "not_stored", refusal.status
            result.message = "Valid, but not stored: " + refusal.message
        refusal.results = results
        events.upload_rejected(actor, [{"position": -1, "code": "study", "status": refusal.status}])
        raise


def _inspect_all(
    files: Sequence[UploadedFile], dicom_only: bool = False, resend_is_stored: bool = False
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
            result = FileResult(position, name, True, "Ready to store.")
            if (
                image.dicom is not None
                and resend_is_stored
                and image.dicom.sop_uid not in seen_uids
            ):
                _mark_if_stored(image, result)
            try:
                _refuse_duplicates(image, result, files, seen, seen_uids)
            except FileRejected:
                if not _stored_meanwhile(image, result, resend_is_stored, seen, seen_uids):
                    raise
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
        results.append(result)
    _refuse_mixed_formats(inspected, results)
    return inspected, results


def _refuse_duplicates(
    image: InspectedImage,
    result: FileResult,
    files: Sequence[UploadedFile],
    seen: dict[str, int],
    seen_uids: dict[str, int],
) -> None:
    """A file this upload already holds, or one stored before (unless answered as stored
    already): a 409."""
    if image.dicom is not None and result.code != ALREADY_STORED:
        _check_new_instance(image.dicom, files, seen_uids)
    if image.sha256 in seen:
        raise FileRejected(
            "duplicate",
            f"Same content as {files[seen[image.sha256]].name} in this upload.",
            HTTPStatus.CONFLICT,
        )
    existing = Image.objects.filter(sha256=image.sha256).values_list("study_id", flat=True)
    if existing and result.code != ALREADY_STORED:
        raise FileRejected(
            "duplicate",
            f"This image is already stored (study {existing[0]}).",
            HTTPStatus.CONFLICT,
        )


def _stored_meanwhile(
    image: InspectedImage,
    result: FileResult,
    resend_is_stored: bool,
    seen: dict[str, int],
    seen_uids: dict[str, int],
) -> bool:
    """For STOW-RS, a parallel push of the same instance may have committed between the look
    for it and the duplicate checks: that copy is stored, not a clash. A second copy inside
    one upload always is one."""
    header = image.dicom
    in_upload = image.sha256 in seen or (header is not None and header.sop_uid in seen_uids)
    if not resend_is_stored or header is None or in_upload:
        return False
    _mark_if_stored(image, result)
    return result.code == ALREADY_STORED


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


def _mark_if_stored(image: InspectedImage, result: FileResult) -> None:
    """An instance whose UID (remapped, or original in clinical mode) is stored with the same
    rebuilt bytes is the same object sent again: answered as stored. The rebuild is
    deterministic in both modes (keyed pseudonyms and UIDs, or the originals kept), so the
    same original gives the same SHA-256; a different object under the same UID differs
    and stays a duplicate (409)."""
    header = image.dicom
    if header is None:
        return
    stored = (
        Image.objects.filter(sop_instance_uid=header.sop_uid, sha256=image.sha256)
        .values_list("pk", flat=True)
        .first()
    )
    if stored is not None:
        result.accepted, result.code, result.status = True, ALREADY_STORED, HTTPStatus.OK
        result.image_id, result.message = stored, "Already stored."


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
                group = [i for i in group if results[i].code != ALREADY_STORED]
                if not group:
                    continue
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
        log.info(
            "Stored images in study %s (%s)",
            study.pk,
            "a prior, no case" if study.is_prior else f"case {study.case_id}",
        )
    films = [image for study in studies for image in study.images.all()]
    previews.warm(films)
    if settings.DICOMWEB_LOSSLESS_FRAMES:
        lossless.warm(films)
    if not studies:  # every instance was stored before (a STOW-RS retry)
        stored = [r.image_id for r in results if r.image_id is not None]
        log.info("Upload sent again: all %d instances were already stored", len(results))
        return UploadAccepted(study=Image.objects.get(pk=stored[0]).study, results=results)
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
        row.manufacturer = header.manufacturer
        row.scanner_model = header.scanner_model
        row.site = header.site
    row.file.save(f"upload.{image.extension}", ContentFile(image.content), save=False)
    return row


def _dicom_study_for(spec: StudySpec, header: DicomHeader, several: bool) -> Study:
    """The study a DICOM file belongs to: found by its UID (as stored), or created.

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


def _locked_study(study_uid: str = "", accession: str = "") -> Study | None:
    """The study, and its case if it has one, locked against a read starting meanwhile
    (two locks: a prior's missing case is the nullable side of an outer join)."""
    lookup = {"study_instance_uid": study_uid} if study_uid else {"accession_number": accession}
    study = Study.objects.select_for_update().filter(**lookup).first()
    if study is not None and study.case_id is not None:
        study.case = Case.objects.select_for_update().get(pk=study.case_id)
    return study


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
        "identity_mode": header.identity_mode,
        "patient_name": header.patient_name,
        "patient_id": header.patient_id,
        "patient_age": header.patient_age,
    }
    return StudySpec(**{**spec.__dict__, **fields, "new_study": True})


def _check_can_add(study: Study) -> None:
    if study.case is None:  # a prior study: history, never read
        return
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
        study = _locked_study(accession=accession)
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
    study_date = spec.study_date or timezone.localdate()
    case = None
    if not (spec.prior or _older_than_newest_screen(patient, study_date)):
        case = Case.objects.create(
            patient=patient, is_synthetic=spec.synthetic, outcome=spec.outcome
        )
    return Study.objects.create(
        case=case,
        prior_of=patient if case is None else None,
        accession_number=accession,
        modality=spec.modality,
        study_date=study_date,
        source_format=SourceFormat.SYNTHETIC if spec.synthetic else source_format,
        study_instance_uid=study_instance_uid,
        # The mode at ingest, for good: a later switch never shows who a research study is.
        identity_mode=spec.identity_mode or settings.IDENTITY_MODE,
        patient_name=spec.patient_name,
        patient_id=spec.patient_id,
        patient_age=spec.patient_age,
    )


def _older_than_newest_screen(patient: Patient, study_date: dt.date) -> bool:
    """A study from before the woman's newest screen is history: reading it now would put
    an old screen on the worklist as if it were new."""
    newest = Study.objects.filter(case__patient=patient).aggregate(newest=Max("study_date"))
    return newest["newest"] is not None and study_date < newest["newest"]


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            log.exception("Could not remove orphan file %s", name)
