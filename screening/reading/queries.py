"""What a reader is given: the worklist and its pages, the next case, the reads a user may
see (the pathway's blind-reading rule), who could arbitrate, and a woman's priors."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Exists, Min, OuterRef, Q, QuerySet

from .. import pathway
from ..choices import RANKING_BANDS, AIReveal, CaseRoute, CaseStatus, IdentityMode, ReadKind
from ..models import (
    Case,
    Image,
    ModelVersion,
    Read,
    ReadDraft,
    ReaderSettings,
    SitePolicy,
    Study,
    UnaidedOpinion,
)
from ..roles import holders, person
from . import worklist_pages
from .assessment import Film


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
        .select_related("patient", "ai_result__model_version", "policy")
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


def band_filter_off() -> str:
    """Why the worklist's risk filter is off, in plain words ("" when it is on): the active
    version is not validated for triage, so none of its bands may triage the worklist."""
    active = ModelVersion.objects.filter(is_active=True).only("pk", "evidence").first()
    return active.not_shown_reason if active is not None else ""


def _filter_band(cases: QuerySet[Case], band: str) -> QuerySet[Case]:
    """Cases in the band; a ranking band is ignored while ``band_filter_off`` (a case scored
    by an unvalidated version is stored in no ranking band in any case)."""
    if not band or (band in RANKING_BANDS and band_filter_off()):
        return cases
    return cases.filter(risk_band=band)


def next_case(user: User, after: Case | None = None) -> Case | None:
    cases = worklist(user)
    if after is not None:
        cases = cases.exclude(pk=after.pk)
    return cases.first()


def visible_reads(user: User, case: Case) -> list[Read]:
    """The case's reads this user may see (the pathway's blind-reading rule), oldest first."""
    reads = list(
        case.reads.select_related("reader").prefetch_related("findings").order_by("created_at")
    )
    shown = pathway.visible_reads(person(user), case.status, [given(r) for r in reads])
    shown_readers = {(read.kind, read.reader_id) for read in shown}
    return [read for read in reads if (read.kind, read.reader_id) in shown_readers]


def films(case_id: int) -> dict[int, Film]:
    """The case's own films by id: the only ones its readers may mark a finding on."""
    rows = Image.objects.filter(study__case_id=case_id).values_list(
        "pk", "laterality", "width", "height"
    )
    return {pk: Film(side, width, height) for pk, side, width, height in rows}


def film_marks(reads: Iterable[Read]) -> list[dict[str, object]]:
    """The findings marked on films in ``reads``, as the case page's viewer draws them.

    Pass only the reads the user may see (``visible_reads``): this adds no rule of its own,
    so a blind second reader, given no other read, is sent no other reader's marks.
    """
    return [
        {
            "image": finding.image_id,
            "shape": finding.mark_shape,
            "points": finding.mark_points,
            "read": read.kind,
            "label": f"{read.get_kind_display()} ({read.reader}): {finding}",
        }
        for read in reads
        for finding in read.findings.all()
        if finding.image_id is not None
    ]


def eligible_arbitrators(case: Case) -> int:
    """How many users could arbitrate this case: readers by role who gave neither read."""
    users = holders(*pathway.ROLES_FOR_KIND[ReadKind.ARBITRATION])
    return users.exclude(reads__case=case).distinct().count()


def given_reads(case: Case) -> list[pathway.GivenRead]:
    """The case's reads as the pathway sees them, oldest first."""
    rows = case.reads.order_by("created_at", "pk").values_list("kind", "reader_id", "decision")
    return [pathway.GivenRead(kind, reader_id, decision) for kind, reader_id, decision in rows]


def given(read: Read) -> pathway.GivenRead:
    return pathway.GivenRead(read.kind, read.reader_id, read.decision)


def priors(case: Case) -> list[Case]:
    """The same woman's earlier screens (same patient pseudonym), newest first."""
    dated = Case.objects.annotate(first_study=Min("studies__study_date"))
    own = dated.get(pk=case.pk).first_study
    earlier = dated.filter(patient_id=case.patient_id).exclude(pk=case.pk)
    if own is not None:
        earlier = earlier.filter(first_study__lt=own)
    return list(earlier.select_related("patient").order_by("-first_study", "-pk"))


def prior_studies(case: Case) -> list[Study]:
    """The woman's prior studies (history: no case, never read or scored) dated before
    this screen, newest first, to hang beside it."""
    own = Study.objects.filter(case=case).aggregate(first=Min("study_date"))["first"]
    earlier = Study.objects.filter(prior_of_id=case.patient_id)
    if own is not None:
        earlier = earlier.filter(study_date__lt=own)
    return list(earlier.prefetch_related("images").order_by("-study_date", "-pk"))


@dataclass(frozen=True)
class Identity:
    """Who a study's films are of, as its header said (clinical mode)."""

    name: str
    patient_id: str
    age: int | None


def identities(studies: Iterable[Study]) -> list[Identity]:
    """The women a case's studies are of, for the readers' wrong-patient check: from the
    studies ingested in clinical mode only, so a study stored de-identified stays so after
    the site switches to clinical. One entry per distinct identity: two mean the case's
    films name different women."""
    seen: list[Identity] = []
    for study in studies:
        if study.identity_mode != IdentityMode.CLINICAL:
            continue
        who = Identity(study.patient_name, study.patient_id, study.patient_age)
        if who not in seen:
            seen.append(who)
    return seen


def draft(reader: User, case: Case) -> ReadDraft | None:
    """This reader's own read in progress on this case: never anyone else's."""
    return ReadDraft.objects.filter(case=case, reader=reader).first()


def reader_settings(user: User) -> ReaderSettings:
    """The reader's reading-room settings; the defaults (unsaved) until they change one."""
    return ReaderSettings.objects.filter(user=user).first() or ReaderSettings(user=user)


def plan_of(case: Case) -> pathway.Plan:
    """The case's route as the pathway reads it (undecided: double reading)."""
    return pathway.Plan(case.route or CaseRoute.DOUBLE, case.ai_decision)


def policies() -> list[SitePolicy]:
    """Every version of the site's reading policy, the latest start first."""
    return list(SitePolicy.objects.select_related("set_by"))


def policy_in_force() -> SitePolicy | None:
    return SitePolicy.in_force()


def ai_hidden_from(user: User, case: Case) -> bool:
    """Sequential reveal: whether this user is shown none of the case's AI yet (they may
    read it now and have not committed their unaided opinion)."""
    reveal = case.policy.ai_reveal if case.policy else AIReveal.CONCURRENT
    if reveal != AIReveal.SEQUENTIAL:
        return False
    kind = pathway.expected_kind(case.status) or ""
    may = pathway.may_read(person(user), case.status, given_reads(case))
    committed = bool(kind) and opinion_of(user, case, kind) is not None
    return pathway.ai_hidden(reveal, may, committed)


def reveals_later(case: Case) -> bool:
    """The case arrived under sequential reveal: lists (the worklist, its API) show none of
    its AI, whoever looks; the case page and case API show it once the reader's opinion is in."""
    return case.policy is not None and case.policy.ai_reveal == AIReveal.SEQUENTIAL


def opinion_of(user: User, case: Case, kind: str) -> UnaidedOpinion | None:
    """This reader's own unaided opinion for the read they give now (never another's)."""
    return UnaidedOpinion.objects.filter(case=case, reader=user, kind=kind).first()
