"""The account holder's own page: their roles, and the API token they hold or are offered.

What an admin set in motion for someone else (a role, a token) is confirmed here or, for roles,
by a second admin; nothing on this page grants anything the holder did not already have.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import accounts
from .errors import Conflict
from .http import NO_STORE
from .roles import pending_roles_of, roles_of, signed_in

TEMPLATE = "screening/account.html"


@require_http_methods(["GET", "POST"])
def account(request: HttpRequest) -> HttpResponse:
    user = signed_in(request)
    if request.method == "GET":
        return render(request, TEMPLATE, _summary(user))
    action = request.POST.get("token")
    if action == "confirm":
        try:
            issued = accounts.confirm_token(user)
        except Conflict as error:
            return render(request, TEMPLATE, {**_summary(user), "error": error.message}, status=409)
        response = render(request, TEMPLATE, {**_summary(user), "issued": issued})
        response["Cache-Control"] = NO_STORE
        return response
    if action == "refuse":
        if accounts.refuse_token(user):
            messages.success(request, "The API token offered to you was refused.")
        return redirect("account")
    if action == "revoke":
        if accounts.revoke_token(user, user):
            messages.success(request, "Your API token was revoked: it no longer works.")
        return redirect("account")
    return HttpResponseBadRequest("Say confirm, refuse or revoke.")


def _summary(user: User) -> dict[str, Any]:
    return {
        "roles": sorted(roles_of(user)),
        "pending_roles": pending_roles_of(user),
        "current_token": accounts.current_token(user),
        "offer": accounts.token_offer(user),
    }
