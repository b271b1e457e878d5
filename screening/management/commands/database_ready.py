"""Makes sure the configured database can be reached before ``scripts/run`` migrates it.

A PostgreSQL server freshly installed has no database of the name ``DATABASE_URL`` gives:
this creates it (as Django's test runner creates its own, through the server's maintenance
database), so the README's one command works there too. Anything else that keeps the
database out of reach ends the run with one line saying what, not a traceback.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connection


class Command(BaseCommand):
    help = "Reach the configured database; create a PostgreSQL database that does not exist yet."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            connection.ensure_connection()
            return
        except OperationalError as error:
            missing = connection.vendor == "postgresql" and "does not exist" in str(error)
            if not missing:
                raise CommandError(
                    f"The database cannot be reached (check DATABASE_URL): {error}"
                ) from None
        name = connection.settings_dict["NAME"]
        try:
            with connection._nodb_cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(name)}")
        except Exception as error:  # noqa: BLE001 (any refusal becomes the one line below)
            raise CommandError(
                f"The database {name} does not exist and could not be created ({error}); "
                "create it (createdb) or name another in DATABASE_URL."
            ) from None
        self.stdout.write(f"Created the database {name}.")
