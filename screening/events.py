"""The audit trail: one function per event, each writing one append-only AuditEvent.

Details never carry patient identifiers (names, accession numbers, file names):
objects are named by their database ids.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.utils import timezone

from .choices import AssociationRefusal, AuditAction, AuditOutcome
from .models import (
    AIResult,
    AuditEvent,
    Case,
    DriftAlert,
    ModelVersion,
    PacsDelivery,
    Read,
    SitePolicy,
    Study,
    UnaidedOpinion,
)

Actor = User | AnonymousUser | None


def _record(
    actor: Actor,
    action: str,
    obj: Any = None,
    outcome: str = AuditOutcome.SUCCESS,
    actor_name: str = "",
    **detail: Any,
) -> AuditEvent:
    user = actor if actor is not None and actor.is_authenticated else None
    return AuditEvent.objects.create(
        actor=user,
        actor_name=actor_name or (user.get_username() if user else ""),
        action=action,
        outcome=outcome,
        object_type=obj._meta.model_name if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        detail=detail,
    )


def login_succeeded(user: User) -> AuditEvent:
    return _record(user, AuditAction.LOGIN)


def login_failed(attempted_username: str) -> AuditEvent:
    return _record(
        None,
        AuditAction.LOGIN_FAILED,
        outcome=AuditOutcome.FAILURE,
        actor_name=attempted_username[:150],
    )


def logged_out(user: Actor) -> AuditEvent:
    return _record(user, AuditAction.LOGOUT)


def case_opened(user: Actor, case: Case, via: str) -> AuditEvent:
    return _record(user, AuditAction.CASE_OPENED, case, via=via)


# Retrieving a case's DICOM over WADO-RS is viewing it; the case page's own viewer fetches
# the metadata of a case the page has just recorded as opened, and a DICOMweb client
# fetches study, series and metadata one after another. One viewing is one event.
SAME_VIEWING = dt.timedelta(minutes=10)


def case_opened_over_dicomweb(user: Actor, case: Case) -> AuditEvent | None:
    """A "case opened" event (``via="wado-rs"``) unless this user's opening of this case
    was recorded within ``SAME_VIEWING`` (by any way: page, API or WADO-RS), which already
    says who saw it and when. A prior compared on the case page is its own case, so
    retrieving it is recorded. Decided here from the trail itself, never from anything a
    client sends, so no request can leave a viewing unrecorded."""
    if user is not None and user.is_authenticated:
        recent = AuditEvent.objects.filter(
            actor=user,
            action=AuditAction.CASE_OPENED,
            object_type=case._meta.model_name,
            object_id=str(case.pk),
            created_at__gte=timezone.now() - SAME_VIEWING,
        )
        if recent.exists():
            return None
    return case_opened(user, case, via="wado-rs")


def prior_opened_over_dicomweb(user: Actor, study: Study) -> AuditEvent | None:
    """A prior study's films retrieved by WADO-RS (hung beside a current screen): recorded
    once per user and study within ``SAME_VIEWING``, as a case's viewing is."""
    if user is not None and user.is_authenticated:
        recent = AuditEvent.objects.filter(
            actor=user,
            action=AuditAction.PRIOR_OPENED,
            object_type=study._meta.model_name,
            object_id=str(study.pk),
            created_at__gte=timezone.now() - SAME_VIEWING,
        )
        if recent.exists():
            return None
    return _record(user, AuditAction.PRIOR_OPENED, study, via="wado-rs")


def read_recorded(user: Actor, read: Read) -> AuditEvent:
    return _record(
        user,
        AuditAction.READ_RECORDED,
        read.case,
        read_id=read.pk,
        kind=read.kind,
        decision=read.decision,
        birads=read.birads,
        birads_right=read.birads_right,
        birads_left=read.birads_left,
        density=read.density,
        findings=read.findings.count(),
        agrees_with_ai=read.agrees_with_ai,
        overrode_ai=read.agrees_with_ai is False,
        ai_result_id=read.ai_result_id,
    )


