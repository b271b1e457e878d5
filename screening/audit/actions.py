"""The audit verb: a screen's outcome (biopsy or follow-up), what the figures measure against."""

from __future__ import annotations

import logging

from django.contrib.auth.models import User
from django.db import transaction

from .. import events
from ..choices import Outcome, OutcomeSource
from ..errors import DomainError, NotFound
from ..models import Case

log = logging.getLogger(__name__)


def record_outcome(actor: User, accession_number: str, outcome: str, source: str) -> Case:
    """Attach the screen's outcome (biopsy or follow-up) to the case of a study.

    Outcomes arrive weeks after the reads, keyed by the hospital's accession number; they
    are what sensitivity and specificity are measured against. A later result replaces an
    earlier one, and the audit event keeps the one it replaced.
    """
    if outcome not in Outcome.values:
        raise DomainError(f"Outcome must be one of {', '.join(Outcome.values)}.")
    if source not in OutcomeSource.values:
        raise DomainError(f"Source must be one of {', '.join(OutcomeSource.values)}.")
    with transaction.atomic():
        case = (
            Case.objects.select_for_update()
            .filter(studies__accession_number=accession_number.strip())
            .first()
        )
        if case is None:
            raise NotFound("Unknown accession number: no such study.")
        previous = case.outcome
        case.outcome, case.outcome_source = outcome, source
        case.save(update_fields=["outcome", "outcome_source"])
        events.outcome_recorded(actor, case, previous)
    log.info("Outcome recorded on case %s", case.pk)
    return case
