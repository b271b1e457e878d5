"""The reading verb: record a read and move the case along the pathway (``pathway.py``).

What happens when a second reader disagrees is decided there (``after_read``); this
module locks the case, checks the reader's role and writes the read and its audit event.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import events, hooks, pathway
from ..ai.queries import case_ai
from ..choices import AIReveal, CaseRoute, CaseStatus, Decision, HangingProtocol, ReadingPolicy
from ..errors import Conflict, DomainError, NotFound
from ..models import (
    Case,
    Finding,
    ModelVersion,
    Read,
    ReadDraft,
    ReaderSettings,
    SitePolicy,
    UnaidedOpinion,
)
from ..roles import person
from .assessment import Assessment, AssessmentError, FindingInput, Resolved, resolve
from .queries import films, given, given_reads, plan_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadInput:
    """A read as the reader gave it.

    ``kind`` (or, for API clients of the first version, the ``expected_status`` they saw)
    says which read this is; a read whose role no longer holds is refused, never turned
    into another kind. Per-breast categories and density are required (``assessment``);
    ``decision`` and ``birads``, if given, must match what they mean.
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


def submit_read(reader: User, case_id: int, data: ReadInput) -> Read | UnaidedOpinion:
    """Record a read exactly as given and move the case along the reading pathway.

    Where the site's policy asks for it (sequential reveal, the safety net) the reader's
    first submission is held as their unaided opinion and returned as such: the case does
    not move, the AI is shown to them, and their next submission is the final read, with a
    reason if it changed the decision. The case row is locked so two readers deciding at
    once cannot both win: the second gets a Conflict, and nothing is overwritten.
    """
    try:
        resolved = resolve(data.assessment(), films(case_id))
    except AssessmentError as error:
        raise DomainError(str(error)) from None
    try:
        with transaction.atomic():
            case = (
                Case.objects.select_for_update(of=("self",))
                .select_related("ai_result__model_version", "policy")
                .filter(pk=case_id)
                .first()
            )
            if case is None:
                raise NotFound("No such case.")
            earlier = given_reads(case)
            kind = _read_role(reader, case, earlier, data)
            opinion = pending_opinion(reader, case, kind)
            if opinion is None and (trigger := _revision_trigger(case, resolved.decision)):
                opinion = _commit_opinion(reader, case, kind, trigger, data, resolved)
                events.opinion_committed(reader, opinion)
                return opinion
            if opinion is not None and opinion.decision != resolved.decision:
                if not data.reason.strip():
                    raise DomainError("Say why you changed your opinion after seeing the AI.")
            read = _create_read(reader, case, kind, data, resolved)
            if opinion is not None:
                opinion.read, opinion.changed = read, opinion.decision != read.decision
                opinion.reason = data.reason.strip()
                opinion.save(update_fields=["read", "changed", "reason"])
            _advance(case, [*earlier, given(read)], case.note_read(read))
            ReadDraft.objects.filter(case=case, reader=reader).delete()
            events.read_recorded(reader, read)
    except Conflict as conflict:
        found = Case.objects.filter(pk=case_id).first()
        if found is not None:
            events.read_conflicted(reader, found, conflict.message)
        raise
    log.info("Read %s recorded on case %s by user %s", read.kind, case.pk, reader.pk)
    return read


def pending_opinion(reader: User, case: Case, kind: str) -> UnaidedOpinion | None:
    """The reader's committed opinion awaiting their final read of this kind, if any."""
    return UnaidedOpinion.objects.filter(
        case=case, reader=reader, kind=kind, read__isnull=True
    ).first()


def _revision_trigger(case: Case, decision: str) -> str:
    policy = case.policy
    return pathway.revision_trigger(
        policy.policy if policy else "",
        policy.ai_reveal if policy else AIReveal.CONCURRENT,
        ai := case_ai(case),
        ai is not None,
        decision,
    )


def _commit_opinion(
    reader: User, case: Case, kind: str, trigger: str, data: ReadInput, resolved: Resolved
) -> UnaidedOpinion:
    # As the read form names its fields, so the page can put the opinion back to confirm.
    fields: dict[str, object] = {
        "birads_right": data.birads_right,
        "birads_left": data.birads_left,
        "density": data.density,
        "reason": data.reason.strip(),
    }
    for f in data.findings:
        fields |= {f"finding_{f.breast}": f.finding, f"site_{f.breast}": f.site}
        fields[f"depth_{f.breast}"] = f.depth
    return UnaidedOpinion.objects.create(
        case=case,
        reader=reader,
        kind=kind,
        trigger=trigger,
        decision=resolved.decision,
        birads=resolved.birads,
        fields=fields,
        ai_result=case.ai_result,
        ai_recall=case.ai_recommends_recall,
    )


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
            Finding.objects.bulk_create(_finding(read, f) for f in data.findings)
            return read
    except IntegrityError:
        raise Conflict("Another reader recorded this read first; nothing was saved.") from None