def opinion_committed(user: Actor, opinion: UnaidedOpinion) -> AuditEvent:
    """A read held as an unaided opinion before the AI is shown (sequential, safety net)."""
    return _record(
        user,
        AuditAction.OPINION_COMMITTED,
        opinion.case,
        opinion_id=opinion.pk,
        kind=opinion.kind,
        trigger=opinion.trigger,
        decision=opinion.decision,
        ai_result_id=opinion.ai_result_id,
    )


def policy_set(user: Actor, policy: SitePolicy) -> AuditEvent:
    return _record(
        user,
        AuditAction.POLICY_SET,
        policy,
        policy=policy.policy,
        single_read_normal=policy.single_read_normal,
        ai_reveal=policy.ai_reveal,
        starts_at=policy.starts_at.isoformat(),
    )


def read_conflicted(user: Actor, case: Case, reason: str) -> AuditEvent:
    return _record(
        user, AuditAction.READ_CONFLICT, case, outcome=AuditOutcome.FAILURE, reason=reason
    )


def study_uploaded(user: Actor, study: Study, image_ids: list[int]) -> AuditEvent:
    """A prior study (history, no case) says so: ``case_id`` is then None."""
    return _record(
        user,
        AuditAction.STUDY_UPLOADED,
        study,
        case_id=study.case_id,
        image_ids=image_ids,
        prior=study.is_prior,
    )


def upload_rejected(user: Actor, rejections: list[dict[str, Any]]) -> AuditEvent:
    """Rejections carry a file's position and reason code, never its name."""
    return _record(
        user, AuditAction.UPLOAD_REJECTED, outcome=AuditOutcome.FAILURE, rejections=rejections
    )


def model_activated(
    user: Actor, model_version: ModelVersion, previous_id: int | None
) -> AuditEvent:
    return _record(user, AuditAction.MODEL_ACTIVATED, model_version, previous_id=previous_id)


def model_registered(
    user: Actor,
    model_version: ModelVersion,
    artifact_path: str,
    actor_name: str = "",
    amended: bool = False,
) -> AuditEvent:
    """A model file entered the site: who brought it, where from, its checksum, its claims
    (``amended``: the same file came again with a changed manifest, now the one kept)."""
    return _record(
        user,
        AuditAction.MODEL_REGISTERED,
        model_version,
        actor_name=actor_name,
        checksum=model_version.checksum,
        artifact_path=artifact_path,
        architecture=model_version.architecture,
        version=model_version.version,
        target=model_version.target,
        evidence_claimed=bool(model_version.evidence),
        amended=amended,
    )


def model_refused(
    user: Actor, artifact_path: str, checksum: str, reason: str, actor_name: str = ""
) -> AuditEvent:
    """A model file was offered and refused; ``checksum`` is the offered file's, if any."""
    return _record(
        user,
        AuditAction.MODEL_REFUSED,
        outcome=AuditOutcome.FAILURE,
        actor_name=actor_name,
        checksum=checksum,
        artifact_path=artifact_path,
        reason=reason[:500],
    )


def model_evidence_loaded(user: Actor, model_version: ModelVersion) -> AuditEvent:
    """What the version may show (ranking, heatmaps, marks) was set from its manifest."""
    return _record(
        user,
        AuditAction.MODEL_EVIDENCE_LOADED,
        model_version,
        validated_for_triage=model_version.validated_for_triage,
        heatmaps_shown=model_version.shows_heatmaps,
        marks_shown=model_version.shows_marks,
        film_auc=(model_version.film_auc or {}).get("auc"),
    )


def silent_trial_started(user: Actor, model_version: ModelVersion) -> AuditEvent:
    """The version now scores every new study, for auditors only."""
    return _record(user, AuditAction.SILENT_TRIAL_STARTED, model_version)


def silent_trial_stopped(user: Actor, model_version: ModelVersion, dropped: int) -> AuditEvent:
    """The version scores nothing more; ``dropped`` queued images were taken off the queue."""
    return _record(user, AuditAction.SILENT_TRIAL_STOPPED, model_version, dropped=dropped)


