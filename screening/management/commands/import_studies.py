"""Import real studies from a folder through the same checks as an upload."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml.config import mias_pseudonym
from screening import events
from screening.choices import Outcome
from screening.management.users import admin_named

from ...intake import actions as intake_actions

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm"}


class Command(BaseCommand):
    help = (
        "Import studies from FOLDER: each sub-folder is one study (its name the accession "
        "number; DICOM .dcm files take study and accession from their headers), or with --mini-mias a mini-MIAS folder (images/ + labels.csv), one case "
        "per woman with her two films and the recorded outcome."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", type=Path)
        parser.add_argument("--mini-mias", action="store_true")
        parser.add_argument("--limit", type=int, default=0, help="Import at most this many studies")
        parser.add_argument("--as-user", default="admin", help="Admin the uploads are recorded as")

    def handle(self, *args: Any, **options: Any) -> None:
        folder: Path = options["folder"]
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder.")
        user = admin_named(options["as_user"])
        groups = _mini_mias_groups(folder) if options["mini_mias"] else _folder_groups(folder)
        if options["limit"]:
            groups = groups[: options["limit"]]
        stored = refused = 0
        for spec, paths in groups:
            files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in paths]
            try:
                _import(user, spec, files)
                stored += 1
            except intake_actions.UploadRefused as refusal:
                refused += 1
                self.stderr.write(f"{spec.accession_number}: {refusal.message}")
        self.stdout.write(self.style.SUCCESS(f"Imported {stored} studies; {refused} refused."))


def _import(user, spec: intake_actions.StudySpec, files: list) -> None:
    """Store a study; an outcome it arrives with is audited as any recorded outcome is.

    Not one transaction with the upload: a refused upload audits its refusal, which a
    rolled-back transaction would take with it.
    """
    accepted = intake_actions.upload_study(user, spec, files)
    if spec.outcome and accepted.study.case is not None:  # a prior has no outcome of its own
        events.outcome_recorded(user, accepted.study.case, previous="")


def _folder_groups(folder: Path) -> list[tuple[intake_actions.StudySpec, list[Path]]]:
    groups = []
    for study_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        paths = sorted(p for p in study_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if paths:
            spec = intake_actions.StudySpec(
                accession_number=study_dir.name, patient_pseudonym=f"IMP-{study_dir.name}"
            )
            groups.append((spec, paths))
    return groups


def _mini_mias_groups(folder: Path) -> list[tuple[intake_actions.StudySpec, list[Path]]]:
    """One case per woman: film N belongs to patient (N+1)//2 (see the data set's README)."""
    labels = folder / "labels.csv"
    if not labels.exists():
        raise CommandError(f"{labels} is missing.")
    severity: dict[str, str] = {}
    with labels.open(newline="") as handle:
        for row in csv.DictReader(handle):
            name = row["png"].strip()
            rank = {"M": Outcome.MALIGNANT, "B": Outcome.BENIGN}.get(
                row["severity"].strip(), Outcome.NORMAL
            )
            severity[name] = _worse(severity.get(name, Outcome.NORMAL), rank)
    patients: dict[int, list[str]] = {}
    for name in sorted(severity):
        patients.setdefault((int(name[3:6]) + 1) // 2, []).append(name)
    groups = []
    for patient, names in sorted(patients.items()):
        paths = [folder / "images" / n for n in names if (folder / "images" / n).exists()]
        outcome: str = Outcome.NORMAL
        for n in names:
            outcome = _worse(outcome, severity[n])
        spec = intake_actions.StudySpec(
            accession_number=mias_pseudonym(patient),
            patient_pseudonym=mias_pseudonym(patient),
            outcome=outcome,
        )
        groups.append((spec, paths))
    return groups


def _worse(a: str, b: str) -> str:
    order: list[str] = [Outcome.NORMAL, Outcome.BENIGN, Outcome.MALIGNANT]
    return max(a, b, key=order.index)
