"""Property-based tests of the reading pathway (screening/pathway.py).

Pure level: random sequences of read attempts by a pool of people (radiologists, an
arbitrator-only user, an auditor, an admin), each stating some kind of read, are applied
to a model case whenever ``read_role`` allows them; the double-reading rules must hold
after every step.

Database level: the same kind of random attempts go through the real read verb and the
real read endpoint, and after every read each user of the pool opens the case through the
API and the case page: nobody ever sees a read the blind-reading rule hides from them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http import HTTPStatus

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from rest_framework.test import APIClient

from screening import pathway
from screening.choices import (
    AIReveal,
    CaseRoute,
    CaseStatus,
    Decision,
    ReadingPolicy,
    ReadKind,
    RevisionTrigger,
    Role,
)
from screening.errors import DomainError
from screening.models import Case, ModelVersion, Read, UnaidedOpinion
from screening.pathway import GivenRead, ReadNotAllowed
from screening.reading import actions as reading_actions
from screening.reading.actions import ReadInput
from screening.reading.assessment import FindingInput, Mark
from screening.reading.queries import plan_of
from screening.roles import Person
from tests.factories import ModelVersionFactory, UserFactory, case_with_images
from tests.screening.reading.test_policies import arrive

KINDS = [ReadKind.FIRST, ReadKind.SECOND, ReadKind.ARBITRATION]
OPEN_AT_START = [CaseStatus.AWAITING_AI, CaseStatus.READY]

# --- Pure level ---------------------------------------------------------------------

RADIOLOGISTS = [Person(id=i, roles=frozenset({Role.RADIOLOGIST})) for i in (1, 2, 3, 4)]
ARBITRATOR = Person(id=5, roles=frozenset({Role.ARBITRATOR}))
AUDITOR = Person(id=6, roles=frozenset({Role.AUDITOR}))
ADMIN = Person(id=7, roles=frozenset({Role.ADMIN}))
POOL = [*RADIOLOGISTS, ARBITRATOR, AUDITOR, ADMIN]
BY_ID = {p.id: p for p in POOL}

PURE = settings(
    max_examples=300,
    stateful_step_count=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class ReadingPathway(RuleBasedStateMachine):
    """A case as the pathway sees it: its status and the reads recorded, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.status: str = CaseStatus.READY
        self.reads: list[GivenRead] = []

    @initialize(status=st.sampled_from(OPEN_AT_START))
    def receive(self, status: str) -> None:
        self.status = status

    @rule(
        who=st.sampled_from(POOL),
        # The kind the case waits for (when open) about half the time, else any kind.
        stated=st.one_of(st.just("expected"), st.sampled_from(KINDS)),
        recall=st.booleans(),
    )
    def attempt(self, who: Person, stated: str, recall: bool) -> None:
        if stated == "expected":
            stated = pathway.expected_kind(self.status) or ReadKind.FIRST
        try:
            kind = pathway.read_role(who, self.status, self.reads, stated)
        except ReadNotAllowed as refusal:
            assert refusal.status in (HTTPStatus.CONFLICT, HTTPStatus.FORBIDDEN)
            assert not pathway.may_read(who, self.status, self.reads) or (
                stated != pathway.expected_kind(self.status)
            )
            return
        assert kind == stated, "a read is never silently turned into another kind"
        assert pathway.may_read(who, self.status, self.reads)
        decision = Decision.RECALL if recall else Decision.NO_RECALL
        self.reads.append(GivenRead(kind, who.id, decision))
        self.status = pathway.after_read(self.reads).status

    # Helpers for the invariants.
    def read_of(self, kind: str) -> GivenRead | None:
        return next((read for read in self.reads if read.kind == kind), None)


def holds_under_random_reading(check: Callable[[ReadingPathway], None]) -> None:
    """Run random read sequences, checking ``check`` after every step."""
    reached: set[tuple[str, int]] = set()

    class Machine(ReadingPathway):
        @invariant()
        def rule_holds(self) -> None:
            reached.add((self.status, len(self.reads)))
            check(self)

    run_state_machine_as_test(Machine, settings=PURE)
    # Not vacuous: the random reading reached every state, both ways of closing included.
    assert {
        (CaseStatus.READY, 0),
        (CaseStatus.FIRST_READ_DONE, 1),
        (CaseStatus.ARBITRATION, 2),
        (CaseStatus.CLOSED, 2),
        (CaseStatus.CLOSED, 3),
    } <= reached


