"""The worker launcher (scripts/worker.py) stops its Celery workers even when the
database does not answer as it stops: it used to end on the database error and leave
them serving the queue without it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from django.db import connection

from tests.conftest import WorkerProc

pytestmark = [pytest.mark.slow, pytest.mark.queue]


def _session(pid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == pid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            pass
    return found


def test_a_stop_without_the_database_still_stops_every_worker_of_the_launcher(
    celery_worker_factory: Callable[..., WorkerProc], tmp_path: Path
) -> None:
    if connection.vendor == "postgresql":
        conf = connection.settings_dict
        nowhere = {
            "DATABASE_URL": f"postgres://{conf.get('USER') or 'postgres'}@"
            f"{conf.get('HOST') or '127.0.0.1'}:{conf.get('PORT') or 5432}/wattlab_no_such_db"
        }
    else:
        nowhere = {"DATABASE_URL": "", "WATTLAB_SQLITE_PATH": str(tmp_path / "no" / "db.sqlite3")}
    worker = celery_worker_factory(**nowhere)
    assert len(_session(worker.process.pid)) >= 3  # the launcher, cpu0 (+ its child), control

    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0, worker.log()[-3000:]

    deadline = time.monotonic() + 10
    while _session(worker.process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [" ".join(p.cmdline())[:120] for p in _session(worker.process.pid)]
    assert left == [], f"left running without their launcher: {left}\n{worker.log()[-3000:]}"
    assert "the database does not answer" in worker.log()
