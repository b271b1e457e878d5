"""Confirm the roles an admin gave that wait for a second admin, from the command line.

For an install with a single admin: whoever runs commands on the server is the install-time
authority (as for ``bootstrap_demo`` and ``createsuperuser``); each confirmation is audited as
done from the command line.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from screening import accounts
from screening.models import PendingRole


class Command(BaseCommand):
    help = "Confirm the roles waiting for a second admin on these accounts (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("usernames", nargs="+", help="Accounts whose waiting roles to confirm")

    def handle(self, *args: Any, **options: Any) -> None:
        for username in options["usernames"]:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                raise CommandError(f"No user called {username}.")
            waiting = PendingRole.objects.filter(user=user)
            roles = sorted(waiting.values_list("role", flat=True))
            confirmed, _ = accounts.confirm_roles(None, waiting)
            if confirmed:
                self.stdout.write(f"{username}: {', '.join(roles)} confirmed.")
            else:
                self.stdout.write(f"{username}: no role waits for confirmation.")
