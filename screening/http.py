"""Refusal pages that keep the site's layout, so a refused reader still has navigation."""

from __future__ import annotations

from http import HTTPStatus

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def conflict_page(
    request: HttpRequest,
    message: str,
    back_url: str,
    back_label: str,
    title: str = "Not saved",
) -> HttpResponse:
    """A 409 page for a write refused because the record changed under the user.

    The status tells clients and tests that nothing was saved, while the page explains why
    and offers one way back, instead of a bare error or a silent redirect.
    """
    context = {"title": title, "message": message, "back_url": back_url, "back_label": back_label}
    return render(request, "409.html", context, status=HTTPStatus.CONFLICT)
