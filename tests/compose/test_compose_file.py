"""docker-compose.yml and docker-compose.gpu.yml read as files (fast; with ``make test``):
compose accepts them, and they keep what the deployment needs (compose_rules.py). The
live run is test_compose_deployment.py (``make test-compose``)."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.compose.compose_rules import problems
from tests.compose.dockerhost import compose_client
from tests.compose.standins import debian_mirror
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
GPU = ROOT / "docker-compose.gpu.yml"


def _load() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _config(*files: Path, **env: str) -> subprocess.CompletedProcess[str]:
    client = compose_client()
    if client is None:
        pytest.skip("no docker compose client on this machine")
    argv = [*client]
    for path in files:
        argv += ["-f", str(path)]
    base = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    return subprocess.run(
        [*argv, "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**base, **env},
    )


def test_docker_compose_accepts_the_file_and_refuses_it_without_a_key() -> None:
    done = _config(COMPOSE, DJANGO_SECRET_KEY="a-long-random-string-for-the-test-only")
    assert done.returncode == 0, done.stderr
    refused = _config(COMPOSE)
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY" in refused.stderr


def test_the_compose_file_keeps_the_deployment_together() -> None:
    text = COMPOSE.read_text()
    assert "change-me" not in text
    assert problems(_load()) == []


def _drop_worker_artifacts(c: dict[str, Any]) -> None:
    c["services"]["worker"]["volumes"] = ["scratch:/data/scratch"]


def _worker_without_queues(c: dict[str, Any]) -> None:
    c["services"]["worker"]["command"] = ["celery", "-A", "webapp", "worker"]


def _worker_with_other_queues(c: dict[str, Any]) -> None:
    c["services"]["worker"]["command"] = "celery -A webapp worker -Q gpu.somewhere"


def _worker_with_its_own_prefix(c: dict[str, Any]) -> None:
    c["services"]["worker"]["environment"]["WATTLAB_QUEUE_PREFIX"] = "mine."


def _worker_needs_the_nvidia_runtime(c: dict[str, Any]) -> None:
    c["services"]["worker"]["runtime"] = "nvidia"


def _web_without_health_check(c: dict[str, Any]) -> None:
    del c["services"]["web"]["healthcheck"]


def _reaper_does_not_wait_for_redis(c: dict[str, Any]) -> None:
    del c["services"]["reaper"]["depends_on"]["redis"]


def _web_does_not_wait_for_migrations(c: dict[str, Any]) -> None:
    del c["services"]["web"]["depends_on"]["migrate"]


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        (_drop_worker_artifacts, "artifacts volume is not shared"),
        (_worker_without_queues, "does not listen on 'gpu'"),
        (_worker_with_other_queues, "does not listen on 'gpu'"),
        (_worker_with_its_own_prefix, "WATTLAB_QUEUE_PREFIX differs"),
        (_worker_needs_the_nvidia_runtime, "GPU runtime"),
        (_web_without_health_check, "web has no health check"),
        (_reaper_does_not_wait_for_redis, "reaper does not wait for Redis"),
        (_web_does_not_wait_for_migrations, "web may start before the migrations"),
    ],
)
def test_a_compose_file_that_breaks_the_deployment_is_named(
    breakage: Callable[[dict[str, Any]], None], named: str
) -> None:
    broken = copy.deepcopy(_load())
    breakage(broken)
    found = problems(broken)
    assert any(named in problem for problem in found), found


def test_the_gpu_override_gives_the_worker_the_gpus_and_the_host_pids() -> None:
    done = _config(COMPOSE, GPU, DJANGO_SECRET_KEY="a-long-random-string-for-the-test-only")
    assert done.returncode == 0, done.stderr
    merged = yaml.safe_load(done.stdout)
    worker = merged["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert worker["pid"] == "host"
    # Apart from the GPU, the merged file is the same deployment.
    others = [p for p in problems(merged) if "GPU runtime" not in p]
    assert others == []


def test_the_debian_mirror_comes_from_either_apt_sources_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATTLAB_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64] http://one-line.example/debian bookworm-updates main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] http://one-line.example/debian bookworm main\n"
    )
    assert debian_mirror(tmp_path) == "http://one-line.example/debian"
