"""The worker launcher (scripts/worker.py) stops its Celery workers even when the
database does not answer as it stops: it used to end on the database error and leave
them serving the queue without it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import WorkerProc, _database_env
from workers.procgroup import group_members

pytestmark = [pytest.mark.slow, pytest.mark.queue]


def test_a_stop_without_the_database_still_stops_every_worker_of_the_launcher(
    celery_worker_factory: Callable[..., WorkerProc], tmp_path: Path
) -> None:
    if connection.vendor == "postgresql":
        server = _database_env()["DATABASE_URL"].rsplit("/", 1)[0]
        nowhere = {"DATABASE_URL": f"{server}/wattlab_no_such_db"}
    else:
        nowhere = {"DATABASE_URL": "", "WATTLAB_SQLITE_PATH": str(tmp_path / "no" / "db.sqlite3")}
    worker = celery_worker_factory(**nowhere)
    # The launcher leads its own process group: cpu0 (and its pool child) and control.
    group = worker.process.pid
    assert len(group_members(group)) >= 3

    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0, worker.log()[-3000:]

    deadline = time.monotonic() + 10
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = group_members(group)
    assert left == [], f"left running without their launcher: {left}\n{worker.log()[-3000:]}"
    assert "the database does not answer" in worker.log()
