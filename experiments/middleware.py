"""Requests that no view should see."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest


class RejectNulMiddleware:
    """A NUL character in a query string or form field is refused with a 400.

    No name, filter or choice contains one, and PostgreSQL refuses it in any query
    (a 500 on whatever view passes it to a filter: the list's search box, a workload
    choice, ...). Uploaded files are not form fields and are left to their parser.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for data in (request.GET, request.POST):
            for key, values in data.lists():
                if "\x00" in key or any("\x00" in value for value in values):
                    return HttpResponseBadRequest(
                        "NUL characters are not allowed in a request's fields.",
                        content_type="text/plain; charset=utf-8",
                    )
        return self.get_response(request)