def _finding(read: Read, entered: FindingInput) -> Finding:
    mark = entered.mark
    return Finding(
        read=read,
        breast=entered.breast,
        finding=entered.finding,
        site=entered.site,
        depth=entered.depth,
        image_id=mark.image if mark else None,
        mark_shape=mark.shape if mark else "",
        mark_points=[list(point) for point in mark.points] if mark else [],
    )


def _advance(case: Case, reads: list[pathway.GivenRead], noted: Sequence[str] = ()) -> None:
    """Move the case along the pathway; ``noted``: read columns already set on it.

    A case read before its route was taken (AI late or failed) is double-read from now on:
    the route is never taken after a read."""
    if case.route == CaseRoute.UNDECIDED:
        case.route = CaseRoute.DOUBLE
    after = pathway.after_read(reads, plan_of(case))
    case.status = after.status
    if after.status == CaseStatus.CLOSED:
        case.final_decision = after.final_decision
        case.closed_at = timezone.now()
        ReadDraft.objects.filter(case=case).delete()  # nobody can record them now
    case.save(update_fields=["status", "final_decision", "closed_at", "route", *noted])
    if after.status == CaseStatus.CLOSED:
        hooks.case_closed.send(sender=Case, case=case)  # final: interop sends it to the PACS


def save_draft(reader: User, case_id: int, fields: dict[str, str]) -> bool:
    """Keep (or, when empty, drop) this reader's read in progress; False, and nothing kept,
    where they may no longer read the case (read already given, case closed).

    No audit event: a draft records nothing, and nobody else ever sees it. The case row is
    locked as ``submit_read`` locks it, so a save still in flight when the read is recorded
    cannot leave a draft behind it.
    """
    with transaction.atomic():
        case = Case.objects.select_for_update(of=("self",)).filter(pk=case_id).first()
        if case is None:
            raise NotFound("No such case.")
        mine = ReadDraft.objects.filter(case=case, reader=reader)
        if not pathway.may_read(person(reader), case.status, given_reads(case)):
            mine.delete()
            return False
        if fields:
            ReadDraft.objects.update_or_create(
                case=case, reader=reader, defaults={"fields": fields}
            )
        else:
            mine.delete()
        return True


def set_open_next(reader: User, on: bool) -> None:
    """Whether the next case opens once this reader records a read. A reader's own
    convenience, changing nothing anyone else sees: no audit event."""
    ReaderSettings.objects.update_or_create(user=reader, defaults={"open_next_after_read": on})


def set_policy(
    actor: User,
    policy: str,
    single_read_normal: bool = False,
    ai_reveal: str = AIReveal.CONCURRENT,
    starts_at: dt.datetime | None = None,
) -> SitePolicy:
    """Start a new version of the site's reading policy for cases received from
    ``starts_at`` (now by default; never in the past, so no case changes policy).

    A policy that uses the AI is refused unless the active version is validated for
    triage: it would route or prompt reads on figures the site has not accepted.
    """
    if policy not in ReadingPolicy.values:
        raise DomainError("Choose one of the reading policies.")
    if ai_reveal not in AIReveal.values:
        raise DomainError("AI reveal must be concurrent or sequential.")
    now = timezone.now()
    starts_at = starts_at or now
    if starts_at < now - dt.timedelta(minutes=1):
        raise DomainError(
            "A policy applies to cases received after it: it cannot start in the past."
        )
    if pathway.policy_uses_ai(policy):
        active = ModelVersion.objects.filter(is_active=True).first()
        if active is None or not active.validated_for_triage:
            why = active.not_shown_reason if active is not None else "No version is active."
            raise DomainError(
                f"{ReadingPolicy(policy).label} uses the AI, and no active version is "
                f"validated for triage here. {why}"
            )
    with transaction.atomic():
        chosen = SitePolicy.objects.create(
            policy=policy,
            single_read_normal=single_read_normal and policy == ReadingPolicy.NORMAL_TRIAGE,
            ai_reveal=ai_reveal,
            set_by=actor,
            starts_at=starts_at,
        )
        events.policy_set(actor, chosen)
    return chosen


def set_hanging_protocol(reader: User, protocol: HangingProtocol) -> None:
    """The hanging protocol this reader's case pages open in, on every workstation. Their
    own convenience, as ``set_open_next``: no audit event."""
    ReaderSettings.objects.update_or_create(user=reader, defaults={"hanging_protocol": protocol})
