"""The GPU smoke check (scripts/checks/gpu_smoke.sh) cannot drift from the engine: CI
runs it against the fake NVML library and a synthetic GPU, every step must pass, and it
fails as soon as one of its calls no longer matches the engine's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

STEPS = ["preflight", "environment", "sensors", "power", "share", "runner"]


def _smoke(checkout: Path, out: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    done = subprocess.run(
        ["bash", str(checkout / "scripts" / "checks" / "gpu_smoke.sh"), str(checkout)],
        cwd=checkout,
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "WATTLAB_SMOKE_FAKE": "1",
            "OUT": str(out),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    path = out / "gpu_smoke.json"
    return done, json.loads(path.read_text()) if path.exists() else None


def test_the_smoke_check_passes_every_step_against_the_fake_nvml(tmp_path: Path) -> None:
    done, result = _smoke(ROOT, tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert result["fake"] is True
    statuses = {c["status"] for c in result["checks"]}
    assert "FAIL" not in statuses and "SKIP" not in statuses
    assert [s for s in result["steps"]] == STEPS
    for step in STEPS:
        assert any(c["step"] == step for c in result["checks"]), step
    assert result["elapsed_s"] < 150
    # Raw data, written as it went: the 50 Hz probe, the per-process samples, the
    # burners' counted work, the runner's run.
    raw = tmp_path / "raw"
    assert (raw / "power" / "probe_50hz.csv").read_text().startswith("t,energy_mj,instant_w")
    samples = json.loads((raw / "power" / "process_samples.json").read_text())
    assert samples and samples[0]["samples"]
    assert (raw / "share" / "duty25_A_progress.txt").exists()
    assert json.loads((raw / "runner" / "result_energy.json").read_text())["gpu"]["method"] == (
        "counter"
    )
    shares = result["steps"]["share"]
    assert abs(sum(shares["equal"]["shares"]) - 1) <= 0.05


def _copy(checkout: Path) -> None:
    for part in ("core", "workers", "scripts", "tests/fakes"):
        shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / "tests" / "__init__.py").write_text("")


def test_the_smoke_check_fails_when_one_of_its_calls_no_longer_matches_the_engine(
    tmp_path: Path,
) -> None:
    """In a copy of the code, Measurement.start's keyword ``foreground_group`` becomes
    ``foreground_token`` (the runner follows it): the harness's call is now wrong."""
    checkout = tmp_path / "checkout"
    _copy(checkout)
    for module in ("workers/energy/session.py", "workers/runner.py"):
        path = checkout / module
        original = path.read_text()
        changed = original.replace("foreground_group", "foreground_token")
        assert changed != original
        path.write_text(changed)
    done, result = _smoke(checkout, tmp_path / "out", WATTLAB_SMOKE_SCALE="0.05")
    assert done.returncode == 1, done.stdout[-4000:]
    failed = {c["step"]: c["detail"] for c in result["checks"] if c["status"] == "FAIL"}
    assert "unexpected keyword argument 'foreground_group'" in failed["power"]
    assert "unexpected keyword argument 'foreground_group'" in failed["share"]
    assert "runner" not in failed  # the engine itself still runs
