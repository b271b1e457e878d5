"""The interop verbs: DICOM SR and SC exports to a PACS (the AI's and the readers'), their
delivery into the woman's study on the PACS (``pacs_delivery``), and the WADO-RS retrieve.

Each verb authorises nothing (callers do) and audits what it gives out or refuses.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import NoReturn

from django.contrib.auth.models import User
from django.db import transaction

from .. import events, pathway
from ..ai.queries import case_ai_results, heatmap_hidden, shown_to_readers
from ..choices import AIStatus, CaseStatus, DeliveredObject
from ..errors import Conflict, DomainError, Forbidden, NotFound
from ..models import AIResult, Case, PacsDelivery, Study
from ..reading.queries import given_reads
from ..roles import person
from . import dicom_export, pacs_delivery, read_report
from .stored_dicom import StoredInstance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DicomExport:
    filename: str  # database ids only: never an accession number or a name
    content: bytes


def export_study_report(actor: User, study_id: int) -> DicomExport:
    """A study's AI result as a DICOM Structured Report, for the PACS.

    Refused (and audited) unless the study came in as DICOM, whose instances the report
    must reference, and its case has a finished AI result.
    """
    study = (
        Study.objects.select_related("case__ai_result__model_version").filter(pk=study_id).first()
    )
    if study is None:
        raise NotFound("No such study.")
    if study.case is None:
        _refuse_export(actor, study, "A prior study is history: the AI does not score it.")
    case_result = _exportable(actor, study, study.case.ai_result)
    results = case_ai_results(study.case)
    content = dicom_export.study_report(study, case_result, results)
    events.dicom_exported(actor, study, "sr", case_result)
    return DicomExport(f"ai-report-study-{study.pk}.dcm", content)


def export_heatmap_capture(actor: User, result_id: int) -> DicomExport:
    """One image's heatmap overlay as a DICOM Secondary Capture, for the PACS."""
    result = (
        AIResult.for_images.select_related("image__study", "model_version", "case__ai_result")
        .filter(pk=result_id)
        .first()
    )
    if result is None:
        raise NotFound("No such image result.")
    image = result.scored_image
    if not shown_to_readers(result):  # another version's, a silent trial's: not for a PACS
        _refuse_export(actor, image.study, "No such image result.")
    _exportable(actor, image.study, result)
    if not result.heatmap:
        _refuse_export(actor, image.study, "No heatmap was stored for this image.")
    if not result.shows_heatmap:
        _refuse_export(actor, image.study, heatmap_hidden(result))
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


def build_read_report(case: Case) -> DicomExport:
    """The closed case's final report (every read, the arbitration, the decision) as a
    DICOM SR in the woman's study: the one verb a PACS sender calls, with no user.

    Authorises and audits nothing (``export_read_report`` does, for people). Raises
    Conflict while the case is open and NotFound without a DICOM study to land in.
    """
    if case.status != CaseStatus.CLOSED:
        raise Conflict(REPORT_NOT_YET)
    study = read_report.report_study(case)
    if study is None:
        raise NotFound(REPORT_NO_DICOM)
    reads = list(case.reads.select_related("reader").prefetch_related("findings"))
    content = read_report.read_report(case, study, reads)
    return DicomExport(f"read-report-case-{case.pk}.dcm", content)


REPORT_NOT_YET = (
    "The readers' report is written when the case closes; until then every read stays blind."
)
REPORT_NO_DICOM = "This case was not uploaded as DICOM: its report has no study to land in."
REPORT_NOT_YOURS = "Only the readers of this case and auditors may take its report."


def export_read_report(actor: User, case_id: int) -> DicomExport:
    """A closed case's final report for a person: its readers and auditors (``pathway``),
    never before the case closes. Audited as an export, and each refusal too."""
    case = Case.objects.filter(pk=case_id).first()
    if case is None:
        raise NotFound("No such case.")
    if case.status != CaseStatus.CLOSED:
        _refuse_report(actor, case, Conflict(REPORT_NOT_YET))
    if not pathway.may_take_report(person(actor), case.status, given_reads(case)):
        _refuse_report(actor, case, Forbidden(REPORT_NOT_YOURS))
    try:
        export = build_read_report(case)
    except DomainError as error:
        _refuse_report(actor, case, error)
    events.read_report_exported(actor, case)
    return export


def _refuse_report(actor: User, case: Case, error: DomainError) -> NoReturn:
    events.read_report_refused(actor, case, error.message)
    raise error


