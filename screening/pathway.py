"""The reading pathway: the one home of the double-reading rules.

Who may read a case next and in which role (first, second, arbitration), what each person
may see of earlier reads, and which reads close a case. The verbs, the pages, the API, the
exports and the templates ask this module; none decides on its own. Everything here is pure
(no database), so the rules are tested as a state machine over random read sequences.

The rules (independent double reading with arbitration, as the NHS Breast Screening
Programme runs it):
- two radiologists read each case independently; nobody gives two reads of one case;
- agreeing first and second reads close the case with their decision;
- disagreeing reads go to arbitration by someone who gave neither read: a radiologist, or a
  user granted the arbitrator role where a site has only two readers; the arbitration read
  closes the case;
- blind: until the case closes a reader sees only their own read; the arbitrator sees both
  reads they arbitrate; auditors see everything, read-only; admins see no reads.

Site reading policies (``ReadingPolicy``, one version in force per arrival, kept on the case)
change how many human reads a case needs, never who may see what:
- standard and safety net: double reading as above;
- routing by AI (MASAI): high band double-read, the others single-read;
- normal triage (PRAIM): the validated low band is tagged "AI: normal" and, where the site
  chose it, single-read;
- AI as second reader: the AI's decision stands as the second read; the first reader and
  the AI disagreeing go to arbitration.
The route is decided once (``route``), when the AI result arrives and before any read; a
case whose first read is recorded before that (AI late, failed, or from a version not
active for triage) is double-read. A policy's AI is trusted only from the active version
validated for triage: anything else routes as standard.
Safety net and sequential reveal (``revision_trigger``): the reader commits an opinion,
is shown the AI, and gives their final read once; both are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus

from .choices import (
    AIReveal,
    CaseRoute,
    CaseStatus,
    Decision,
    ReadingPolicy,
    ReadKind,
    RevisionTrigger,
    RiskBand,
    Role,
)
from .roles import Person

# The read each open status waits for.
KIND_FOR_STATUS = {
    CaseStatus.AWAITING_AI: ReadKind.FIRST,
    CaseStatus.READY: ReadKind.FIRST,
    CaseStatus.FIRST_READ_DONE: ReadKind.SECOND,
    CaseStatus.ARBITRATION: ReadKind.ARBITRATION,
}

# Open statuses in which the case already has reads (earlier statuses have none).
STATUSES_WITH_READS = (CaseStatus.FIRST_READ_DONE, CaseStatus.ARBITRATION)

# Roles that may give each kind of read.
ROLES_FOR_KIND = {
    ReadKind.FIRST: frozenset({Role.RADIOLOGIST}),
    ReadKind.SECOND: frozenset({Role.RADIOLOGIST}),
    ReadKind.ARBITRATION: frozenset({Role.RADIOLOGIST, Role.ARBITRATOR}),
}

# Roles that read cases (and so see them through the reading rules, not as auditors).
READER_ROLES = frozenset({Role.RADIOLOGIST, Role.ARBITRATOR})


@dataclass(frozen=True)
class GivenRead:
    """What the pathway needs to know of a read already recorded."""

    kind: str
    reader_id: int
    decision: str


class ReadNotAllowed(Exception):
    """This person may not give this read now; ``message`` says why, for the reader.

    ``status``: 409 when the case's state forbids it (it moved on, or this person already
    read it), 403 when their role never allows it, 400 when the request did not say which
    read it gives.
    """

    def __init__(self, message: str, status: int = HTTPStatus.CONFLICT):
        super().__init__(message)
        self.message = message
        self.status = status


def expected_kind(status: str) -> str | None:
    """The read an open case waits for; None once closed."""
    return KIND_FOR_STATUS.get(CaseStatus(status))


def kind_for_expected_status(status: str) -> str | None:
    """The read a client means when it sends the status it saw (today's API payload)."""
    return expected_kind(status) if status else None


def statuses_read_by(person: Person) -> list[str]:
    """The open statuses whose next read ``person``'s roles may give, in pathway order."""
    return [
        status for status, kind in KIND_FOR_STATUS.items() if person.roles & ROLES_FOR_KIND[kind]
    ]


def has_read(person: Person, reads: Iterable[GivenRead]) -> bool:
    return any(read.reader_id == person.id for read in reads)


def read_role(person: Person, status: str, reads: Sequence[GivenRead], stated_kind: str) -> str:
    """The kind of read ``person`` gives now, or ReadNotAllowed saying why not.

    ``stated_kind`` is the read the reader says they are giving: a read whose role no
    longer holds (someone else gave it first) is refused, never silently turned into
    another kind.
    """
    if not stated_kind:
        raise ReadNotAllowed(
            "State which read you are giving (kind: first, second or arbitration).",
            HTTPStatus.BAD_REQUEST,
        )
    if stated_kind not in ReadKind.values:
        raise ReadNotAllowed("kind must be first, second or arbitration.", HTTPStatus.BAD_REQUEST)
    kind = expected_kind(status)
    if kind is None:
        raise ReadNotAllowed("This case is closed; no further reads are taken.")
    own = [read for read in reads if read.reader_id == person.id]
    if own:
        raise ReadNotAllowed(
            f"You gave the {ReadKind(own[0].kind).label.lower()} of this case; "
            + (
                "arbitration must be by someone who gave neither read."
                if kind == ReadKind.ARBITRATION
                else "the second read must be independent."
            )
        )
    if stated_kind != kind:
        raise ReadNotAllowed(
            f"This case now waits for the {ReadKind(kind).label.lower()}, not the "
            f"{ReadKind(stated_kind).label.lower()} you opened it for: another reader got "
            "there first. "
            "Nothing was saved; reopen the case to see where it stands."
        )
    if not person.roles & ROLES_FOR_KIND[ReadKind(kind)]:
        raise ReadNotAllowed(
            f"Your role does not give the {ReadKind(kind).label.lower()}.", HTTPStatus.FORBIDDEN
        )
    return kind


def may_read(person: Person, status: str, reads: Sequence[GivenRead]) -> bool:
    kind = expected_kind(status)
    if kind is None:
        return False
    try:
        read_role(person, status, reads, kind)
    except ReadNotAllowed:
        return False
    return True


@dataclass(frozen=True)
class Plan:
    """What a case's policy decided for it: its route and, for AI as second reader, the AI's
    decision standing as the second read. Undecided reads as double reading."""

    route: str = CaseRoute.DOUBLE
    ai_decision: str = ""


@dataclass(frozen=True)
class CaseAI:
    """What routing may know of a case's AI when its result arrives.

    ``usable``: from the active version, validated for triage (no other version's band or
    decision routes a case); ``band``: the case's risk band; ``recall``: the AI's decision;
    ``validated_bands``: the band cuts come from the version's validation figures.
    """

    usable: bool
    band: str = ""
    recall: bool | None = None
    validated_bands: bool = False


@dataclass(frozen=True)
class Routed:
    route: str
    ai_normal: bool = False
    ai_decision: str = ""


def policy_uses_ai(policy: str) -> bool:
    return policy not in ("", ReadingPolicy.STANDARD)


def route(policy: str, single_read_normal: bool, ai: CaseAI | None) -> Routed:
    """The route a case takes under ``policy`` given its AI (None: no AI result yet).

    Whenever the AI cannot be trusted for this (none, failed, not usable, no band), the
    case is double-read: a policy only ever removes a read on the AI's validated word.
    """
    double = Routed(CaseRoute.DOUBLE)
    if not policy_uses_ai(policy) or ai is None or not ai.usable:
        return double
    if policy == ReadingPolicy.ROUTING and ai.band in (RiskBand.INTERMEDIATE, RiskBand.LOW):
        return Routed(CaseRoute.SINGLE)
    if policy == ReadingPolicy.NORMAL_TRIAGE and ai.band == RiskBand.LOW and ai.validated_bands:
        return Routed(CaseRoute.SINGLE if single_read_normal else CaseRoute.DOUBLE, True)
    if policy == ReadingPolicy.AI_SECOND_READER and ai.recall is not None:
        decision = Decision.RECALL if ai.recall else Decision.NO_RECALL
        return Routed(CaseRoute.AI_SECOND, ai_decision=decision)
    return double


def revision_trigger(
    policy: str, reveal: str, ai: CaseAI | None, ai_shown: bool, decision: str
) -> str:
    """Why this read is held as an unaided opinion and the AI shown before the final read
    ("" for none): the safety net for a no-recall on an exam the usable AI puts in its high
    band; sequential reveal whenever the case has an AI result to show."""
    if (
        policy == ReadingPolicy.SAFETY_NET
        and ai is not None
        and ai.usable
        and ai.band == RiskBand.HIGH
        and decision == Decision.NO_RECALL
    ):
        return RevisionTrigger.SAFETY_NET
    if reveal == AIReveal.SEQUENTIAL and ai_shown:
        return RevisionTrigger.SEQUENTIAL
    return ""


REVISION_PROMPTS = {
    RevisionTrigger.SAFETY_NET: (
        "Safety net: the AI scores this exam in its high band, and you recorded no recall. "
        "Look at the AI's regions, then confirm your read or change it, once, with a reason."
    ),
    RevisionTrigger.SEQUENTIAL: (
        "Your unaided opinion is committed. The AI is now shown: confirm your read, or "
        "change it once, with a reason."
    ),
}


def revision_prompt(trigger: str) -> str:
    """What the reader is asked once their opinion is held."""
    return REVISION_PROMPTS[RevisionTrigger(trigger)]


def ai_hidden(reveal: str, may_read_now: bool, committed: bool) -> bool:
    """Sequential reveal: a reader who may read the case now sees none of its AI until
    they have committed their unaided opinion."""
    return reveal == AIReveal.SEQUENTIAL and may_read_now and not committed


@dataclass(frozen=True)
class Next:
    """Where a case goes after a read: its new status and, once closed, the final decision."""

    status: str
    final_decision: str = ""


def after_read(reads: Sequence[GivenRead], plan: Plan = Plan()) -> Next:
    """The case's state once ``reads`` (in order, the newest last) are recorded."""
    by_kind = {read.kind: read for read in reads}
    if ReadKind.ARBITRATION in by_kind:
        return Next(CaseStatus.CLOSED, by_kind[ReadKind.ARBITRATION].decision)
    if ReadKind.FIRST in by_kind and plan.route == CaseRoute.SINGLE:
        return Next(CaseStatus.CLOSED, by_kind[ReadKind.FIRST].decision)
    if ReadKind.FIRST in by_kind and plan.route == CaseRoute.AI_SECOND:
        decision = by_kind[ReadKind.FIRST].decision
        if decision == plan.ai_decision:
            return Next(CaseStatus.CLOSED, decision)
        return Next(CaseStatus.ARBITRATION)
    if ReadKind.SECOND in by_kind:
        first, second = by_kind[ReadKind.FIRST], by_kind[ReadKind.SECOND]
        if first.decision == second.decision:
            return Next(CaseStatus.CLOSED, second.decision)
        return Next(CaseStatus.ARBITRATION)
    if ReadKind.FIRST in by_kind:
        return Next(CaseStatus.FIRST_READ_DONE)
    raise ValueError("after_read needs at least one read")


def final_decision(status: str, reads: Sequence[GivenRead], plan: Plan = Plan()) -> str:
    """The decision that closed the case ('' while open)."""
    if status != CaseStatus.CLOSED or not reads:
        return ""
    return after_read(reads, plan).final_decision


def closing_kind(reads: Sequence[GivenRead], plan: Plan = Plan()) -> str:
    """The kind of the read whose decision closed the case ('' while open): the
    arbitration, else the second read that agreed with the first (``after_read``), else,
    single-read or agreeing with the AI as second reader, the first."""
    if after_read(reads, plan).status != CaseStatus.CLOSED:
        return ""
    kinds = {read.kind for read in reads}
    if ReadKind.ARBITRATION in kinds:
        return ReadKind.ARBITRATION
    return ReadKind.SECOND if ReadKind.SECOND in kinds else ReadKind.FIRST


def may_take_report(person: Person, status: str, reads: Sequence[GivenRead]) -> bool:
    """Whether ``person`` may take the case's final report (every read, named).

    Only once the case is closed, so no open read is ever exposed and blind reading holds;
    then the people who gave one of its reads (first, second, arbitration) and auditors.
    A reader who took no part in the case has no reason to carry its report away.
    """
    if status != CaseStatus.CLOSED:
        return False
    return Role.AUDITOR in person.roles or has_read(person, reads)


def visible_reads(person: Person, status: str, reads: Sequence[GivenRead]) -> list[GivenRead]:
    """The reads ``person`` may see: the blind-reading rule for every page and endpoint.

    A reader is blind whatever other role they also hold: a radiologist who is also an
    auditor sees no other read until the case closes, so they could still read it.
    """
    if not person.roles & READER_ROLES:
        return list(reads) if Role.AUDITOR in person.roles else []
    if status == CaseStatus.CLOSED:
        return list(reads)
    if status == CaseStatus.ARBITRATION and may_read(person, status, reads):
        return list(reads)  # the arbitrator weighs both opinions
    return [read for read in reads if read.reader_id == person.id]


def waiting_for_arbitration_note(eligible_arbitrators: int) -> str:
    """What a reader who cannot arbitrate is told while a case waits for arbitration."""
    if eligible_arbitrators:
        return (
            "The first and second reads disagree. Arbitration is by a reader who gave "
            f"neither read ({eligible_arbitrators} can); you read this case, so you cannot."
        )
    return (
        "The first and second reads disagree, and nobody here gave neither read: this site "
        "has no third reader. An admin can grant the arbitrator role to a qualified "
        "colleague; until then the case stays open. Neither reader may overrule the other."
    )
