"""Run the DICOM node: C-ECHO and C-STORE from the configured peers, until stopped."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from screening.interop.dicom_node import node_from_settings
from screening.management.users import admin_named


class Command(BaseCommand):
    help = (
        "Serve the DICOM node: peers in DICOM_NODE_PEERS (AETITLE@host) send studies by "
        "C-STORE to DICOM_NODE_AE_TITLE on DICOM_NODE_BIND:DICOM_NODE_PORT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=settings.DICOM_NODE_PORT)
        parser.add_argument("--bind", default=settings.DICOM_NODE_BIND)
        parser.add_argument(
            "--as-user",
            default=settings.DICOM_NODE_AS_USER,
            help="Admin the node's uploads are recorded as",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        node = node_from_settings(admin_named(options["as_user"]))
        server = node.start(options["bind"], options["port"])
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        self.stdout.write(
            f"DICOM node {node.ae_title} on {options['bind']}:{options['port']}; "
            f"peers: {', '.join(f'{p.ae_title}@{p.host}' for p in node.peers)}; "
            f"priors from: {node.priors.pacs if node.priors else 'nowhere (PRIORS_PACS unset)'}"
        )
        stopping.wait()
        server.shutdown()
        if node.priors is not None:
            node.priors.shutdown()  # a look-up under way finishes first