def test_nobody_ever_reads_a_case_twice() -> None:
    def check(case: ReadingPathway) -> None:
        readers = [read.reader_id for read in case.reads]
        assert len(readers) == len(set(readers)), case.reads

    holds_under_random_reading(check)


def test_each_kind_of_read_is_given_at_most_once_and_in_pathway_order() -> None:
    def check(case: ReadingPathway) -> None:
        assert [read.kind for read in case.reads] == KINDS[: len(case.reads)], case.reads

    holds_under_random_reading(check)


def test_arbitration_is_never_by_the_first_or_second_reader() -> None:
    def check(case: ReadingPathway) -> None:
        arbitration = case.read_of(ReadKind.ARBITRATION)
        if arbitration is not None:
            double = {case.read_of(k).reader_id for k in (ReadKind.FIRST, ReadKind.SECOND)}  # type: ignore[union-attr]
            assert arbitration.reader_id not in double, case.reads

    holds_under_random_reading(check)


def test_first_and_second_reads_are_only_by_radiologists() -> None:
    def check(case: ReadingPathway) -> None:
        for read in case.reads:
            roles = BY_ID[read.reader_id].roles
            if read.kind in (ReadKind.FIRST, ReadKind.SECOND):
                assert Role.RADIOLOGIST in roles, read
            else:
                assert roles & {Role.RADIOLOGIST, Role.ARBITRATOR}, read

    holds_under_random_reading(check)


def test_only_the_read_the_case_waits_for_is_taken_and_none_once_closed() -> None:
    def check(case: ReadingPathway) -> None:
        expected = pathway.expected_kind(case.status)
        assert (expected is None) == (case.status == CaseStatus.CLOSED)
        for who in POOL:
            for stated in KINDS:
                if stated == expected:
                    continue
                with pytest.raises(ReadNotAllowed) as refused:
                    pathway.read_role(who, case.status, case.reads, stated)
                assert refused.value.status == HTTPStatus.CONFLICT
            with pytest.raises(ReadNotAllowed) as unstated:
                pathway.read_role(who, case.status, case.reads, "")
            assert unstated.value.status == HTTPStatus.BAD_REQUEST
            if expected is None:
                assert not pathway.may_read(who, case.status, case.reads)

    holds_under_random_reading(check)


def test_a_closed_case_has_the_deciding_final_decision_and_an_open_one_none() -> None:
    def check(case: ReadingPathway) -> None:
        final = pathway.final_decision(case.status, case.reads)
        first, second = case.read_of(ReadKind.FIRST), case.read_of(ReadKind.SECOND)
        arbitration = case.read_of(ReadKind.ARBITRATION)
        if case.status != CaseStatus.CLOSED:
            assert final == ""
            if case.status == CaseStatus.ARBITRATION:
                assert first and second and first.decision != second.decision
            return
        assert final in Decision.values
        if arbitration is not None:
            assert final == arbitration.decision
        else:
            assert first and second and first.decision == second.decision
            assert final == first.decision
        assert pathway.after_read(case.reads) == pathway.Next(CaseStatus.CLOSED, final)

    holds_under_random_reading(check)


def test_the_second_reader_never_sees_the_first_read() -> None:
    def check(case: ReadingPathway) -> None:
        if case.status != CaseStatus.FIRST_READ_DONE:
            return
        first = case.read_of(ReadKind.FIRST)
        for who in POOL:
            seen = pathway.visible_reads(who, case.status, case.reads)
            if pathway.may_read(who, case.status, case.reads):
                assert first not in seen, (who, seen)
            if who.id != first.reader_id and Role.AUDITOR not in who.roles:  # type: ignore[union-attr]
                assert seen == [], (who, seen)

    holds_under_random_reading(check)


def test_during_arbitration_readers_see_their_own_read_and_the_arbitrator_both() -> None:
    def check(case: ReadingPathway) -> None:
        if case.status != CaseStatus.ARBITRATION:
            return
        double = case.reads[:2]
        for who in POOL:
            seen = pathway.visible_reads(who, case.status, case.reads)
            own = [read for read in double if read.reader_id == who.id]
            if own:
                assert seen == own, (who, seen)
            elif pathway.may_read(who, case.status, case.reads):
                assert seen == double, (who, seen)

    holds_under_random_reading(check)


