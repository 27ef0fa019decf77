"""The project's own files: README, docker-compose.yml, the demo workload."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import ROOT


def test_the_readme_opens_with_make_run_and_make_test() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split("#")[0].strip() for line in block] == ["make run", "make test"]
    assert text.index("make run") < text.index("## ")


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose client on this machine")

    def config(**env: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
        return subprocess.run(
            [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            env={**base, **env},
        )

    done = config(DJANGO_SECRET_KEY="a-long-random-string-for-the-test-only")
    assert done.returncode == 0, done.stderr
    # No fallback key: without one, compose refuses.
    refused = config()
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY" in refused.stderr


def test_the_compose_file_has_the_team_services() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in text
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert {"web", "worker", "redis", "postgres"} <= set(services)
    assert services["worker"]["runtime"] == "nvidia"
    assert {"postgres-data", "artifacts"} <= set(compose["volumes"])


def _train(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "train.py", *args, "--device", "cpu"],
        cwd=ROOT / "examples" / "digits_mlp",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - started


def test_digits_mlp_trains_with_a_line_per_epoch_and_a_test_accuracy() -> None:
    done, _seconds = _train("--epochs", "3", "--hidden", "64", "--learning-rate", "0.1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(" - ")[0] for line in lines[1:4]] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    accuracy = float(lines[-1].removeprefix("Test Accuracy: ").removesuffix("%"))
    assert 80 < accuracy <= 100  # a real network on real digits learns quickly


def test_digits_mlp_refuses_a_bad_flag_with_a_message() -> None:
    done, _seconds = _train("--epochs", "0")
    assert done.returncode == 2
    assert "--epochs must be at least 1" in done.stderr