def ai_retried(user: Actor, result: AIResult) -> AuditEvent:
    return _record(user, AuditAction.AI_RETRIED, result, case_id=result.case_id)


def outcome_recorded(user: Actor, case: Case, previous: str) -> AuditEvent:
    """A biopsy or follow-up result reached the case; ``previous`` keeps any correction visible."""
    return _record(
        user,
        AuditAction.OUTCOME_RECORDED,
        case,
        screening_outcome=case.outcome,  # not ``outcome``: that is the event's own success flag
        source=case.outcome_source,
        previous=previous,
    )


def drift_alert(alert: DriftAlert) -> AuditEvent:
    """A group's AI scores drifted from the version's reference in one week: no actor,
    the system noticed it. The site code, never the site's name, is recorded."""
    return _record(
        None,
        AuditAction.DRIFT_ALERT,
        alert,
        actor_name="system",
        model_version=alert.model_version_id,
        group_by=alert.group_by,
        group=alert.group,
        week=alert.week.isoformat(),
        films=alert.films,
        psi=round(alert.psi, 4),
        ks_p=alert.ks_p,
        reference=alert.reference,
    )


def exported(user: Actor, what: str, rows: int, filters: dict[str, Any]) -> AuditEvent:
    """An auditor took data away: which table, how many rows, under which filters."""
    return _record(user, AuditAction.EXPORT, what=what, rows=rows, filters=filters)


def dicom_exported(user: Actor, study: Study, kind: str, result: AIResult) -> AuditEvent:
    """A DICOM SR ("sr") or Secondary Capture ("sc") of an AI result was downloaded."""
    return _record(
        user,
        AuditAction.DICOM_EXPORTED,
        study,
        kind=kind,
        ai_result_id=result.pk,
        case_id=study.case_id,
        model_version_id=result.model_version_id,
    )


def dicom_export_refused(user: Actor, study: Study, reason: str) -> AuditEvent:
    return _record(
        user,
        AuditAction.DICOM_EXPORT_REFUSED,
        study,
        outcome=AuditOutcome.FAILURE,
        case_id=study.case_id,
        reason=reason,
    )


def read_report_exported(user: Actor, case: Case) -> AuditEvent:
    """The readers' final report of a closed case left as a DICOM SR: an export."""
    return _record(user, AuditAction.EXPORT, case, what="read_report_sr", case_id=case.pk)


def read_report_refused(user: Actor, case: Case, reason: str) -> AuditEvent:
    return _record(
        user,
        AuditAction.EXPORT,
        case,
        outcome=AuditOutcome.FAILURE,
        what="read_report_sr",
        case_id=case.pk,
        reason=reason,
    )


def upload_request_refused(
    actor: Actor, code: str, status: int, fields: list[str] | None = None
) -> AuditEvent:
    """Refused before any file was looked at: a body over the limit, or bad form fields.

    ``fields`` names the form fields that failed, never their values.
    """
    rejection: dict[str, Any] = {"position": -1, "code": code, "status": status}
    if fields:
        rejection["fields"] = sorted(fields)
    return upload_rejected(actor, [rejection])


# What a change made without a request (a management command) is recorded as done by.
COMMAND_LINE = "command line"


def roles_changed(
    actor: Actor,
    user: User,
    before: dict[str, Any],
    after: dict[str, Any],
    created: bool = False,
    pending: list[str] | None = None,
) -> AuditEvent:
    """Whose roles (or active flag) changed, from what to what, and which of the roles after
    wait for a second admin: ids and role names only."""
    return _record(
        actor,
        AuditAction.ROLES_CHANGED,
        user,
        actor_name="" if actor is not None else COMMAND_LINE,
        user_id=user.pk,
        roles_before=sorted(before["roles"]),
        roles_after=sorted(after["roles"]),
        roles_pending=sorted(pending or []),
        active_before=before["active"],
        active_after=after["active"],
        created=created,
    )


