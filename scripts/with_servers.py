"""Run a command against PostgreSQL and Redis, starting throwaway ones where needed.

    python scripts/with_servers.py --database-url URL --redis-url URL -- make pytest

Where a configured server answers, the command gets its URL unchanged. Where it does
not, a server of our own is started on a free port in a temporary folder (PostgreSQL:
``initdb`` + ``pg_ctl``; Redis: ``redis-server``), the command gets its URL instead
(as ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL``, which the Makefile reads), and the
server is stopped and its folder removed afterwards, whatever the command did. Where
the server programs are not installed, it names the Debian packages and stops.

``{database_url}`` and ``{redis_url}`` in the command are replaced by the URLs it
gets: the Makefile hands them to its sub-make as command-line variables, the only
kind that outranks a value given on make's own command line (``make test
TEST_DATABASE_URL=...``), which make passes down to every sub-make and would
otherwise win over the environment set here.

Standard library only: it runs before anything else is known to work.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

#: Debian packages that hold the server programs.
PACKAGES = {"postgresql": "postgresql", "redis": "redis-server"}


def _say(message: str) -> None:
    print(f"with_servers: {message}", file=sys.stderr, flush=True)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def search_path(override: str | None) -> list[str]:
    """Where to look for the server programs: Debian's versioned PostgreSQL folders
    (newest first), then PATH; ``override`` replaces all of it."""
    if override is not None:
        return [p for p in override.split(os.pathsep) if p]

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    return [*debian, *os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/usr/bin"]


def find(program: str, path: list[str]) -> str | None:
    for folder in path:
        candidate = Path(folder) / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _wait_until_reachable(port: int, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not reachable("127.0.0.1", port, timeout=0.5):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer on port {port} within {seconds:g} s")
        time.sleep(0.1)


@contextmanager
def throwaway_postgres(initdb: str, pg_ctl: str, url: str) -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder on a free port; yields its URL."""
    folder = Path(tempfile.mkdtemp(prefix="wattlab-test-postgres-"))
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: the folder goes to the postgres account.
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError("running as root and there is no postgres account") from None
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"]
            + ["-E", "UTF8", "--no-locale", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-l", str(folder / "server.log")]
            + ["-w", "-t", "60", "-o", options, "start"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        parts = urlsplit(url)
        yield urlunsplit(
            (parts.scheme or "postgres", f"postgres@127.0.0.1:{port}", parts.path, "", "")
        )
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                check=False,
                stdout=subprocess.DEVNULL,
            )
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def throwaway_redis(redis_server: str, url: str) -> Iterator[str]:
    """A Redis server without persistence on a free port; yields its URL."""
    folder = Path(tempfile.mkdtemp(prefix="wattlab-test-redis-"))
    port = free_port()
    server = subprocess.Popen(
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_until_reachable(port, "redis-server")
        database = urlsplit(url).path or "/0"
        yield f"redis://127.0.0.1:{port}{database}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument(
        "--search-path",
        help=f"where the server programs are ({os.pathsep}-separated; default: "
        "/usr/lib/postgresql/*/bin, then PATH)",
    )
    parser.add_argument("command", nargs="+", help="what to run, after --")
    args = parser.parse_args(argv)

    db_host, db_port = _host_port(args.database_url, 5432)
    redis_host, redis_port = _host_port(args.redis_url, 6379)
    need_postgres = not reachable(db_host, db_port)
    need_redis = not reachable(redis_host, redis_port)

    path = search_path(args.search_path)
    initdb, pg_ctl = find("initdb", path), find("pg_ctl", path)
    redis_server = find("redis-server", path)
    missing = []
    if need_postgres and not (initdb and pg_ctl):
        _say(f"PostgreSQL is not reachable at {args.database_url} and initdb is not installed")
        missing.append(PACKAGES["postgresql"])
    if need_redis and not redis_server:
        _say(f"Redis is not reachable at {args.redis_url} and redis-server is not installed")
        missing.append(PACKAGES["redis"])
    if missing:
        _say(f"install them with: sudo apt-get install -y {' '.join(missing)}")
        return 2

    _stop_on_sigterm()
    env = dict(os.environ)
    with ExitStack() as stack:
        database_url, redis_url = args.database_url, args.redis_url
        if need_postgres:
            assert initdb and pg_ctl
            database_url = stack.enter_context(throwaway_postgres(initdb, pg_ctl, database_url))
            _say(f"PostgreSQL not reachable at {args.database_url}: started {database_url}")
        if need_redis:
            assert redis_server
            redis_url = stack.enter_context(throwaway_redis(redis_server, redis_url))
            _say(f"Redis not reachable at {args.redis_url}: started {redis_url}")
        env.update(TEST_DATABASE_URL=database_url, TEST_REDIS_URL=redis_url)
        command = [
            arg.replace("{database_url}", database_url).replace("{redis_url}", redis_url)
            for arg in args.command
        ]
        return subprocess.run(command, env=env, check=False).returncode
    return 1  # not reached: ExitStack does not swallow exceptions


if __name__ == "__main__":
    sys.exit(main())
