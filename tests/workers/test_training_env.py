"""A training's environment is an allow-list (issue 18, point 1): started with real
child processes, it never sees the worker's secrets, but gets what a training needs,
the workload's own variables and the engine's markers; where the worker is root it
can run as another user."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.contract import ENV_GROUP, ENV_MARKER, ENV_ROLE, ProgramSpec, RunPlan
from tests.workers.conftest import PROGRAMS
from workers.procgroup import ProcessGroup
from workers.training_env import TrainingUser, training_env, training_user_notice

SECRETS = {
    "DJANGO_SECRET_KEY": "not-for-trainings",
    "DATABASE_URL": "postgres://wattlab:hunter2@db:5432/wattlab",
    "REDIS_URL": "redis://:hunter2@redis:6379/0",
    "AWS_SECRET_ACCESS_KEY": "hunter2",
    "HF_TOKEN": "hf_hunter2",
}
NEEDED = {
    "CUDA_VISIBLE_DEVICES": "GPU-1234",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    "SLURM_JOB_ID": "4242",
    "LC_ALL": "C.UTF-8",
    "https_proxy": "http://proxy:3128",
}


def _start_dump(tmp_path: Path, marker: str, **kwargs: object) -> dict:
    out = tmp_path / "env"
    out.mkdir(exist_ok=True)
    os.chmod(out, 0o777)  # the program may run as another user
    group = ProcessGroup.start(
        [sys.executable, str(PROGRAMS / "dump_env.py"), str(out)],
        cwd=tmp_path,
        env={"WORKLOAD_OWN": "own-value"},
        marker=marker,
        role="foreground",
        log_path=tmp_path / "logs" / "out.log",
        **kwargs,  # type: ignore[arg-type]
    )
    assert group.wait_exit(30)
    assert group.stop(grace=5).exit_code == 0, (tmp_path / "logs" / "out.log").read_text()
    return json.loads(next(out.glob("*.json")).read_text())


def test_a_started_training_sees_no_secret_but_what_it_needs(monkeypatch, tmp_path, marker):
    for name, value in {**SECRETS, **NEEDED}.items():
        monkeypatch.setenv(name, value)
    record = _start_dump(tmp_path, marker)
    env = record["env"]
    assert not set(SECRETS) & set(env), sorted(set(SECRETS) & set(env))
    assert not [n for n in env if n.startswith(("WATTLAB_", "DJANGO_", "CELERY_"))
                and n not in (ENV_MARKER, ENV_ROLE, ENV_GROUP)]  # fmt: skip
    for name, value in NEEDED.items():
        assert env[name] == value
    assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]
    assert env["WORKLOAD_OWN"] == "own-value"
    assert env[ENV_MARKER] == marker and env[ENV_ROLE] == "foreground" and env[ENV_GROUP]


def test_the_operator_may_add_names_and_prefixes(monkeypatch):
    source = {"PATH": "/bin", "SITE_LICENSE": "x", "MYLAB_DATA": "/data", "MYLAB_X": "y",
              "OTHER": "z", "WATTLAB_TRAINING_ENV": "SITE_LICENSE, MYLAB_*, *"}  # fmt: skip
    assert training_env(source) == {
        "PATH": "/bin", "SITE_LICENSE": "x", "MYLAB_DATA": "/data", "MYLAB_X": "y"
    }  # fmt: skip


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


#: /usr/bin/python3: the venv's interpreter may sit in a folder only root can enter.
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def as_nobody() -> Iterator[tuple[list[str], Path]]:
    """(argv of dump_env.py that ``nobody`` can run, the open folder it writes to):
    pytest's own temporary folders are root's only."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("no system python3 to run as nobody")
    folder = Path(tempfile.mkdtemp(prefix="wattlab-training-user-"))
    folder.chmod(0o777)
    script = folder / "dump_env.py"
    script.write_text((PROGRAMS / "dump_env.py").read_text())
    script.chmod(0o644)
    yield [SYSTEM_PYTHON, str(script), str(folder)], folder
    shutil.rmtree(folder, ignore_errors=True)


@root_only
def test_as_root_a_training_runs_as_the_training_user_with_its_home(as_nobody, marker):
    nobody = TrainingUser.lookup("nobody")
    argv, open_folder = as_nobody
    group = ProcessGroup.start(
        argv,
        cwd=open_folder,
        env={},
        marker=marker,
        role="foreground",
        log_path=open_folder / "logs" / "out.log",
        user="nobody",
    )
    assert group.wait_exit(30)
    assert group.stop(grace=5).exit_code == 0, (open_folder / "logs" / "out.log").read_text()
    record = json.loads(next(open_folder.glob("*.json")).read_text())
    assert (record["uid"], record["gid"], record["groups"]) == (nobody.uid, nobody.gid, [])
    assert record["env"]["HOME"] == nobody.home and record["env"]["USER"] == "nobody"


def test_a_training_user_that_cannot_be_used_is_named_at_start():
    with pytest.raises(ValueError, match="no user 'no-such-user-wattlab'"):
        training_user_notice("no-such-user-wattlab")
    with pytest.raises(ValueError, match="is root"):
        training_user_notice("root")
    if os.geteuid() == 0:
        assert "WATTLAB_TRAINING_USER" in training_user_notice("")
        assert training_user_notice("nobody") == ""


@root_only
def test_the_runner_runs_foreground_and_background_trainings_as_the_training_user(
    as_nobody, marker, tmp_path
):
    """The background loop stays the worker's (it writes the intervals file and logs in
    folders only the worker may enter); the trainings it starts run as the user."""
    from tests.workers.test_runner import RecordingStore, background, make_plan
    from workers.energy.session import open_meters
    from workers.runner import run_experiment

    argv, open_folder = as_nobody
    spec = ProgramSpec(argv, str(open_folder), user="nobody")
    plan = make_plan(
        marker, tmp_path, [RunPlan(0, 0, {}, spec)], success_pattern=None,
        background=background(tmp_path, [], program=spec, startup_wait=1.0),
    )  # fmt: skip
    meters = open_meters([0], double="synthetic:100", try_perf=False)
    try:
        outcome = run_experiment(plan, RecordingStore(), meters=meters)
    finally:
        meters.close()
    assert outcome.status == "succeeded", outcome.message
    records = [json.loads(p.read_text()) for p in open_folder.glob("*.json")]
    assert {r["env"][ENV_ROLE] for r in records} == {"foreground", "background"}
    nobody = TrainingUser.lookup("nobody")
    assert {(r["uid"], r["env"]["HOME"]) for r in records} == {(nobody.uid, nobody.home)}
