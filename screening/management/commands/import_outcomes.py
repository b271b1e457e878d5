"""Record screening outcomes from a CSV file exported by the pathology or follow-up system."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from screening.management.users import admin_named

from ... import errors
from ...audit import actions as audit_actions

COLUMNS = {"accession_number", "outcome", "source"}


class Command(BaseCommand):
    help = (
        "Record outcomes from CSV_FILE with columns accession_number, outcome "
        "(normal, benign, malignant) and source (biopsy, follow_up). Each row stands alone: "
        "a bad row is reported by its line number and the others are still recorded."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv_file", type=Path)
        parser.add_argument("--as-user", default="admin", help="Admin the outcomes are recorded as")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["csv_file"]
        user = admin_named(options["as_user"])
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise CommandError(f"Cannot read {path}: {error}") from None
        if rows and not COLUMNS <= set(rows[0]):
            raise CommandError(f"The file needs the columns {', '.join(sorted(COLUMNS))}.")
        recorded = refused = 0
        for line, row in enumerate(rows, start=2):
            try:
                audit_actions.record_outcome(
                    user, row["accession_number"] or "", row["outcome"] or "", row["source"] or ""
                )
                recorded += 1
            except errors.DomainError as error:
                refused += 1
                self.stderr.write(f"line {line}: {error.message}")
        self.stdout.write(self.style.SUCCESS(f"Recorded {recorded} outcomes; {refused} refused."))