def role_confirmed(
    actor: Actor, user: User, role: str, granted_by_id: int | None, reason: str
) -> AuditEvent:
    """A second admin (or the command line) put in force a role another admin gave."""
    return _record(
        actor,
        AuditAction.ROLE_CONFIRMED,
        user,
        actor_name="" if actor is not None else COMMAND_LINE,
        user_id=user.pk,
        role=role,
        granted_by_id=granted_by_id,
        reason=reason,
    )


def role_refused(actor: Actor, user: User, role: str, granted_by_id: int | None) -> AuditEvent:
    """A role that waited for a second admin was taken away instead."""
    return _record(
        actor,
        AuditAction.ROLE_REFUSED,
        user,
        user_id=user.pk,
        role=role,
        granted_by_id=granted_by_id,
    )


def password_set(actor: Actor, user: User) -> AuditEvent:
    """An admin set someone's password: they could now sign in as that person."""
    return _record(actor, AuditAction.PASSWORD_SET, user, user_id=user.pk)


def token_issued(
    actor: Actor, user: User, expires_at: Any, replaced: bool, pending: bool = False
) -> AuditEvent:
    """Never the key itself: only whose token, until when, whether one was replaced, and
    whether it waits for its holder to confirm it (then it has no key, nor an expiry, yet)."""
    return _record(
        actor,
        AuditAction.TOKEN_ISSUED,
        user,
        user_id=user.pk,
        expires_at=expires_at.isoformat() if expires_at is not None else None,
        replaced=replaced,
        pending=pending,
    )


def token_confirmed(
    holder: User, issued_by_id: int | None, expires_at: Any, replaced: bool
) -> AuditEvent:
    """The holder took a token an admin issued for them; its key was made then."""
    return _record(
        holder,
        AuditAction.TOKEN_CONFIRMED,
        holder,
        user_id=holder.pk,
        issued_by_id=issued_by_id,
        expires_at=expires_at.isoformat(),
        replaced=replaced,
    )


def token_refused(holder: User, issued_by_id: int | None) -> AuditEvent:
    return _record(
        holder, AuditAction.TOKEN_REFUSED, holder, user_id=holder.pk, issued_by_id=issued_by_id
    )


def token_revoked(actor: Actor, user: User) -> AuditEvent:
    return _record(actor, AuditAction.TOKEN_REVOKED, user, user_id=user.pk)


def login_locked_out(attempted_username: str, ip_address: str, failures: int) -> AuditEvent:
    """Sign-ins for this account or from this address are refused until the cool-off ends."""
    return _record(
        None,
        AuditAction.LOGIN_LOCKED_OUT,
        outcome=AuditOutcome.FAILURE,
        actor_name=attempted_username[:150],
        ip_address=ip_address,
        failures=failures,
    )


def login_unlocked(actor: Actor, username: str, ip_address: str) -> AuditEvent:
    return _record(actor, AuditAction.LOGIN_UNLOCKED, username=username, ip_address=ip_address)


def triage_proposed(
    user: Actor, model_version: ModelVersion, proposal_id: int, local: dict
) -> AuditEvent:
    """An admin proposed switching a version on for triage on its local figures."""
    return _record(
        user, AuditAction.TRIAGE_PROPOSED, model_version, proposal_id=proposal_id, local=local
    )


def triage_confirmed(
    user: Actor, model_version: ModelVersion, proposal_id: int, local: dict
) -> AuditEvent:
    """An auditor confirmed it: the version now orders the worklist on these figures."""
    return _record(
        user, AuditAction.TRIAGE_CONFIRMED, model_version, proposal_id=proposal_id, local=local
    )


def triage_switched_off(user: Actor, model_version: ModelVersion, previous: dict) -> AuditEvent:
    """Switched off in one step; ``previous`` keeps what it had been switched on by."""
    return _record(user, AuditAction.TRIAGE_OFF, model_version, previous=previous)