def deliver(delivery_id: int) -> str:
    """Send one object of a closed case to its PACS, if it is due and no other worker holds
    it (``pacs_delivery.claim``); the delivery's status after this attempt.

    Acknowledged: sent, audited. Anything else (PACS unreachable, a failed status, an object
    that could not be built) is audited as a failed attempt and retried after a backoff, until
    the PACS acknowledges it: the row says why meanwhile, for admins.
    """
    delivery = pacs_delivery.claim(delivery_id)
    if delivery is None:
        return "not_claimed"
    sop_uid = ""
    try:
        destination = pacs_delivery.destination_named(delivery.destination)
        if destination is None:
            raise pacs_delivery.SendFailed("This destination is no longer configured.")
        content = delivery_content(delivery)
        sop_uid = _sop_instance_uid(content)
        pacs_delivery.send(destination, content)
    except (pacs_delivery.SendFailed, DomainError) as error:
        return _attempt_failed(delivery, str(error), sop_uid)
    except Exception as error:  # the object could not be built (a stored file missing…)
        log.exception("PACS delivery %s: the object could not be built or sent", delivery.pk)
        return _attempt_failed(
            delivery, f"Could not build or send ({type(error).__name__}).", sop_uid
        )
    with transaction.atomic():
        if pacs_delivery.mark_sent(delivery, sop_uid):
            events.pacs_delivered(delivery)
    log.info(
        "PACS delivery %s (%s) acknowledged by %s", delivery.pk, delivery.kind, delivery.destination
    )
    return delivery.status


def _attempt_failed(delivery: PacsDelivery, error: str, sop_uid: str) -> str:
    with transaction.atomic():
        pacs_delivery.mark_failed(delivery, error, sop_uid)
        events.pacs_delivery_failed(delivery, error)
    log.warning(
        "PACS delivery %s to %s failed (attempt %d), retried in %.0f s: %s",
        delivery.pk,
        delivery.destination,
        delivery.attempts,
        pacs_delivery.backoff_seconds(delivery.attempts),
        error,
    )
    return delivery.status


def send_delivery_now(user: User, case_id: int, delivery_id: int) -> PacsDelivery:
    """An admin's "send again now" for a delivery that is retrying: its next attempt is
    brought forward and its job sent after commit (with the broker down, the sweep sends it,
    as it is due). Conflict where it is not retrying (sent, being sent, pending, withheld)."""
    with transaction.atomic():
        moved = pacs_delivery.bring_forward(case_id, delivery_id)
        if moved is None:
            raise Conflict("Only a delivery that failed and waits for its retry can be sent now.")
        delivery, was_due_at = moved
        events.pacs_send_now(user, delivery, was_due_at)
        transaction.on_commit(lambda: pacs_delivery.dispatch(delivery_id))
    log.info("PACS delivery %s brought forward by an admin", delivery_id)
    return delivery


def send_due_deliveries() -> int:
    """The sweep: send the job of every delivery due now (its backoff over, its message lost
    with a broker or a worker); the claim keeps a doubled message harmless."""
    due = pacs_delivery.due_deliveries()
    for delivery_id in due:
        pacs_delivery.dispatch(delivery_id)
    return len(due)


def delivery_content(delivery: PacsDelivery) -> bytes:
    """The Part 10 object a delivery carries, built as the downloads build it: the same
    deterministic UIDs, so every resend is the same instance."""
    case = delivery.case
    if delivery.kind == DeliveredObject.READ_REPORT:
        return build_read_report(case).content
    result = (
        AIResult.objects.select_related("model_version", "image__study", "case__ai_result")
        .filter(pk=int(delivery.object_key.partition(":")[2]), case=case)
        .first()
    )
    if result is None:
        raise NotFound("The AI result this delivery carries no longer exists.")
    if delivery.kind == DeliveredObject.AI_HEATMAP:
        return dicom_export.heatmap_capture(result.scored_image, result)
    study = read_report.report_study(case)
    if study is None:
        raise NotFound(REPORT_NO_DICOM)
    return dicom_export.study_report(study, result, case_ai_results(case))


def _sop_instance_uid(content: bytes) -> str:
    import pydicom

    header = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
    return str(header.SOPInstanceUID)


def wado_retrieve(
    actor: User,
    study_uid: str,
    series_uid: str = "",
    sop_uid: str = "",
    audit: bool = True,
) -> list[StoredInstance]:
    """The stored instances of a study, a series of it or one instance, for WADO-RS.

    Retrieving a study's DICOM is viewing its case: audited as such (``via="wado-rs"``),
    once per viewing (``events.case_opened_over_dicomweb``).
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
    if audit and study.case is None:
        events.prior_opened_over_dicomweb(actor, study)
    elif audit and study.case is not None:
        events.case_opened_over_dicomweb(actor, study.case)
    return instances
