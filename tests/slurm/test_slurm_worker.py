"""The long-lived worker template (``scripts/slurm/wattlab-worker.sbatch``) on a real
Slurm cluster: it serves experiments from the queue for as long as its job lasts,
tags their runs with the job, drains on the time-limit signal and gives the
allocation back once idle."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from experiments import services
from experiments.expfile import parse_experiment_text
from experiments.models import Experiment, Run
from tests.conftest import ROOT
from tests.slurm.conftest import Dispatcher
from workers.procgroup import find_marked

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.queue]

TEMPLATE = ROOT / "scripts" / "slurm" / "wattlab-worker.sbatch"


def _start_worker(
    dispatcher: Dispatcher, tmp_path: Path, idle: float, ready: bool = True
) -> tuple[str, str, Path]:
    """sbatch the template as a user would; (job id, worker host name, its output)."""
    hostname = f"slurmworker-{uuid.uuid4().hex[:6]}"
    output = tmp_path / "worker-%j.out"
    env = dict(
        dispatcher.cli.env,
        WATTLAB_ROOT=str(ROOT),
        WATTLAB_HOSTNAME=hostname,
        WATTLAB_IDLE_TIMEOUT=str(idle),
    )
    done = subprocess.run(
        [dispatcher.cli.program("sbatch"), "--parsable", f"--output={output}", str(TEMPLATE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    log = Path(str(output).replace("%j", job_id))
    if not ready:
        return job_id, hostname, log
    deadline = time.monotonic() + 90
    wanted = [f"cpu0@{hostname} ready.", f"control@{hostname} ready."]
    while not all(w in _read(log) for w in wanted):
        ended = _job_state(dispatcher, job_id) not in {"PENDING", "RUNNING", ""}
        assert time.monotonic() < deadline and not ended, f"no worker:\n{_read(log)[-3000:]}"
        time.sleep(0.2)
    return job_id, hostname, log


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _job_state(dispatcher: Dispatcher, job_id: str) -> str:
    state = dispatcher.cli.states([job_id]).get(job_id)
    return state.state if state else ""


def _wait(predicate: object, seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{_read(log)[-3000:]}"
        time.sleep(0.2)


def test_an_idle_worker_gives_its_allocation_back(dispatcher: Dispatcher, tmp_path: Path) -> None:
    job_id, hostname, log = _start_worker(dispatcher, tmp_path, idle=2, ready=False)
    _wait(lambda: _job_state(dispatcher, job_id) == "COMPLETED", 60, "the idle worker's end", log)
    assert f"wattlab worker on {hostname}: idle 2 s, stopping" in _read(log)


def test_a_worker_in_a_job_serves_the_queue_tags_its_runs_and_drains_on_the_signal(
    digits_workload: object, dispatcher: Dispatcher, tmp_path: Path
) -> None:
    job_id, hostname, log = _start_worker(dispatcher, tmp_path, idle=600)
    node = dispatcher.cluster.node

    def submit(text: str) -> Experiment:
        spec = parse_experiment_text(text + f"target: {hostname}\n")
        return services.experiment_submit(owner=None, spec=spec, source="cli")

    quick = submit(
        "name: served\nforeground:\n  workload: digits-mlp\n"
        "  hyperparameters: {epochs: 20, hidden: 64}\ntimeout: 120\n"
    )
    _wait(lambda: not Experiment.objects.get(id=quick.id).is_active, 90, "the experiment", log)
    quick.refresh_from_db()
    assert quick.status == Experiment.Status.SUCCEEDED, _read(log)[-3000:]
    assert quick.slurm_display == f"job {job_id} on {node}"
    (run,) = Run.objects.filter(experiment=quick)
    assert run.slurm["job_id"] == job_id and run.slurm["node"] == node
    assert run.slurm["cluster"] == dispatcher.cluster.name

    long = submit(
        "name: drained\nforeground:\n  workload: digits-mlp\n"
        "  hyperparameters: {epochs: 1000, hidden: 1024}\ntimeout: 600\n"
    )
    _wait(
        lambda: Run.objects.filter(experiment=long, status=Run.Status.RUNNING).exists(),
        60,
        "the long run to start",
        log,
    )
    # What Slurm's --signal=B:USR1@300 does 300 s before the job's time limit.
    signal = dispatcher.cluster.client("scancel", "--batch", "--signal=USR1", job_id)
    assert signal.returncode == 0, signal.stderr
    _wait(lambda: not Experiment.objects.get(id=long.id).is_active, 60, "the drain", log)
    _wait(lambda: _job_state(dispatcher, job_id) == "COMPLETED", 60, "the job's end", log)

    long.refresh_from_db()
    assert long.status == Experiment.Status.CANCELLED
    assert [e["message"] for e in long.events if e["kind"] == "worker_stopped"] == [
        f"stopped: the Slurm job {job_id} of its worker reaches its time limit"
    ]
    assert find_marked(str(long.code)) == []