def test_auditors_see_every_read_and_admins_none() -> None:
    def check(case: ReadingPathway) -> None:
        assert pathway.visible_reads(AUDITOR, case.status, case.reads) == case.reads
        assert pathway.visible_reads(ADMIN, case.status, case.reads) == []

    holds_under_random_reading(check)


def test_until_a_case_closes_a_reader_sees_another_read_only_as_its_arbitrator() -> None:
    def check(case: ReadingPathway) -> None:
        for who in POOL:
            seen = pathway.visible_reads(who, case.status, case.reads)
            assert all(read in case.reads for read in seen)
            if Role.AUDITOR in who.roles:
                continue
            others = [read for read in seen if read.reader_id != who.id]
            if case.status == CaseStatus.CLOSED:
                if who.roles & pathway.READER_ROLES:
                    assert seen == case.reads
            elif others:
                assert case.status == CaseStatus.ARBITRATION
                assert pathway.may_read(who, case.status, case.reads)

    holds_under_random_reading(check)


def test_the_final_report_leaves_only_once_closed_to_its_readers_and_auditors() -> None:
    def check(case: ReadingPathway) -> None:
        readers = {read.reader_id for read in case.reads}
        for who in POOL:
            takes = pathway.may_take_report(who, case.status, case.reads)
            if case.status != CaseStatus.CLOSED:
                assert not takes, (who, case.reads)
            else:
                assert takes == (who.id in readers or Role.AUDITOR in who.roles), who

    holds_under_random_reading(check)


def test_the_closing_read_is_the_one_whose_decision_is_final() -> None:
    def check(case: ReadingPathway) -> None:
        kind = pathway.closing_kind(case.reads) if case.reads else ""
        if case.status != CaseStatus.CLOSED:
            assert kind == ""
            return
        closing = case.read_of(kind)
        assert closing is not None
        assert closing.decision == pathway.final_decision(case.status, case.reads)
        assert kind == (ReadKind.ARBITRATION if len(case.reads) == 3 else ReadKind.SECOND)

    holds_under_random_reading(check)


def test_an_open_case_can_always_be_read_by_someone_whose_statuses_include_it() -> None:
    def check(case: ReadingPathway) -> None:
        able = [who for who in POOL if pathway.may_read(who, case.status, case.reads)]
        for who in able:
            assert case.status in pathway.statuses_read_by(who)
            assert (
                pathway.read_role(who, case.status, case.reads, pathway.expected_kind(case.status))  # type: ignore[arg-type]
                == pathway.expected_kind(case.status)
            )
        # With four radiologists and an arbitrator there is always a next reader.
        assert bool(able) == (case.status != CaseStatus.CLOSED), case.reads

    holds_under_random_reading(check)


# --- Database level: the real verb, the real endpoints ------------------------------

# Distinctive usernames: none is a substring of another, nor of anything a page prints.
USERS = [
    ("reader_alpha", Role.RADIOLOGIST),
    ("reader_bravo", Role.RADIOLOGIST),
    ("reader_charlie", Role.RADIOLOGIST),
    ("reader_delta", Role.RADIOLOGIST),
    ("arbiter_echo", Role.ARBITRATOR),
    ("auditor_foxtrot", Role.AUDITOR),
    ("admin_golf", Role.ADMIN),
]

