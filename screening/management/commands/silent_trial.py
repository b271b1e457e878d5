"""Start or stop a model version's silent trial: it scores new studies for auditors only."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import errors
from ...ai import actions as ai_actions


class Command(BaseCommand):
    help = "start VERSION_ID: score every new study silently; stop VERSION_ID: stop at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("verb", choices=["start", "stop"])
        parser.add_argument("version_id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        change = (
            ai_actions.start_silent_trial
            if options["verb"] == "start"
            else ai_actions.stop_silent_trial
        )
        try:
            version = change(None, options["version_id"])
        except errors.DomainError as error:
            raise CommandError(error.message) from None
        state = "running" if version.in_silent_trial else "stopped"
        self.stdout.write(self.style.SUCCESS(f"{version}: silent trial {state}."))
