"""Register a trained model artifact (a directory with manifest.json) as a model version."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import errors
from ...ai import actions as ai_actions


class Command(BaseCommand):
    help = "Verify an artifact's checksum and register it; --activate makes it triage."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("artifact")
        parser.add_argument("--activate", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            version = ai_actions.register_model_version(
                None, options["artifact"], options["activate"]
            )
        except errors.DomainError as error:
            raise CommandError(error.message) from None
        state = "active" if version.is_active else "inactive"
        self.stdout.write(self.style.SUCCESS(f"Registered {version} ({state})."))
