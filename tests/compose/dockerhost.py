"""Docker on this machine for the compose test: the daemon (started when it is not
running), the compose client (``docker compose``, else ``docker-compose``) and one way to
run their commands.

The daemon and debootstrap need root: as another user the commands go through sudo.
A daemon this module starts keeps running after the test, with its image cache, so the
next run on the same machine builds nothing it built before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

#: Why a command failed, with what it printed, for the test's message.
OUTPUT_LIMIT = 6000


class DockerError(RuntimeError):
    pass


def privileged(argv: Sequence[str]) -> list[str]:
    """``argv`` as root: itself when this is root, else through ``sudo -n``."""
    if os.geteuid() == 0:
        return list(argv)
    if not shutil.which("sudo"):
        raise DockerError(f"{argv[0]} needs root, and there is no sudo here")
    return ["sudo", "-n", *argv]


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    check: bool = True,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a docker/compose/debootstrap command (as root, see :func:`privileged`) and
    return it; with ``check``, a failure raises DockerError naming the command and the
    end of what it printed."""
    full = privileged(argv)
    try:
        done = subprocess.run(
            full,
            capture_output=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise DockerError(f"{' '.join(argv)} took longer than {timeout:.0f} s") from exc
    if check and done.returncode != 0:
        raise DockerError(f"{' '.join(argv)} exited {done.returncode}:\n{describe_output(done)}")
    return done


def describe_output(done: subprocess.CompletedProcess[bytes]) -> str:
    text = (done.stdout + b"\n" + done.stderr).decode("utf-8", errors="replace").strip()
    return text[-OUTPUT_LIMIT:]


def daemon_answers() -> bool:
    if not shutil.which("docker"):
        return False
    return (
        run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30, check=False
        ).returncode
        == 0
    )


def ensure_daemon(log_path: Path, timeout: float = 60.0) -> bool:
    """Start ``dockerd`` when no daemon answers; True if this call started it."""
    if daemon_answers():
        return False
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(dockerd).exists():
        raise DockerError("no Docker daemon answers and dockerd is not installed (docker.io)")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        # Its own session: it outlives this test (and keeps its image cache warm).
        subprocess.Popen(  # noqa: S603 (a fixed argv)
            privileged([dockerd]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon_answers():
            return True
        time.sleep(0.5)
    raise DockerError(f"dockerd did not answer within {timeout:.0f} s (see {log_path})")


def compose_client() -> list[str] | None:
    """``docker compose`` (v2) where the plugin is installed, else ``docker-compose``
    (v1, Debian's package), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def image_exists(tag: str) -> bool:
    return run(["docker", "image", "inspect", tag], timeout=30, check=False).returncode == 0
