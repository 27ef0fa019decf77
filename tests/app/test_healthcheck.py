"""scripts/healthcheck.py, the containers' health probes: the worker is healthy while
its control worker marks the host alive (as the Hosts page counts it online), the web
app while /health/ answers 200."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.liveness import is_alive, liveness_file, mark_alive, online_seconds
from tests.conftest import ROOT, WorkerProc

PROBE = [sys.executable, str(ROOT / "scripts" / "healthcheck.py")]


def _probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PROBE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_running_worker_is_healthy_and_a_host_without_one_is_not(
    celery_worker_proc: WorkerProc,
) -> None:
    healthy = _probe("worker", env=celery_worker_proc.env)
    assert healthy.returncode == 0, healthy.stderr
    nobody = _probe("worker", env={**celery_worker_proc.env, "WATTLAB_HOSTNAME": "nobody-here"})
    assert nobody.returncode == 1
    assert "no host heartbeat from nobody-here" in nobody.stderr


def test_a_mark_counts_for_the_hosts_page_online_window(tmp_path: Path) -> None:
    path = liveness_file(tmp_path, "gpu-host-1")
    assert not is_alive(path, 10.0)
    mark_alive(path)
    assert is_alive(path, 10.0)
    assert online_seconds(10.0) == 30.0 and online_seconds(20.0) == 60.0
    stale = time.time() - online_seconds(10.0) - 1
    os.utime(path, (stale, stale))
    assert not is_alive(path, 10.0)
    assert is_alive(path, 20.0)


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.HTTPServer]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_the_web_probe_wants_a_200(server: http.server.HTTPServer) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/health/"
    assert _probe("web", "--url", url).returncode == 0
    _Answer.status = 503
    try:
        refused = _probe("web", "--url", url)
    finally:
        _Answer.status = 200
    assert refused.returncode == 1
    assert "answered 503" in refused.stderr


def test_the_web_probe_fails_where_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = _probe("web", "--url", f"http://127.0.0.1:{port}/health/", "--timeout", "2")
    assert gone.returncode == 1 and "unhealthy" in gone.stderr
