"""Which ``SITE-…`` code the drift page shows for a site's name (its InstitutionName, or
StationName where the header has none).

The names themselves are never stored, so whoever runs the server, who knows the sites'
names and holds the de-identification key, is the one who can tell the codes apart.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from screening.imaging.dicom import site_code


class Command(BaseCommand):
    help = "Print the drift page's site code for each InstitutionName or StationName given."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="+", help="InstitutionName (or StationName) values")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in options["names"]:
            self.stdout.write(f"{site_code(' '.join(name.split()))}\t{name}")
