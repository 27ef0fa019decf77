"""The pages' cache, fail-safe: a cache that errors (its table missing, its database
busy, another backend down) costs a recomputation, never an error page.

The cache is Django's database cache (settings.CACHES says why). On PostgreSQL a failed
statement inside a transaction aborts the whole transaction, so inside an atomic block
each cache call gets its own savepoint; outside one (a page request) it needs none.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction

log = logging.getLogger(__name__)


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


def put(key: str, value: Any, timeout: int = 600) -> None:
    """Keep the value; a cache that fails only means the next request computes again."""
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                cache.set(key, value, timeout=timeout)
            return
        cache.set(key, value, timeout=timeout)
    except Exception as exc:
        log.warning("cache write failed (%s: %s)", type(exc).__name__, exc)
