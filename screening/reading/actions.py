"""The reading verb: record a read and move the case along the pathway (``pathway.py``).

What happens when a second reader disagrees is decided there (``after_read``); this
module locks the case, checks the reader's role and writes the read and its audit event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import events
from ..choices import CaseStatus, Decision
from ..errors import Conflict, DomainError, NotFound
from ..interop import pacs_delivery
from ..models import Case, Finding, Read, ReadDraft, ReaderSettings
from ..roles import person
from . import pathway
from .assessment import Assessment, AssessmentError, FindingInput, Resolved, resolve
from .queries import given, given_reads

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
            _advance(case, [*earlier, given(read)], case.note_read(read))
            ReadDraft.objects.filter(case=case, reader=reader).delete()
            events.read_recorded(reader, read)
    except Conflict as conflict:
        case = Case.objects.filter(pk=case_id).first()
        if case is not None:
            events.read_conflicted(reader, case, conflict.message)
        raise
    log.info("Read %s recorded on case %s by user %s", read.kind, case.pk, reader.pk)
    return read


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
        ReadDraft.objects.filter(case=case).delete()  # nobody can record them now
    case.save(update_fields=["status", "final_decision", "closed_at", *noted])
    if after.status == CaseStatus.CLOSED:
        pacs_delivery.queue_case(case)  # its results are final: back into the PACS


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