def dicom_association_rejected(
    calling_ae: str, address: str, reason: str, code: str = AssociationRefusal.NOT_ALLOWED
) -> AuditEvent:
    """An association the node refused (a caller it does not know, or none free): nothing
    was received. ``code`` is a ``choices.AssociationRefusal``."""
    return _record(
        None,
        AuditAction.DICOM_ASSOCIATION_REJECTED,
        outcome=AuditOutcome.FAILURE,
        actor_name=f"DICOM {calling_ae}"[:150],
        calling_ae=calling_ae,
        address=address,
        reason=reason,
        code=code,
    )


def dicom_association_ended(
    calling_ae: str, address: str, how: str, instances: int, stored: int, refused: int
) -> AuditEvent:
    """One association of a known peer, once over: how it ended and what it brought."""
    return _record(
        None,
        AuditAction.DICOM_ASSOCIATION,
        outcome=AuditOutcome.SUCCESS if how == "released" and not refused else AuditOutcome.FAILURE,
        actor_name=f"DICOM {calling_ae}"[:150],
        calling_ae=calling_ae,
        address=address,
        ended=how,
        instances=instances,
        studies_stored=stored,
        studies_refused=refused,
    )


def dicom_refused(
    calling_ae: str, address: str, what: str, position: int, code: str, reason: str
) -> AuditEvent:
    """An instance (by its order in the association) or a whole study refused by the node.

    The reason is the upload checks' message; original UIDs are never recorded."""
    return _record(
        None,
        AuditAction.DICOM_REFUSED,
        outcome=AuditOutcome.FAILURE,
        actor_name=f"DICOM {calling_ae}"[:150],
        calling_ae=calling_ae,
        address=address,
        refused=what,
        position=position,
        code=code,
        reason=reason[:500],
    )


def priors_fetched(
    study: Study, pacs: str, found: int, stored: list[int], failure: str = ""
) -> AuditEvent:
    """The PACS was asked for the woman's earlier MG studies when ``study`` arrived: how many
    it holds, which were stored here as priors, or why the look-up failed (never an
    identifier: the Patient ID asked for stays in memory)."""
    return _record(
        None,
        AuditAction.PRIORS_FETCHED,
        study,
        outcome=AuditOutcome.FAILURE if failure else AuditOutcome.SUCCESS,
        actor_name=f"PACS {pacs}"[:150],
        pacs=pacs,
        found=found,
        stored_study_ids=stored,
        failure=failure[:500],
    )


def _delivery(delivery: PacsDelivery) -> dict[str, Any]:
    return {
        "case_id": delivery.case_id,
        "object": delivery.kind,
        "destination": delivery.destination,
        "attempt": delivery.attempts,
    }


def pacs_delivered(delivery: PacsDelivery) -> AuditEvent:
    """An object of a closed case acknowledged by the PACS: it left the portal."""
    return _record(
        None,
        AuditAction.PACS_DELIVERED,
        delivery,
        actor_name="PACS delivery",
        sop_instance_uid=delivery.sop_instance_uid,
        **_delivery(delivery),
    )


def pacs_delivery_failed(delivery: PacsDelivery, error: str) -> AuditEvent:
    """One attempt the PACS did not acknowledge; the delivery is tried again later."""
    return _record(
        None,
        AuditAction.PACS_DELIVERY_FAILED,
        delivery,
        outcome=AuditOutcome.FAILURE,
        actor_name="PACS delivery",
        error=error[:500],
        **_delivery(delivery),
    )


def pacs_send_now(user: User, delivery: PacsDelivery, was_due_at: dt.datetime | None) -> AuditEvent:
    """An admin brought a retrying delivery's next attempt forward to now."""
    return _record(
        user,
        AuditAction.PACS_SEND_NOW,
        delivery,
        was_due_at=was_due_at.isoformat() if was_due_at else None,
        **_delivery(delivery),
    )


def pacs_delivery_withheld(delivery: PacsDelivery, reason: str) -> AuditEvent:
    """An object deliberately not sent (a research-mode study): why, once."""
    return _record(
        None,
        AuditAction.PACS_DELIVERY_WITHHELD,
        delivery,
        outcome=AuditOutcome.FAILURE,
        actor_name="PACS delivery",
        reason=reason,
        **_delivery(delivery),
    )
