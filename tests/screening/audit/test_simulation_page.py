"""The policy simulator's page and CSV: the hand-counted cohort read through the real verbs,
who may look, the export and its audit event, any version's scores, the date range."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from screening.choices import AIStatus, AuditAction, Outcome, ReadingPolicy, SilentTrial
from screening.models import AIResult, AuditEvent
from tests.conftest import login
from tests.factories import (
    ModelVersionFactory,
    UserFactory,
    screen,
    unvalidated_evidence,
)
from tests.screening.audit.test_simulation import COHORT

OUTCOMES = {1: Outcome.MALIGNANT, 0: Outcome.NORMAL, -1: ""}


@pytest.fixture
def readers(db):
    return [UserFactory(username=f"sim{i}", role="radiologist") for i in range(3)]


@pytest.fixture
def version(db):
    return ModelVersionFactory(threshold=0.5, is_active=True)


@pytest.fixture
def recorded(version, readers):
    """The ten replayable screens of ``test_simulation.COHORT`` read through the read verb,
    and one still open and one closed without a score."""
    cases = []
    for score, first, second, arbitration, cancer, _ in COHORT[:10]:
        decisions = [bool(first), bool(second)] + ([bool(arbitration)] if arbitration >= 0 else [])
        cases.append(screen(version, score, decisions, readers, outcome=OUTCOMES[cancer]))
    screen(version, 0.95, [True], readers[:1])  # still open
    screen(version, None, [False, False], readers, outcome=Outcome.NORMAL)  # unscored
    return cases


def figures(response, policy: str) -> tuple:
    r = {r.policy: r for r in response.context["simulation"].chosen}[policy]
    p = r.performance
    return (p.screens, r.reads, p.recalls, p.tp, p.fn, p.fp, p.tn, r.single_read_cancers)


def rows_of(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_the_page_replays_the_recorded_reads_as_counted_by_hand(client, auditor, recorded):
    response = login(client, auditor).get(reverse("audit-simulate"), {"high": 0.5, "normal": 0.25})
    assert response.status_code == 200
    # The hand counts of tests/screening/audit/test_simulation.py, now through the database.
    assert figures(response, ReadingPolicy.STANDARD) == (10, 24, 4, 3, 2, 1, 3, 0)
    assert figures(response, ReadingPolicy.ROUTING) == (10, 17, 4, 3, 2, 1, 3, 2)
    assert figures(response, ReadingPolicy.NORMAL_TRIAGE) == (10, 18, 4, 3, 2, 1, 3, 2)
    assert figures(response, ReadingPolicy.SAFETY_NET) == (10, 24, 7, 4, 1, 3, 1, 0)
    assert figures(response, ReadingPolicy.AI_SECOND_READER) == (10, 15, 4, 2, 3, 2, 2, 2)
    html = response.content.decode()
    assert "10 closed screens" in html and "1 still open, 1 closed without" in html
    assert html.count('src="data:image/svg+xml;base64,') == 1
    assert "What a replay cannot know" in html
    assert "a reader who would have read differently with the AI shown" in html


def test_changing_the_cut_changes_the_figures(client, auditor, recorded):
    login(client, auditor)
    at_56 = client.get(reverse("audit-simulate"), {"high": 0.56, "normal": 0.25})
    # screen 7 (0.55) drops to single reading: one read fewer
    assert figures(at_56, ReadingPolicy.ROUTING) == (10, 16, 4, 3, 2, 1, 3, 2)
    assert "double read at 0.56 and above" in at_56.content.decode()


def test_without_cuts_the_version_suggests_them(client, auditor, recorded, version):
    response = login(client, auditor).get(reverse("audit-simulate"))
    choice = response.context["choice"]
    assert (choice.version, choice.high, choice.normal) == (version, 0.5, 0.25)


def test_a_cut_out_of_range_is_refused_and_the_default_used(client, auditor, recorded):
    response = login(client, auditor).get(reverse("audit-simulate"), {"high": 2})
    assert response.context["form"].errors
    assert response.context["choice"].high == 0.5
    assert "The default was used instead" in response.content.decode()


def test_any_version_with_scores_can_be_replayed_such_as_a_silent_trial(client, auditor, recorded):
    trial = ModelVersionFactory(
        version="trial", evidence=unvalidated_evidence(), silent_trial=SilentTrial.RUNNING
    )
    for case, score in zip(recorded, [0.1] * 9 + [0.9], strict=True):
        # As the silent trial stores it: a case result no reader was shown.
        AIResult.objects.create(
            model_version=trial, case=case, status=AIStatus.DONE, probability=score
        )
    response = login(client, auditor).get(
        reverse("audit-simulate"), {"version": trial.pk, "high": 0.5, "normal": 0.25}
    )
    # only screen 10 (no recall, outcome unknown) double read; the rest the first read alone
    # (recalls 1, 4, 6, 8; cancers found 1, 4; normals recalled 6, 8)
    assert figures(response, ReadingPolicy.ROUTING) == (10, 11, 4, 2, 3, 2, 2, 5)
    assert "is not validated for triage" in response.content.decode()


def test_the_date_range_narrows_the_cohort(client, auditor, recorded):
    old = timezone.now() - dt.timedelta(days=30)
    type(recorded[0]).objects.filter(pk__in=[c.pk for c in recorded[:2]]).update(received_at=old)
    since = (timezone.localdate() - dt.timedelta(days=7)).isoformat()
    response = login(client, auditor).get(reverse("audit-simulate"), {"date_from": since})
    assert len(response.context["simulation"].cohort) == 8


def test_a_range_with_no_screens_shows_dashes_not_zeros(client, auditor, recorded):
    future = (timezone.localdate() + dt.timedelta(days=7)).isoformat()
    response = login(client, auditor).get(reverse("audit-simulate"), {"date_from": future})
    assert response.status_code == 200
    html = response.content.decode()
    assert "0 closed screens" in html and response.context["plot"] is None
    assert response.context["simulation"].chosen[0].reads_per_1000 is None


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_auditors_and_admins_may_look(client, role, recorded):
    response = login(client, UserFactory(role=role)).get(reverse("audit-simulate"))
    assert response.status_code == 200


@pytest.mark.parametrize("role", ["radiologist", "arbitrator", None])
@pytest.mark.parametrize("name", ["audit-simulate", "audit-simulate-export"])
def test_no_one_else_may(client, role, name, recorded):
    assert login(client, UserFactory(role=role)).get(reverse(name)).status_code == 403


def test_a_stranger_is_sent_to_sign_in(client, recorded):
    assert client.get(reverse("audit-simulate")).status_code == 302


def test_the_csv_holds_the_chosen_cuts_and_the_sweep_and_is_audited(client, auditor, recorded):
    login(client, auditor)
    response = client.get(reverse("audit-simulate-export"), {"high": 0.5, "normal": 0.25})
    rows = rows_of(response)
    header, body = rows[0], rows[1:]
    assert len(body) == 5 + 4 * 101  # each policy at its cut; all but standard over the sweep
    chosen = {row[0]: dict(zip(header, row, strict=True)) for row in body if row[2] == "yes"}
    routing = chosen[ReadingPolicy.ROUTING]
    assert (routing["cut"], routing["reads"], routing["reads_per_1000"]) == (
        "0.5",
        "17",
        "1700.00",
    )
    assert (routing["cancers_single_read"], routing["cancers_known"]) == ("2", "5")
    assert (routing["sensitivity"], routing["specificity"]) == ("0.6000", "0.7500")
    assert chosen[ReadingPolicy.STANDARD]["cut"] == ""
    assert chosen[ReadingPolicy.SAFETY_NET]["safety_net_prompts"] == "7"
    event = AuditEvent.objects.get(action=AuditAction.EXPORT)
    assert event.detail["what"] == "simulation" and event.detail["rows"] == len(body)
    assert event.detail["filters"]["high"] == 0.5


def test_a_csv_with_a_bad_cut_is_refused_not_widened(client, auditor, recorded):
    response = login(client, auditor).get(reverse("audit-simulate-export"), {"normal": -1})
    assert response.status_code == 400
    assert not AuditEvent.objects.filter(action=AuditAction.EXPORT).exists()


def test_with_no_version_the_page_says_so(client, auditor):
    response = login(client, auditor).get(reverse("audit-simulate"))
    assert response.status_code == 200
    assert "No model version has scored a screen yet" in response.content.decode()


def test_the_dashboard_links_to_it(client, auditor, recorded, version):
    html = login(client, auditor).get(reverse("audit-dashboard")).content.decode()
    assert reverse("audit-simulate") + f"?version={version.pk}" in html
