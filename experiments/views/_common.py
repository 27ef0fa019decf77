"""Small helpers shared by the views."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

#: htmx stops polling when a response carries this status.
STOP_POLLING = 286


def render_live(
    request: HttpRequest,
    page: str,
    fragment: str,
    context: dict[str, Any],
    *,
    live: bool,
) -> HttpResponse:
    """One view, two answers: the whole page, or only the fragment for htmx.

    The fragment answers 286 once nothing is live so the poller stops; the page and the
    fragment differ by the HX-Request header, so caches must keep them apart.
    """
    if getattr(request, "htmx", False):
        response = render(request, fragment, context, status=200 if live else STOP_POLLING)
    else:
        response = render(request, page, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def as_attachment(response: HttpResponse, filename: str) -> HttpResponse:
    """The browser saves ``response`` as ``filename`` instead of showing it."""
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
