"""scripts/with_servers.py: `make test` brings its own PostgreSQL and Redis where the
configured ones do not answer, and stops them afterwards. The configured URLs here
point at free ports; the shared servers are never touched."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "with_servers.py"
sys.path.insert(0, str(ROOT / "scripts"))
import with_servers  # noqa: E402

#: What the command under test sees: the URLs it was given, and both servers' answers.
PROBE = """
import json, os, psycopg, redis
db, rd = os.environ["TEST_DATABASE_URL"], os.environ["TEST_REDIS_URL"]
with psycopg.connect(db.rsplit("/", 1)[0] + "/postgres") as c:
    pg = c.execute("show port").fetchone()[0]
print(json.dumps({"db": db, "redis": rd, "pg_port": int(pg),
                  "redis_ok": redis.Redis.from_url(rd).ping()}))
"""


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _closed(port: int) -> bool:
    return not with_servers.reachable("127.0.0.1", port, timeout=0.5)


@pytest.mark.slow
def test_unreachable_servers_are_started_for_the_command_and_stopped_after() -> None:
    path = with_servers.search_path(None)
    if not (with_servers.find("initdb", path) and with_servers.find("redis-server", path)):
        pytest.skip("PostgreSQL or Redis server programs not installed (CI installs them)")
    db_port, redis_port = with_servers.free_port(), with_servers.free_port()
    done = _run(
        "--database-url",
        f"postgres://postgres@127.0.0.1:{db_port}/wattlab_probe",
        "--redis-url",
        f"redis://127.0.0.1:{redis_port}/5",
        "--",
        sys.executable,
        "-c",
        PROBE,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    started_pg = int(seen["db"].rsplit(":", 1)[1].split("/")[0])
    started_redis = int(seen["redis"].rsplit(":", 1)[1].split("/")[0])
    assert seen["pg_port"] == started_pg != db_port and seen["db"].endswith("/wattlab_probe")
    assert seen["redis_ok"] and started_redis != redis_port and seen["redis"].endswith("/5")
    assert "started" in done.stderr
    # Stopped afterwards, their folders gone.
    assert _closed(started_pg) and _closed(started_redis)


def test_reachable_servers_are_used_as_configured_and_nothing_is_started() -> None:
    with socket.socket() as db, socket.socket() as rd:
        for listener in (db, rd):
            listener.bind(("127.0.0.1", 0))
            listener.listen()
        db_url = f"postgres://postgres@127.0.0.1:{db.getsockname()[1]}/wattlab"
        redis_url = f"redis://127.0.0.1:{rd.getsockname()[1]}/0"
        done = _run(
            "--database-url",
            db_url,
            "--redis-url",
            redis_url,
            "--search-path",
            "/nonexistent",  # would fail if it tried to start anything
            "--",
            sys.executable,
            "-c",
            "import os; print(os.environ['TEST_DATABASE_URL'], os.environ['TEST_REDIS_URL'])",
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [db_url, redis_url]
    assert done.stderr == ""


def test_without_the_server_programs_it_names_the_packages_and_runs_nothing(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    done = _run(
        "--database-url",
        f"postgres://postgres@127.0.0.1:{with_servers.free_port()}/wattlab",
        "--redis-url",
        f"redis://127.0.0.1:{with_servers.free_port()}/0",
        "--search-path",
        str(tmp_path),
        "--",
        "touch",
        str(marker),
    )
    assert done.returncode == 2
    assert "apt-get install -y postgresql redis-server" in done.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_urls_on_makes_command_line_still_reach_the_throwaway_servers() -> None:
    # `make test TEST_DATABASE_URL=...`: make hands a command-line value down to every
    # sub-make, where it outranked the throwaway server's URL in the environment, and
    # the suite connected to the dead one. `make -n` prints the recipes, but runs the
    # ones that call $(MAKE): with_servers.py starts its servers, the sub-make prints
    # the pytest line with the URL it would use.
    path = with_servers.search_path(None)
    if not (with_servers.find("initdb", path) and with_servers.find("redis-server", path)):
        pytest.skip("PostgreSQL or Redis server programs not installed (CI installs them)")
    dead_db = f"postgres://postgres@127.0.0.1:{with_servers.free_port()}/wattlab_dead"
    dead_redis = f"redis://127.0.0.1:{with_servers.free_port()}/4"
    done = subprocess.run(
        ["make", "-n", "test", f"TEST_DATABASE_URL={dead_db}", f"TEST_REDIS_URL={dead_redis}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    started = re.findall(r": started (\S+)", done.stderr)
    db_url = next(url for url in started if url.startswith("postgres"))
    redis_url = next(url for url in started if url.startswith("redis"))
    # The sub-make's pytest line uses the servers just started, not the dead URLs.
    assert f"DATABASE_URL={db_url} REDIS_URL={redis_url}" in done.stdout, done.stdout
    assert dead_db not in done.stdout.split("--redis-url")[-1]
