"""The operations token: what a scraper or an operator's probe presents to see the figures.

One rule for ``/metrics`` and the details of ``/readyz``: a bearer token equal to
``METRICS_TOKEN``. No address is trusted instead: a reverse proxy on the same host makes
every visitor arrive from loopback, and a forwarded header is whatever the client wrote.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest


def presents_ops_token(request: HttpRequest) -> bool:
    """``Authorization: Bearer <METRICS_TOKEN>``; never true while no token is configured."""
    token = settings.METRICS_TOKEN
    if not token:
        return False
    presented = request.headers.get("Authorization", "")
    return hmac.compare_digest(presented.encode(), f"Bearer {token}".encode())
