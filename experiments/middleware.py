"""What every request goes through before a view sees it."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, QueryDict


class QueryStringNulMiddleware:
    """A NUL character in the query string becomes U+FFFD.

    No name, filter or choice contains one, and PostgreSQL refuses it in any query (a
    500 on whatever view passes it to a filter: the list's search box, a workload
    choice, ...); replaced, it simply matches nothing. Form fields are left to the
    forms, whose text fields already refuse NUL with a message beside the field.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.GET.urlencode() or "%00" in request.META.get("QUERY_STRING", ""):
            cleaned = QueryDict(mutable=True)
            for key, values in request.GET.lists():
                cleaned.setlist(
                    key.replace("\x00", "\ufffd"), [v.replace("\x00", "\ufffd") for v in values]
                )
            cleaned._mutable = False
            request.GET = cleaned  # type: ignore[assignment]
        return self.get_response(request)
