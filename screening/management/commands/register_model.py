"""Register a model artifact (a directory with manifest.json and the .keras file) as a version.

The artifact may come from this project's ``python -m ml.train`` or from elsewhere (an
``external`` architecture whose manifest names its preprocessing). Nothing loads TensorFlow
unless ``--try`` asks for one trial score, which an engineer bringing a model runs once.
"""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import errors
from ...ai import actions as ai_actions
from ...ai import inference


class Command(BaseCommand):
    help = (
        "Check an artifact's manifest, model file and checksum and register it (audited); "
        "--activate makes it triage; --try scores a blank film with it first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("artifact")
        parser.add_argument("--activate", action="store_true")
        parser.add_argument(
            "--by", metavar="USERNAME", help="the account registering it (for the audit trail)"
        )
        parser.add_argument(
            "--try",
            dest="trial",
            action="store_true",
            help="load the model with TensorFlow and score a blank film before registering",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        actor, actor_name = self._actor(options["by"])
        try:
            if options["trial"]:
                ai_actions.check_artifact(options["artifact"])
                self._trial(options["artifact"])
            version = ai_actions.register_model_version(
                actor, options["artifact"], options["activate"], actor_name=actor_name
            )
        except errors.DomainError as error:
            raise CommandError(error.message) from None
        state = "active" if version.is_active else "inactive"
        triage = "validated for triage" if version.validated_for_triage else "not validated"
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {version} ({state}, {triage}; target {version.target}; "
                f"sha256 {version.checksum})."
            )
        )

    def _actor(self, username: str | None) -> tuple[User | None, str]:
        if not username:
            return None, f"shell:{getpass.getuser()}"
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active account {username!r}.")
        return user, ""

    def _trial(self, artifact: str) -> None:
        """One score of a blank film through the worker's predictor: the model loads, takes
        the manifest's preprocessing and gives a probability."""
        try:
            probability = inference.trial_score(artifact)
        except inference.PermanentFailure as error:
            raise CommandError(f"Trial refused: {error}") from None
        self.stdout.write(f"Trial score of a blank film: {probability:.4f}")
