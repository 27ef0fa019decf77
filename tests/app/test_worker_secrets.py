"""Trainings never see the deployment's secrets (issue 18, point 1), end to end: a real
worker started with DJANGO_SECRET_KEY, DATABASE_URL and REDIS_URL (and a stray cloud
key) in its environment runs a parallel experiment whose foreground and background
trainings write their environment; none of the secrets reached them, while PATH, HOME,
CUDA_VISIBLE_DEVICES, a scheduler's job variable, the workload's own env and the
engine's markers did."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.contract import ENV_GROUP, ENV_MARKER, ENV_ROLE
from experiments import services
from experiments.expfile import parse_experiment_text
from experiments.models import Experiment, Workload
from tests.conftest import ROOT, WorkerProc
from workers.procgroup import find_marked

pytestmark = [pytest.mark.slow, pytest.mark.queue]

SECRET_NAMES = ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "AWS_SECRET_ACCESS_KEY")


def test_a_real_trainings_environment_holds_no_secret_of_the_worker(
    celery_worker_factory: Callable[..., WorkerProc], tmp_path: Path
) -> None:
    out = tmp_path / "environments"
    out.mkdir()
    Workload.objects.create(
        name="env-dump",
        workdir=str(tmp_path),
        argv=["{python}", str(ROOT / "tests" / "workers" / "programs" / "dump_env.py"), str(out)],
        env={"WORKLOAD_OWN": "own-value"},
        hyperparameters=[],
    )
    worker = celery_worker_factory(
        AWS_SECRET_ACCESS_KEY="hunter2", CUDA_VISIBLE_DEVICES="0", SLURM_JOB_ID="4242"
    )
    # What the worker holds: the test settings' key, the test database's URL, and
    # REDIS_URL where the broker is Redis (each name is in its environment).
    held = {name: worker.env.get(name) for name in SECRET_NAMES}
    assert held["DJANGO_SECRET_KEY"] and held["AWS_SECRET_ACCESS_KEY"]
    assert "DATABASE_URL" in worker.env
    spec = parse_experiment_text(
        "name: env\nforeground: {workload: env-dump}\nsleep_between_runs: 0\ntimeout: 60\n"
        "background: {workload: env-dump, restart_delay: 0.2, startup_wait: 1}\n"
    )
    experiment = services.experiment_submit(owner=None, spec=spec, source="cli")

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        experiment.refresh_from_db()
        if experiment.status not in Experiment.ACTIVE_STATUSES:
            break
        time.sleep(0.2)
    assert experiment.status == "succeeded", f"{experiment.error}\n{worker.log()[-3000:]}"
    assert find_marked(str(experiment.code)) == []

    records = {path.name: json.loads(path.read_text()) for path in out.glob("*.json")}
    roles = {name.split("-")[0] for name in records}
    assert roles == {"foreground", "background"}, sorted(records)
    for name, record in records.items():
        env = record["env"]
        leaked = [n for n in SECRET_NAMES if n in env]
        assert not leaked, f"{name} saw {leaked}"
        for secret in (v for v in held.values() if v):
            assert all(secret not in value for value in env.values()), name
        assert not [n for n in env if n.startswith(("WATTLAB_", "DJANGO_", "CELERY_"))
                    and n not in (ENV_MARKER, ENV_ROLE, ENV_GROUP)], name  # fmt: skip
        assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]
        assert "CUDA_VISIBLE_DEVICES" in env and env["SLURM_JOB_ID"] == "4242"
        assert env["WORKLOAD_OWN"] == "own-value"
        assert env[ENV_MARKER] == str(experiment.code) and env[ENV_GROUP]
        assert env[ENV_ROLE] == name.split("-")[0]
