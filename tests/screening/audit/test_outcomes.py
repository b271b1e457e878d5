"""Outcomes arrive after the reads: by API or from a CSV file, each one audited."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from screening import errors
from screening.audit import actions as audit_actions
from screening.choices import AuditAction, Outcome, OutcomeSource
from screening.models import AuditEvent
from tests.factories import case_with_images


def accession_of(case) -> str:
    return case.studies.get().accession_number


def test_an_outcome_is_recorded_and_a_correction_keeps_the_old_one(admin_user):
    case = case_with_images(images=1)
    audit_actions.record_outcome(
        admin_user, accession_of(case), Outcome.BENIGN, OutcomeSource.BIOPSY
    )
    audit_actions.record_outcome(
        admin_user, accession_of(case), Outcome.MALIGNANT, OutcomeSource.FOLLOW_UP
    )
    case.refresh_from_db()
    assert (case.outcome, case.outcome_source) == (Outcome.MALIGNANT, OutcomeSource.FOLLOW_UP)
    latest = AuditEvent.objects.filter(action=AuditAction.OUTCOME_RECORDED).first()
    assert latest is not None
    assert latest.detail == {
        "screening_outcome": "malignant",
        "source": "follow_up",
        "previous": "benign",
    }
    assert latest.outcome == "success"
    assert latest.object_id == str(case.pk)
    assert accession_of(case) not in str(latest.detail)


@pytest.mark.parametrize(
    ("accession", "outcome", "source", "message"),
    [
        ("NOPE", Outcome.NORMAL, OutcomeSource.BIOPSY, "Unknown accession"),
        (None, "cancer", OutcomeSource.BIOPSY, "Outcome must be"),
        (None, Outcome.NORMAL, "guess", "Source must be"),
    ],
)
def test_bad_outcomes_are_refused_and_nothing_changes(
    admin_user, accession, outcome, source, message
):
    case = case_with_images(images=1)
    with pytest.raises(errors.DomainError, match=message):
        audit_actions.record_outcome(admin_user, accession or accession_of(case), outcome, source)
    case.refresh_from_db()
    assert case.outcome == ""
    assert not AuditEvent.objects.filter(action=AuditAction.OUTCOME_RECORDED).exists()


def test_the_api_takes_an_outcome_from_an_admin(api, admin_user):
    case = case_with_images(images=1)
    api.force_authenticate(admin_user)
    url = reverse("api-outcome")
    body = {"accession_number": accession_of(case), "outcome": "malignant", "source": "biopsy"}
    assert api.post(url, body, format="json").status_code == 200
    case.refresh_from_db()
    assert case.outcome == Outcome.MALIGNANT
    missing = api.post(url, {**body, "accession_number": "NOPE"}, format="json")
    assert missing.status_code == 404 and "Unknown accession" in missing.json()["detail"]


def test_import_outcomes_records_good_rows_and_names_bad_lines(admin_user, tmp_path):
    first, second = case_with_images(images=1), case_with_images(images=1)
    path = tmp_path / "outcomes.csv"
    path.write_text(
        "accession_number,outcome,source\n"
        f"{accession_of(first)},malignant,biopsy\n"
        "UNKNOWN-1,normal,follow_up\n"
        f"{accession_of(second)},normal,follow_up\n",
        encoding="utf-8",
    )
    out, err = StringIO(), StringIO()
    call_command("import_outcomes", str(path), "--as-user", "admin1", stdout=out, stderr=err)
    assert "Recorded 2 outcomes; 1 refused." in out.getvalue()
    assert err.getvalue().strip() == "line 3: Unknown accession number: no such study."
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.outcome, second.outcome) == (Outcome.MALIGNANT, Outcome.NORMAL)


def test_import_outcomes_refuses_a_file_without_the_columns(admin_user, tmp_path):
    from django.core.management.base import CommandError

    path = tmp_path / "wrong.csv"
    path.write_text("patient,result\nx,y\n", encoding="utf-8")
    with pytest.raises(CommandError, match="needs the columns"):
        call_command("import_outcomes", str(path), "--as-user", "admin1")
