"""A version switched on for triage by its figures on the site's own screens and two people;
switched off in one step."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from mammo_portal import settings as project_settings
from screening.audit import triage_switch
from screening.choices import AuditAction, ProposalStatus, Role
from screening.errors import Conflict, DomainError
from screening.models import AuditEvent, Case, ModelVersion, TriageProposal
from tests.conftest import login
from tests.factories import (
    UserFactory,
    case_with_images,
    score_case,
    unvalidated_evidence,
    validated_evidence,
)
from tests.screening.audit.test_local_validation import cohort


@pytest.fixture
def local_rules(settings):
    settings.AI_LOCAL_MIN_CANCERS = 40
    return settings


@pytest.fixture
def version(db, local_rules):
    """A version its manifest does not validate, which ranks this site's screens well
    (about 90 cancers among 600 screens), with one open case shown its score."""
    found, _ = cohort(n=600, women=500, seed=5, separation=0.45)
    found.evidence = unvalidated_evidence()
    found.save()
    assert not found.validated_for_triage
    return found


@pytest.fixture
def shown(version):
    case = case_with_images(images=1)
    score_case(case, 0.8, version)
    case.refresh_from_db()
    assert case.triage_priority == -1.0  # waiting order: not validated
    return case


def admin(name: str = "prop") -> User:
    return UserFactory(username=name, role=Role.ADMIN)


def auditor(name: str = "conf") -> User:
    return UserFactory(username=name, role=Role.AUDITOR)


def test_an_admin_proposes_and_an_auditor_confirms(version, shown):
    proposal = triage_switch.propose(admin(), version.pk)
    version.refresh_from_db()
    assert not version.validated_for_triage  # one person is not enough
    switched = triage_switch.confirm(auditor(), proposal.pk)
    switched.refresh_from_db()
    assert switched.validated_for_triage and switched.on_local_evidence
    local = switched.triage_switch["local"]
    assert local["cancers"] >= 40 and local["auc"] > 0.75
    assert switched.triage_switch["proposed_by"] == "prop"
    assert switched.triage_switch["confirmed_by"] == "conf"
    shown.refresh_from_db()
    assert shown.triage_priority == pytest.approx(0.8)  # the worklist follows its score now
    trail = list(AuditEvent.objects.filter(object_id=str(version.pk)).order_by("pk"))
    assert [(e.action, e.actor_name) for e in trail[-2:]] == [
        (AuditAction.TRIAGE_PROPOSED, "prop"),
        (AuditAction.TRIAGE_CONFIRMED, "conf"),
    ]
    assert trail[-1].detail["local"]["auc"] == local["auc"]


def test_it_cannot_be_proposed_without_enough_local_cancers(version, local_rules):
    local_rules.AI_LOCAL_MIN_CANCERS = 500
    with pytest.raises(DomainError, match="cancers are too few"):
        triage_switch.propose(admin(), version.pk)
    assert not TriageProposal.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.TRIAGE_PROPOSED).exists()


def test_a_version_that_ranks_no_better_than_chance_here_cannot_be_proposed(db, local_rules):
    chance, _ = cohort(n=600, women=500, seed=6, separation=0.0)
    with pytest.raises(DomainError, match="may be chance"):
        triage_switch.propose(admin(), chance.pk)


def test_one_person_cannot_propose_and_confirm(version):
    both = admin("both")
    both.groups.add(*auditor("aud-group").groups.all())
    proposal = triage_switch.propose(both, version.pk)
    with pytest.raises(Conflict, match="second person"):
        triage_switch.confirm(both, proposal.pk)
    version.refresh_from_db()
    assert not version.validated_for_triage
    assert TriageProposal.objects.get().status == ProposalStatus.PENDING


def test_confirming_measures_again(version, local_rules):
    proposal = triage_switch.propose(admin(), version.pk)
    local_rules.AI_LOCAL_MIN_CANCERS = 500  # the site's rule tightened meanwhile
    with pytest.raises(DomainError):
        triage_switch.confirm(auditor(), proposal.pk)
    version.refresh_from_db()
    assert not version.triage_switch


def test_switching_off_is_one_step_and_immediate(version, shown):
    proposal = triage_switch.propose(admin(), version.pk)
    triage_switch.confirm(auditor(), proposal.pk)
    off = triage_switch.switch_off(auditor("other"), version.pk)
    assert not off.validated_for_triage
    assert not ModelVersion.objects.get(pk=version.pk).validated_for_triage
    shown.refresh_from_db()
    assert shown.triage_priority == -1.0
    event = AuditEvent.objects.filter(action=AuditAction.TRIAGE_OFF).get()
    assert event.actor_name == "other" and event.detail["previous"]["confirmed_by"] == "conf"


def test_a_switch_is_judged_again_under_a_stricter_site_rule(version, local_rules):
    triage_switch.confirm(auditor(), triage_switch.propose(admin(), version.pk).pk)
    version.refresh_from_db()
    assert version.validated_for_triage
    local_rules.AI_LOCAL_MIN_CANCERS = 500
    assert not version.validated_for_triage
    assert "cancers are too few" in version.triage_reason


def test_the_pages_switch_it_with_two_roles_and_show_what_it_rests_on(client, version, shown):
    proposer, confirmer = admin(), auditor()
    login(client, proposer)
    assert client.post(reverse("triage-propose", args=[version.pk])).status_code == 302
    proposal = TriageProposal.objects.get()
    assert client.post(reverse("triage-confirm", args=[proposal.pk])).status_code == 403
    login(client, confirmer)
    assert client.post(reverse("triage-propose", args=[version.pk])).status_code == 403
    assert "waiting for an auditor" in client.get(reverse("model-versions")).content.decode()
    assert client.post(reverse("triage-confirm", args=[proposal.pk])).status_code == 302
    models_page = client.get(reverse("model-versions")).content.decode()
    assert "On for triage" in models_page and "confirmed by conf" in models_page
    reader = UserFactory(username="reader", role=Role.RADIOLOGIST)
    case_page = login(client, reader).get(reverse("case-detail", args=[shown.pk]))
    text = case_page.content.decode()
    assert "orders the worklist on this site's own screens" in text
    assert "proposed by prop, confirmed by conf" in text
    for name, args in [
        ("triage-propose", [version.pk]),
        ("triage-confirm", [proposal.pk]),
        ("triage-off", [version.pk]),
    ]:
        assert client.post(reverse(name, args=args)).status_code == 403
    login(client, proposer)
    assert client.post(reverse("triage-off", args=[version.pk])).status_code == 302
    assert not ModelVersion.objects.get(pk=version.pk).validated_for_triage
    assert Case.objects.get(pk=shown.pk).triage_priority == -1.0


def test_local_evidence_is_needed_unless_a_site_opts_out():
    """The safe rule is the default: a site must say AI_TRIAGE_NEEDS_LOCAL_EVIDENCE=off."""
    assert os.environ.get("AI_TRIAGE_NEEDS_LOCAL_EVIDENCE") is None
    assert project_settings.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE is True


def test_by_default_only_local_evidence_switches_a_version_on(local_rules, shown):
    version = ModelVersion.objects.get(pk=shown.ai_result.model_version_id)
    version.evidence = validated_evidence(version.threshold)  # passes on its files
    version.save()
    local_rules.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE = False  # a site that opted out: files suffice
    assert version.validated_for_triage
    local_rules.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE = project_settings.AI_TRIAGE_NEEDS_LOCAL_EVIDENCE
    assert not version.validated_for_triage
    assert "not been switched on by them" in version.triage_reason
    triage_switch.confirm(auditor(), triage_switch.propose(admin(), version.pk).pk)
    version.refresh_from_db()
    assert version.validated_for_triage and version.on_local_evidence
