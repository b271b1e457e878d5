"""Headers every page and API answer carries, set in one place so no view can forget them.

- ``Content-Security-Policy``: script, style, images and connections from this origin
  only; no inline script or style attribute, no plugins, no framing. A text a user typed
  (a read's reason, a DICOM header) that escaping missed still cannot run.
- ``Cache-Control: no-store`` unless the view chose otherwise: pages and API answers hold
  patient data, which must not stay in a shared browser's or a proxy's cache.

Static files are answered by WhiteNoise before this middleware and keep their own caching.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.setdefault("Cache-Control", "no-store")
        return response
