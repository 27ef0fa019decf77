"""When a worker host counts as alive: one rule for the Hosts page (its heartbeat in the
database) and for a container's health probe (a file the host's control worker touches
after each heartbeat the database accepted; ``scripts/healthcheck.py``)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def online_seconds(heartbeat_seconds: float) -> float:
    """A host is online while its last heartbeat is younger than three heartbeat
    periods (30 s at least)."""
    return max(3 * heartbeat_seconds, 30.0)


def liveness_file(var_dir: Path | str, hostname: str) -> Path:
    """One file per host name: workers of several names may share a var folder."""
    return Path(var_dir) / "health" / f"worker-{hostname}"


def mark_alive(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path)


def is_alive(path: Path, heartbeat_seconds: float, now: float | None = None) -> bool:
    """Whether ``path`` was marked within :func:`online_seconds` (wall clock: the
    probe is another process)."""
    try:
        marked = path.stat().st_mtime
    except OSError:
        return False
    now = time.time() if now is None else now
    return now - marked < online_seconds(heartbeat_seconds)
