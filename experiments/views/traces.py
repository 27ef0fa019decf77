"""Reading a run's stored sample trace for the charts."""

from __future__ import annotations

from typing import Any

from core.trace import TraceFormatError, decode_trace, trace_meta


def trace_series(data: bytes) -> dict[str, list[Any]] | None:
    """The decoded channels, or None when there is no trace (imported runs) or it is
    damaged: the page then says so instead of failing."""
    if not data:
        return None
    try:
        return decode_trace(data)
    except (TraceFormatError, ValueError, KeyError):
        return None


def trace_metadata(data: bytes) -> dict[str, Any]:
    if not data:
        return {}
    try:
        return trace_meta(data)
    except (TraceFormatError, ValueError, KeyError):
        return {}
