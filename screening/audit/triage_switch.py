"""Switching a version on for triage by its figures on this site's own screens.

A version orders the worklist when what it showed on files passes the site's triage gate, or,
here, when its **local** validation does (``ml.evidence.local_triage_gate``: the same rule on
this site's screens with outcomes, on at least ``AI_LOCAL_MIN_CANCERS`` cancers) and two
people agree: an admin proposes, a different person holding the auditor role confirms. Each
step measures the figures afresh and is audited; the version keeps the figures it was switched
on by (``ModelVersion.triage_switch``). Switching off is one step, by an admin or an auditor,
and takes effect at once: the cases it ordered go back to waiting order in the same
transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from ml import evidence

from .. import events
from ..ai import actions as ai_actions
from ..choices import ProposalStatus
from ..errors import Conflict, DomainError, NotFound
from ..models import ModelVersion, TriageProposal
from . import local_validation

log = logging.getLogger(__name__)


def local_figures(version: ModelVersion) -> dict[str, Any]:
    """The version's local figures as the gate reads them, measured now (never the page's
    kept copy: a switch rests on what is recorded at that moment)."""
    report = local_validation.build(version)
    auc = report.auc
    return {
        "auc": auc.auc,
        "ci95": [auc.ci.low, auc.ci.high] if auc.ci is not None else None,
        "ci_method": auc.ci_method,
        "screens": report.screens,
        "cancers": report.cancers,
        "women": report.women,
        "excluded_screens": report.excluded_screens,
        "measured_at": report.computed_at.isoformat(),
    }


def _passing(version: ModelVersion) -> dict[str, Any]:
    local = local_figures(version)
    verdict = evidence.local_triage_gate(local, settings.AI_GATES, settings.AI_LOCAL_MIN_CANCERS)
    if not verdict.passed:
        raise DomainError(f"{version} cannot be switched on: {verdict.figures}. {verdict.reason}")
    return local


def propose(actor: User, version_id: int) -> TriageProposal:
    """An admin's proposal, refused unless the local figures pass the gate now."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None:
            raise NotFound("No such model version.")
        if version.triage_switch:
            raise Conflict(f"{version} is already switched on for triage.")
        if version.triage_proposals.filter(status=ProposalStatus.PENDING).exists():
            raise Conflict(f"{version} already has a proposal waiting for an auditor.")
        local = _passing(version)
        proposal = TriageProposal.objects.create(
            model_version=version, local=local, proposed_by=actor
        )
        events.triage_proposed(actor, version, proposal.pk, local)
    log.info("Triage on local evidence proposed for model version %s", version.pk)
    return proposal


def confirm(actor: User, proposal_id: int) -> ModelVersion:
    """An auditor's confirmation, by someone other than the proposer, on figures that still
    pass when measured again; the version's cases are keyed by its score at once."""
    with transaction.atomic():
        proposal = (
            TriageProposal.objects.select_for_update()
            .filter(pk=proposal_id, status=ProposalStatus.PENDING)
            .first()
        )
        if proposal is None:
            raise NotFound("No such proposal waiting for confirmation.")
        if proposal.proposed_by_id == actor.pk:
            raise Conflict("A second person must confirm: you proposed this.")
        version = ModelVersion.objects.select_for_update().get(pk=proposal.model_version_id)
        local = _passing(version)
        now = timezone.now()
        version.triage_switch = {
            "local": local,
            "proposal_id": proposal.pk,
            "proposed_by": proposal.proposed_by.get_username(),
            "proposed_at": proposal.proposed_at.isoformat(),
            "confirmed_by": actor.get_username(),
            "confirmed_at": now.isoformat(),
        }
        version.save(update_fields=["triage_switch"])
        proposal.status, proposal.decided_by, proposal.decided_at = (
            ProposalStatus.CONFIRMED,
            actor,
            now,
        )
        proposal.save(update_fields=["status", "decided_by", "decided_at"])
        events.triage_confirmed(actor, version, proposal.pk, local)
        ai_actions.rekey_under_site_gates(version)
    log.info("Model version %s switched on for triage on local evidence", version.pk)
    return version


def switch_off(actor: User, version_id: int) -> ModelVersion:
    """One step, immediate: the worklist stops following its score in this transaction; a
    proposal still waiting is withdrawn with it."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None:
            raise NotFound("No such model version.")
        waiting = version.triage_proposals.filter(status=ProposalStatus.PENDING)
        if not version.triage_switch and not waiting.exists():
            raise Conflict(f"{version} is not switched on by local evidence.")
        previous = version.triage_switch
        version.triage_switch = {}
        version.save(update_fields=["triage_switch"])
        waiting.update(status=ProposalStatus.WITHDRAWN, decided_by=actor, decided_at=timezone.now())
        events.triage_switched_off(actor, version, previous)
        ai_actions.rekey_under_site_gates(version)
    log.info("Model version %s switched off for triage on local evidence", version.pk)
    return version
