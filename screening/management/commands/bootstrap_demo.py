"""Create the role groups' demo users and synthetic demo cases, and print the credentials."""

from __future__ import annotations

import io
import secrets
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from PIL import Image as PILImage

from ml.synthetic import screening_study
from screening.choices import Role
from screening.models import Case, ModelVersion

from ... import accounts
from ...ai import actions as ai_actions
from ...intake import actions as intake_actions

DEMO_USERS = [
    ("radiologist", Role.RADIOLOGIST),
    ("radiologist2", Role.RADIOLOGIST),
    # A third reader, so a disagreement can be arbitrated by someone who gave neither read.
    ("radiologist3", Role.RADIOLOGIST),
    ("admin", Role.ADMIN),
    ("auditor", Role.AUDITOR),
]
# Admins manage users and model versions in the Django admin; nothing clinical.
ADMIN_PERMISSIONS = [
    ("auth", "user"),
    ("auth", "group"),
    ("screening", "modelversion"),
]


class Command(BaseCommand):
    help = "Create one demo user per role (and a second and third radiologist) and synthetic demo cases."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cases", type=int, default=12, help="Synthetic demo cases to create")
        parser.add_argument("--size", type=int, default=1024, help="Film height in pixels")

    def handle(self, *args: Any, **options: Any) -> None:
        credentials = [self._user(name, role) for name, role in DEMO_USERS]
        self._model()
        created = self._cases(options["cases"], options["size"], credentials)
        self.stdout.write(self.style.SUCCESS(f"Demo cases: {created} created (synthetic images)."))
        self.stdout.write("Demo users (passwords are new each run):")
        for name, role, password in credentials:
            self.stdout.write(f"  {role:<12} {name:<14} {password}")

    def _user(self, name: str, role: str) -> tuple[str, str, str]:
        """The command line is the install-time path: its roles act at once (no second
        admin to confirm them), and each change is audited as done from the command line."""
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(username=name)
        before = None if created else accounts.stored_access(user.pk)
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.is_staff = role == Role.ADMIN
        user.save()
        user.groups.add(Group.objects.get(name=role))
        accounts.record_access_change(None, user, before)
        if role == Role.ADMIN:
            user.user_permissions.add(
                *Permission.objects.filter(
                    content_type__app_label__in=[a for a, _ in ADMIN_PERMISSIONS],
                    content_type__model__in=[m for _, m in ADMIN_PERMISSIONS],
                )
            )
        return name, role, password

    def _model(self) -> None:
        """Register the shipped research model and let it triage if nothing else does."""
        artifact = settings.DEFAULT_MODEL_ARTIFACT
        if not (artifact / "manifest.json").exists():
            self.stderr.write(f"No model artifact at {artifact}: demo cases stay awaiting AI.")
            return
        first = not ModelVersion.objects.filter(is_active=True).exists()
        version = ai_actions.register_model_version(None, str(artifact), activate=first)
        self.stdout.write(f"Model: {version} ({'active' if version.is_active else 'registered'}).")

    def _cases(self, count: int, size: int, credentials: list) -> int:
        if Case.objects.filter(is_synthetic=True).exists():
            return 0
        admin = get_user_model().objects.get(username="admin")
        width = size * 13 // 16
        for number in range(1, count + 1):
            films = screening_study(
                seed=number, malignant=number % 4 == 0, height=size, width=width
            )
            files = [_png(film.pixels, f"{film.laterality}_{film.view}.png") for film in films]
            spec = intake_actions.StudySpec(
                accession_number=f"DEMO-{number:04d}",
                patient_pseudonym=f"SYN-{number:04d}",
                synthetic=True,
            )
            with transaction.atomic():
                intake_actions.upload_study(admin, spec, files)
            self.stdout.write(f"  demo case {number}/{count}")
        return count


def _png(pixels: np.ndarray, name: str) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels.astype(np.uint16)).save(buffer, format="PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")
