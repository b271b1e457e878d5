"""Django's admin site, refusing signed-in people without an admin role with the app's own
403 page instead of its sign-in form (which reads as if signing in again would help)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

View = TypeVar("View", bound=Callable[..., HttpResponseBase])
NOT_AN_ADMIN = "The admin site is for administrators; your role does not open it."


class PortalAdminSite(AdminSite):
    def admin_view(self, view: View, cacheable: bool = False) -> View:
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def gate(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            self._refuse_signed_in_non_admin(request)
            return inner(request, *args, **kwargs)

        return cast(View, gate)

    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        self._refuse_signed_in_non_admin(request)
        return super().login(request, extra_context)

    def _refuse_signed_in_non_admin(self, request: HttpRequest) -> None:
        if request.user.is_authenticated and not self.has_permission(request):
            raise PermissionDenied(NOT_AN_ADMIN)


class PortalAdminConfig(AdminConfig):
    default_site = "screening.admin_site.PortalAdminSite"