DB = settings(
    max_examples=30,
    stateful_step_count=7,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Member:
    user: User
    person: Person

    @property
    def username(self) -> str:
        return self.user.username


def reason_of(username: str) -> str:
    """Each reader's note is distinctive, so a page showing it gives the read away."""
    return f"Opinion recorded by {username}"


def mark_of(username: str) -> tuple[float, float]:
    """Each reader marks their finding at their own point of the film, so a page or answer
    carrying that point gives their mark away."""
    return (1.25 + [name for name, _ in USERS].index(username), 7.5)


def structured(recall: bool, kind: str, username: str, image_id: int = 0) -> ReadInput:
    if recall:
        mark = Mark(image_id, "point", (mark_of(username),)) if image_id else None
        mass = FindingInput(breast="R", finding="mass", site="10", depth="middle", mark=mark)
        return ReadInput(
            kind=kind, birads_right=4, birads_left=1, density="b", findings=(mass,),
            reason=reason_of(username),
        )  # fmt: skip
    return ReadInput(
        kind=kind, birads_right=1, birads_left=1, density="b", reason=reason_of(username)
    )


def api_payload(recall: bool, kind: str, username: str, image_id: int = 0) -> dict:
    data = structured(recall, kind, username, image_id)
    return {
        "kind": data.kind,
        "birads_right": data.birads_right,
        "birads_left": data.birads_left,
        "density": data.density,
        "findings": [asdict(f) for f in data.findings],
        "reason": data.reason,
    }


@pytest.fixture
def pool(db) -> list[Member]:
    return [
        Member(user, Person(user.pk, frozenset({role})))
        for name, role in USERS
        for user in [UserFactory(username=name, role=role)]
    ]


def blind_rule(viewer: Person, status: str, reads: list[GivenRead]) -> list[GivenRead]:
    """The blind-reading rule, spelled out here independently of the pathway's code."""
    if Role.AUDITOR in viewer.roles:
        return list(reads)
    if not viewer.roles & {Role.RADIOLOGIST, Role.ARBITRATOR}:
        return []
    if status == CaseStatus.CLOSED:
        return list(reads)
    gave_one = any(read.reader_id == viewer.id for read in reads)
    if status == CaseStatus.ARBITRATION and not gave_one:
        return list(reads)
    return [read for read in reads if read.reader_id == viewer.id]


def blind_reading_machine(
    pool: list[Member], reached: set[str], version: ModelVersion | None = None
) -> type[RuleBasedStateMachine]:
    """``version``: cases arrive scored by it through the worker's routing step, under the
    site policy already set (else as before: scored or not, no policy)."""
    members = pool
    by_id = {m.person.id: m for m in members}

    class BlindReading(RuleBasedStateMachine):
        """One real case read by random members; the model is the pure pathway."""

        def __init__(self) -> None:
            super().__init__()
            self.case: Case | None = None
            self.film = 0
            self.reads: list[GivenRead] = []
            self.status: str = CaseStatus.READY
            self.plan = pathway.Plan()

        @initialize(scored=st.booleans(), score=st.sampled_from([0.1, 0.3, 0.9]))
        def receive_a_case(self, scored: bool, score: float) -> None:
            if version is not None:
                self.case = arrive(version, score if scored else None)
            elif scored:
                self.case = case_with_images(images=1, score=0.7)
            else:
                self.case = case_with_images(images=1, status=CaseStatus.AWAITING_AI)
            self.status = self.case.status
            self.plan = plan_of(self.case)
            self.film = self.case.studies.get().images.get().pk
            self.reads = []
            self.check_everyone_sees_only_what_the_pathway_shows()

        @rule(
            who=st.sampled_from(members),
            stated=st.one_of(st.just("expected"), st.sampled_from(KINDS)),
            recall=st.booleans(),
            through_api=st.booleans(),
        )
        def attempt_a_read(self, who: Member, stated: str, recall: bool, through_api: bool) -> None:
            assert self.case is not None
            if stated == "expected":
                stated = pathway.expected_kind(self.status) or ReadKind.FIRST
            try:
                pathway.read_role(who.person, self.status, self.reads, stated)
                refusal = None
            except ReadNotAllowed as refused:
                refusal = refused.status
            if through_api:
                api = APIClient()
                api.force_authenticate(who.user)
                payload = api_payload(recall, stated, who.username, self.film)
                response = api.post(f"/api/cases/{self.case.pk}/reads/", payload, format="json")
                if response.status_code == HTTPStatus.ACCEPTED:  # held: the AI shown, confirm
                    self.check_everyone_sees_only_what_the_pathway_shows()
                    response = api.post(f"/api/cases/{self.case.pk}/reads/", payload, format="json")
                got = response.status_code
                if refusal is None:
                    assert got == HTTPStatus.CREATED, response.content
                elif not who.person.roles & pathway.READER_ROLES:
                    assert got == HTTPStatus.FORBIDDEN, response.content
                else:
                    assert got == refusal, response.content
            else:
                try:
                    given = structured(recall, stated, who.username, self.film)
                    held = reading_actions.submit_read(who.user, self.case.pk, given)
                    if isinstance(held, UnaidedOpinion):  # held: the AI shown, confirm
                        self.check_everyone_sees_only_what_the_pathway_shows()
                        reading_actions.submit_read(who.user, self.case.pk, given)
                    got = HTTPStatus.CREATED
                except DomainError as error:
                    got = error.status
                assert got == (refusal or HTTPStatus.CREATED), (who.username, stated, got)
            if refusal is None:
                decision = Decision.RECALL if recall else Decision.NO_RECALL
                self.reads.append(GivenRead(stated, who.person.id, decision))
                self.plan = plan_of(Case.objects.get(pk=self.case.pk))
                self.status = pathway.after_read(self.reads, self.plan).status
                reached.add(self.status)
            self.check_the_database_matches_the_pathway()
            if refusal is None:
                self.check_everyone_sees_only_what_the_pathway_shows()

        def check_the_database_matches_the_pathway(self) -> None:
            assert self.case is not None
            self.case.refresh_from_db()
            assert self.case.status == self.status
            stored = list(
                Read.objects.filter(case=self.case)
                .order_by("created_at", "pk")
                .values_list("kind", "reader_id", "decision")
            )
            assert stored == [(r.kind, r.reader_id, r.decision) for r in self.reads]
            assert self.case.final_decision == pathway.final_decision(
                self.status, self.reads, self.plan
            )
            assert not Case.objects.filter(status=CaseStatus.CLOSED, final_decision="").exists()

        def check_everyone_sees_only_what_the_pathway_shows(self) -> None:
            assert self.case is not None
            for viewer in members:
                shown = blind_rule(viewer.person, self.status, self.reads)
                assert pathway.visible_reads(viewer.person, self.status, self.reads) == shown
                hidden = [read for read in self.reads if read not in shown]
                self.check_the_api(viewer, shown)
                self.check_the_page(viewer, shown, hidden)

        def check_the_api(self, viewer: Member, shown: list[GivenRead]) -> None:
            assert self.case is not None
            api = APIClient()
            api.force_authenticate(viewer.user)
            response = api.get(f"/api/cases/{self.case.pk}/")
            if Role.ADMIN in viewer.person.roles:
                assert response.status_code == HTTPStatus.FORBIDDEN
                return
            assert response.status_code == HTTPStatus.OK, response.content
            body = response.json()
            assert [(read["reader"], read["kind"]) for read in body["reads"]] == [
                (by_id[read.reader_id].username, read.kind) for read in shown
            ], viewer.username
            marks = [f["mark"] for read in body["reads"] for f in read["findings"]]
            assert marks == self.marks_of(shown), viewer.username
            assert body["status"] == self.status
            if self.status == CaseStatus.CLOSED:
                final = pathway.final_decision(self.status, self.reads, self.plan)
                assert body["final_decision"] == final
                assert body["final_decision"]
            else:
                assert body["final_decision"] == ""

        def check_the_page(
            self, viewer: Member, shown: list[GivenRead], hidden: list[GivenRead]
        ) -> None:
            assert self.case is not None
            client = Client()
            client.force_login(viewer.user)
            response = client.get(f"/cases/{self.case.pk}/")
            html = response.content.decode()
            if Role.ADMIN in viewer.person.roles:
                assert response.status_code == HTTPStatus.FORBIDDEN
            else:
                assert response.status_code == HTTPStatus.OK
            for read in hidden:
                name = by_id[read.reader_id].username
                assert name not in html, f"{viewer.username} sees {name}'s {read.kind}"
                assert reason_of(name) not in html
            for read in shown:
                assert reason_of(by_id[read.reader_id].username) in html, viewer.username
            if response.status_code == HTTPStatus.OK:
                sent = json.loads(
                    html.split('id="film-marks" type="application/json">')[1].split("</script>")[0]
                )
                drawn = [{k: m[k] for k in ("image", "shape", "points")} for m in sent]
                assert drawn == self.marks_of(shown), viewer.username

        def marks_of(self, reads: list[GivenRead]) -> list[dict]:
            """The marks ``reads`` carry: each recall's finding, at its reader's own point."""
            return [
                {
                    "image": self.film,
                    "shape": "point",
                    "points": [list(mark_of(by_id[read.reader_id].username))],
                }
                for read in reads
                if read.decision == Decision.RECALL
            ]

    return BlindReading


def run_blind_reading(
    pool: list[Member], version: ModelVersion | None = None, runs: settings = DB
) -> set[str]:
    reached: set[str] = set()
    run_state_machine_as_test(blind_reading_machine(pool, reached, version), settings=runs)
    return reached


@pytest.mark.slow  # a state machine over every page and endpoint, with the database
def test_a_second_reader_never_sees_the_first_read_through_any_page_or_endpoint(pool) -> None:
    reached = run_blind_reading(pool)
    # The random reading did reach the states the blind rule is about.
    assert {CaseStatus.FIRST_READ_DONE, CaseStatus.ARBITRATION, CaseStatus.CLOSED} <= reached


# --- Every site reading policy ------------------------------------------------------

PLANS = [
    pathway.Plan(),
    pathway.Plan(CaseRoute.SINGLE),
    pathway.Plan(CaseRoute.AI_SECOND, Decision.RECALL),
    pathway.Plan(CaseRoute.AI_SECOND, Decision.NO_RECALL),
]


def holds_under_every_plan(check: Callable[[ReadingPathway, pathway.Plan], None]) -> None:
    """Random read sequences under each route a policy can give a case (double, single, AI
    as second reader either way), checking ``check`` after every step."""
    reached: set[tuple[str, str, int]] = set()

    class Machine(ReadingPathway):
        plan = pathway.Plan()

        @initialize(plan=st.sampled_from(PLANS))
        def routed(self, plan: pathway.Plan) -> None:
            self.plan = plan

        @rule(who=st.sampled_from(POOL), recall=st.booleans())
        def read_as_expected(self, who: Person, recall: bool) -> None:
            stated = pathway.expected_kind(self.status) or ReadKind.FIRST
            if not pathway.may_read(who, self.status, self.reads):
                return
            kind = pathway.read_role(who, self.status, self.reads, stated)
            decision = Decision.RECALL if recall else Decision.NO_RECALL
            self.reads.append(GivenRead(kind, who.id, decision))
            self.status = pathway.after_read(self.reads, self.plan).status

        def attempt(self, who: Person, stated: str, recall: bool) -> None:
            return  # replaced by read_as_expected, which applies the case's plan

        @invariant()
        def rule_holds(self) -> None:
            reached.add((self.plan.route, self.status, len(self.reads)))
            check(self, self.plan)

    run_state_machine_as_test(Machine, settings=PURE)
    assert {
        (CaseRoute.SINGLE, CaseStatus.CLOSED, 1),
        (CaseRoute.AI_SECOND, CaseStatus.CLOSED, 1),
        (CaseRoute.AI_SECOND, CaseStatus.ARBITRATION, 1),
        (CaseRoute.AI_SECOND, CaseStatus.CLOSED, 2),
        (CaseRoute.DOUBLE, CaseStatus.CLOSED, 3),
    } <= reached


def test_under_every_policy_nobody_reads_twice_and_arbitration_is_independent() -> None:
    def check(case: ReadingPathway, plan: pathway.Plan) -> None:
        readers = [read.reader_id for read in case.reads]
        assert len(readers) == len(set(readers)), case.reads
        arbitration = case.read_of(ReadKind.ARBITRATION)
        if arbitration is not None:
            earlier = {r.reader_id for r in case.reads if r.kind != ReadKind.ARBITRATION}
            assert arbitration.reader_id not in earlier

    holds_under_every_plan(check)


def test_under_every_policy_a_reader_sees_no_other_read_until_close_but_as_arbitrator() -> None:
    def check(case: ReadingPathway, plan: pathway.Plan) -> None:
        for who in POOL:
            seen = pathway.visible_reads(who, case.status, case.reads)
            assert seen == blind_rule(who, case.status, case.reads), (who, plan, case.reads)

    holds_under_every_plan(check)


def test_under_every_policy_the_final_decision_is_the_deciding_reads() -> None:
    def check(case: ReadingPathway, plan: pathway.Plan) -> None:
        final = pathway.final_decision(case.status, case.reads, plan)
        if case.status != CaseStatus.CLOSED:
            assert final == ""
            return
        closing = case.read_of(pathway.closing_kind(case.reads, plan))
        assert closing is not None and closing.decision == final
        if plan.route == CaseRoute.AI_SECOND and len(case.reads) == 1:
            assert final == plan.ai_decision  # the first reader agreed with the AI
        if plan.route == CaseRoute.SINGLE:
            assert [r.kind for r in case.reads] == [ReadKind.FIRST]

    holds_under_every_plan(check)


CASE_AIS = st.one_of(
    st.none(),
    st.builds(
        pathway.CaseAI,
        usable=st.booleans(),
        band=st.sampled_from(["high", "intermediate", "low", "unvalidated", "failed"]),
        recall=st.one_of(st.none(), st.booleans()),
        validated_bands=st.booleans(),
    ),
)


@settings(max_examples=500, deadline=None, database=None)
@given(
    policy=st.sampled_from(["", *ReadingPolicy.values]),
    single=st.booleans(),
    ai=CASE_AIS,
)
def test_a_policy_removes_a_read_only_on_the_usable_ais_word_and_never_in_the_high_band(
    policy: str, single: bool, ai: pathway.CaseAI | None
) -> None:
    routed = pathway.route(policy, single, ai)
    if ai is None or not ai.usable or not pathway.policy_uses_ai(policy):
        assert routed == pathway.Routed(CaseRoute.DOUBLE)
    if routed.route == CaseRoute.SINGLE:
        assert ai is not None and ai.band in ("intermediate", "low")
        assert policy in (ReadingPolicy.ROUTING, ReadingPolicy.NORMAL_TRIAGE)
    if routed.ai_normal:
        assert policy == ReadingPolicy.NORMAL_TRIAGE and ai and ai.band == "low"
    if routed.route == CaseRoute.AI_SECOND:
        assert ai is not None and ai.recall is not None
        assert routed.ai_decision == (Decision.RECALL if ai.recall else Decision.NO_RECALL)


@settings(max_examples=300, deadline=None, database=None)
@given(
    policy=st.sampled_from(ReadingPolicy.values),
    reveal=st.sampled_from(AIReveal.values),
    ai=CASE_AIS,
    decision=st.sampled_from(Decision.values),
)
def test_the_safety_net_questions_only_a_no_recall_in_the_usable_high_band(
    policy: str, reveal: str, ai: pathway.CaseAI | None, decision: str
) -> None:
    trigger = pathway.revision_trigger(policy, reveal, ai, ai is not None, decision)
    if trigger == RevisionTrigger.SAFETY_NET:
        assert policy == ReadingPolicy.SAFETY_NET and decision == Decision.NO_RECALL
        assert ai is not None and ai.usable and ai.band == "high"
    if reveal == AIReveal.SEQUENTIAL and ai is not None:
        assert trigger  # sequential: every read with an AI to show is held first
    if reveal == AIReveal.CONCURRENT and policy != ReadingPolicy.SAFETY_NET:
        assert trigger == ""


POLICY_DB = settings(DB, max_examples=10)


@pytest.mark.slow  # the same state machine once per policy
@pytest.mark.parametrize(
    ("policy", "options"),
    [
        (ReadingPolicy.ROUTING, {}),
        (ReadingPolicy.NORMAL_TRIAGE, {"single_read_normal": True}),
        (ReadingPolicy.SAFETY_NET, {}),
        (ReadingPolicy.AI_SECOND_READER, {}),
        (ReadingPolicy.STANDARD, {"ai_reveal": AIReveal.SEQUENTIAL}),
    ],
)
def test_under_each_policy_nobody_sees_a_read_the_blind_rule_hides(pool, policy, options) -> None:
    """The database-level machine again, each case arriving through the worker's routing
    step under the policy (held opinions confirmed at once, checked while held too)."""
    version = ModelVersionFactory(is_active=True)
    admin = next(m.user for m in pool if Role.ADMIN in m.person.roles)
    reading_actions.set_policy(admin, policy, **options)
    reached = run_blind_reading(pool, version, POLICY_DB)
    assert CaseStatus.CLOSED in reached
