"""The pages' cache, fail-safe: a cache that errors (its table missing, its database
busy, another backend down) costs a recomputation, never an error page.

The cache is Django's database cache (settings.CACHES says why). On PostgreSQL a failed
statement inside a transaction aborts the whole transaction, so inside an atomic block
each cache call gets its own savepoint; outside one (a page request) it needs none.

A view decorated with ``write_after_response`` keeps what it computed once its response
has been sent: writing a comparison (a few hundred kB, three statements each) took a
tenth of a cold compare, and the reader need not wait for it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)
_local = threading.local()


def get(key: str) -> Any:
    """The cached value, or None when there is none or the cache failed."""
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                return cache.get(key)
        return cache.get(key)
    except Exception as exc:  # any backend's error: the page computes instead
        log.warning("cache read failed (%s: %s); computing instead", type(exc).__name__, exc)
        return None


def _write(key: str, value: Any, timeout: int) -> None:
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                cache.set(key, value, timeout=timeout)
            return
        cache.set(key, value, timeout=timeout)
    except Exception as exc:
        log.warning("cache write failed (%s: %s)", type(exc).__name__, exc)


def put(key: str, value: Any, timeout: int = 600) -> None:
    """Keep the value (after the response, inside a ``write_after_response`` view); a
    cache that fails only means the next request computes again."""
    pending = getattr(_local, "pending", None)
    if pending is not None:
        pending.append((key, value, timeout))
        return
    _write(key, value, timeout)


def write_after_response(
    view: Callable[..., HttpResponse],
) -> Callable[..., HttpResponse]:
    """The view's cache writes run when the server closes its response, after the body
    was sent (WSGI servers call ``close()`` then; Django runs the response's closers
    before its request_finished signal, so the database connection is still open)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        pending: list[tuple[str, Any, int]] = []
        _local.pending = pending
        try:
            response = view(request, *args, **kwargs)
        finally:
            _local.pending = None
        if pending:
            closers = getattr(response, "_resource_closers", None)
            if isinstance(closers, list):
                closers.append(functools.partial(_write_all, pending))
            else:  # not Django's response as known: write now
                _write_all(pending)
        return response

    return wrapped


def _write_all(pending: list[tuple[str, Any, int]]) -> None:
    for key, value, timeout in pending:
        _write(key, value, timeout)
