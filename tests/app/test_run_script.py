"""``make run`` (scripts/run.py) with no server at all: it starts the web app and a
worker, submits the demo, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, demo_pair
from workers.procgroup import find_marked

pytestmark = [pytest.mark.slow, pytest.mark.single_machine]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_all(process: subprocess.Popen[bytes]) -> None:
    """A test that failed midway: run.py and what it started in sessions of their own
    (killing run.py alone would leave the web app and the worker running)."""
    if process.poll() is not None:
        return
    for child in _descendants(process.pid):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    process.kill()
    process.wait()


def _start_run(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, int]:
    port = _free_port()
    # A new user's machine: no servers and no DJANGO_SECRET_KEY (run.py makes one).
    unset = {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        DJANGO_SETTINGS_MODULE="webapp.settings",
        WATTLAB_VAR_DIR=str(tmp_path),
        WATTLAB_SQLITE_PATH=str(tmp_path / "run.sqlite3"),
        WATTLAB_HOSTNAME=f"runhost-{port}",
        WATTLAB_HEARTBEAT_SECONDS="1",
        WATTLAB_GRACE_SECONDS="3",
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run.py"), "--port", str(port), *args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, log_path, port


def test_make_run_serves_the_demo_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    process, log_path, port = _start_run(tmp_path)
    try:
        deadline = time.monotonic() + 120
        while "Ctrl-C stops everything" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
        text = log_path.read_text()
        assert f"http://127.0.0.1:{port}/" in text
        login = re.search(r"Log in as 'demo' with password '([^']+)'", text)
        assert login is not None
        # The parallel demo and the solo one with the same configurations, parallel first.
        submitted = re.findall(r"Submitted (\S+): experiment ([0-9a-f-]{36})", text)
        assert [name for name, _code in submitted] == ["demo-parallel.yaml", "demo-solo.yaml"]
        # They pair by construction: the same draw from the same file settings.
        assert "digits-mlp: solo and parallel run the same 2 configurations." in text
        code = submitted[0][1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=10) as r:
            assert r.status == 200
        # Wait until the demo's trainings run, so Ctrl-C has something to stop.
        deadline = time.monotonic() + 90
        while len(find_marked(code)) < 2:
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
        children = _descendants(process.pid)
        assert children

        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)

        assert process.returncode == 0
        time.sleep(0.5)
        assert [c.pid for c in children if c.is_running() and c.status() != "zombie"] == []
        assert find_marked(code) == []
    finally:
        _kill_all(process)


#: What `make run` prints up to the demo's end, README's figure: 14 lines, and make's
#: own echo of the command before them, fit a 24-line terminal.
SCREEN_LINES = 14


def test_make_run_says_when_parallel_and_solo_can_be_compared(tmp_path: Path) -> None:
    parallel, solo = demo_pair(
        "tiny", epochs=2, hidden=32, background_epochs=20, background_hidden=32
    )
    (tmp_path / "p.yaml").write_text(parallel)
    (tmp_path / "s.yaml").write_text(solo)
    process, log_path, port = _start_run(
        tmp_path, "--experiment", str(tmp_path / "p.yaml"), "--experiment", str(tmp_path / "s.yaml")
    )
    try:
        deadline = time.monotonic() + 240
        while "The demo finished" not in (text := log_path.read_text(errors="replace")):
            assert process.poll() is None, text[-3000:]
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.5)
        text = log_path.read_text()
        # One screen up to the demo's end (README: make's own line and these), ending
        # with the Compare link and the login; Celery's banners and warnings and every
        # request the web app answered went to the logs.
        lines = text.rstrip("\n").splitlines()
        assert len(lines) <= SCREEN_LINES, text
        assert lines[-2].startswith("  Parallel against solo: ")
        assert re.fullmatch(r"  Log in as 'demo' with password '[^']+'", lines[-1])
        assert "celery" not in text.lower() and "GET /" not in text and "W040" not in text
        logs = tmp_path / "log"
        assert "wattlab worker on" in (logs / "worker.log").read_text()
        assert "GET /" in (logs / "web.log").read_text()
        line = re.search(r"The demo finished after (\d+) s since `make run` started \((.*)\)", text)
        assert line is not None
        assert sorted(line.group(2).split(", ")) == [
            "tiny-parallel succeeded",
            "tiny-solo succeeded",
        ]
        assert (
            f"Parallel against solo: http://127.0.0.1:{port}/compare/?workload=digits-mlp" in text
        )
        assert "No hostname was supplied" not in text  # kombu's line, on any command
        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)
        assert process.returncode == 0
    finally:
        _kill_all(process)


def test_only_errors_from_the_logs_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import run  # noqa: E402 - the script, by its path

    web, worker = tmp_path / "web.log", tmp_path / "worker.log"
    web.write_text(
        '[03/Dec/2026 09:24:36] "GET /static/wattlab.css HTTP/1.1" 200 5012\n'
        "Internal Server Error: /compare/\n"
        '[03/Dec/2026 09:24:37] "GET /compare/?workload=x HTTP/1.1" 500 145\n'
    )
    worker.write_text(
        " -------------- cpu0@vm v5.7.0 (collider)\n"
        "[2026-12-03 09:22:54,894: INFO/MainProcess] Connected to filesystem://\n"
        "[2026-12-03 09:23:01,002: ERROR/ForkPoolWorker-1] Task run_experiment raised\n"
        "half a line"
    )
    watch = run._ErrorWatch({"web": web, "worker": worker})
    watch.check()
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "  [web] Internal Server Error: /compare/",
        '  [web] [03/Dec/2026 09:24:37] "GET /compare/?workload=x HTTP/1.1" 500 145',
        "  [worker] [2026-12-03 09:23:01,002: ERROR/ForkPoolWorker-1] Task run_experiment raised",
    ]
    with worker.open("a") as fh:
        fh.write(" ERROR: the rest of it\n")  # the half line, completed, is read once
    watch.check()
    assert capsys.readouterr().out == "  [worker] half a line ERROR: the rest of it\n"
