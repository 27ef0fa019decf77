"""The project's own files: the README, the demo workload (docker-compose.yml:
tests/compose/test_compose_file.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import ROOT


def test_the_readme_opens_with_make_run_and_make_test() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split("#")[0].strip() for line in block] == ["make run", "make test"]
    assert text.index("make run") < text.index("## ")


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
