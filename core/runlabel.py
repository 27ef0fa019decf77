"""How a run is named to people, the same everywhere (pages, URLs, CSV, JSON, API, the
command line and the engine's messages): ``configuration.repeat.attempt``, each
counted from 1. Run "2.3.1" is the third repeat of the second configuration, first
attempt.

The rows keep what the engine numbers from 0 (``config_index``, ``repeat_index``:
positions in the plan) and the attempt as it was made (from 1; runs imported from the
earlier profiler carry 0, "not recorded", and were their configuration's one attempt,
so they read as attempt 1). Only this module turns one into the other.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: What a label looks like (a URL converter's regex uses it too).
PATTERN = r"[0-9]{1,10}\.[0-9]{1,10}\.[0-9]{1,10}"
_LABEL = re.compile(rf"^{PATTERN}$")
#: The largest stored number (PostgreSQL's integer): a larger one names no run.
MAX_STORED = 2**31 - 1


class RunIndex(NamedTuple):
    """A run's key as stored: configuration and repeat from 0, attempt from 1."""

    config_index: int
    repeat_index: int
    attempt: int


def run_label(config_index: int, repeat_index: int, attempt: int) -> str:
    """The stored key as people read it: every part counted from 1."""
    return f"{config_index + 1}.{repeat_index + 1}.{max(attempt, 1)}"


def label_of(run: object) -> str:
    """``run_label`` of anything with the three stored fields (a Run row, a plan)."""
    return run_label(
        int(getattr(run, "config_index")),  # noqa: B009 - any object with these fields
        int(getattr(run, "repeat_index")),  # noqa: B009
        int(getattr(run, "attempt", 1) or 1),
    )


def parse_run_label(text: str) -> RunIndex | None:
    """The stored key a label names, or None where the text is not a label (a part of 0,
    or a number past what is stored, names no run)."""
    if not _LABEL.match(text):
        return None
    config, repeat, attempt = (int(part) for part in text.split("."))
    if min(config, repeat, attempt) < 1 or max(config, repeat, attempt) > MAX_STORED:
        return None
    return RunIndex(config - 1, repeat - 1, attempt)


def stored_attempts(attempt: int) -> tuple[int, ...]:
    """The stored attempt numbers a label's attempt matches: attempt 1 is also an
    imported run's 0 ("not recorded")."""
    return (0, 1) if attempt == 1 else (attempt,)
