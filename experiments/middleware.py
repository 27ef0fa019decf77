"""What every request goes through before a view sees it."""

from __future__ import annotations

from collections.abc import Callable

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, QueryDict

#: Answered by :class:`HealthMiddleware`, never by a view.
HEALTH_PATH = "/health/"


class HealthMiddleware:
    """``GET /health/``: 200 when this server reaches the database, 503 when it does not.

    First in the chain, so nothing else looks at the request: no host check (a
    container's probe asks for 127.0.0.1, which a deployment's DJANGO_ALLOWED_HOSTS need
    not list), no HTTPS redirect, no session, no login. The answer says nothing but
    whether this server can serve pages (which need the database, not the broker).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path != HEALTH_PATH:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = HttpResponse("GET only\n", status=405, content_type="text/plain")
            response["Allow"] = "GET, HEAD"
            return response
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError:
            return HttpResponse("database unavailable\n", status=503, content_type="text/plain")
        return HttpResponse("ok\n", content_type="text/plain")


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
