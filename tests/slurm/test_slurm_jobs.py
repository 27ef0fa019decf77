"""Experiments with ``target: slurm`` on a real one-node Slurm cluster: submitted by
the dispatcher with ``sbatch``, run by a Wattlab worker inside the job, followed with
``squeue``, cancelled with ``scancel``; and the ways a job fails (its time limit, a
``scancel`` from outside, a partition that does not exist, an account the partition
does not take, no ``sbatch`` at all)."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from experiments import services
from experiments.expfile import parse_experiment_text
from experiments.models import Experiment, ProcessGroup, Run
from tests.conftest import ROOT
from tests.slurm.conftest import Dispatcher
from workers.procgroup import find_marked

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

QUICK = """
name: quick-on-slurm
foreground:
  workload: digits-mlp
  hyperparameters: {epochs: 20, hidden: 64}
runs_per_config: 2
sleep_between_runs: 0.2
timeout: 120
target: slurm
"""

#: Runs for minutes unless stopped (a training that sleeps).
LONG = """
name: long-on-slurm
foreground:
  workload: pretend
  hyperparameters: {seconds: 600}
timeout: 900
target: slurm
"""


def _submit(text: str) -> Experiment:
    return services.experiment_submit(owner=None, spec=parse_experiment_text(text), source="cli")


def _fresh(experiment: Experiment) -> Experiment:
    experiment.refresh_from_db()
    return experiment


def _ended(experiment: Experiment) -> bool:
    return not _fresh(experiment).is_active


def _running_a_run(experiment: Experiment) -> bool:
    return Run.objects.filter(experiment=experiment, status=Run.Status.RUNNING).exists()


def _no_process_left(experiment: Experiment, seconds: float = 10.0) -> bool:
    """Nothing carries the experiment's marker on the node (this machine), and every
    process group it recorded has ended: no orphan is left to the admin."""
    deadline = time.monotonic() + seconds
    while find_marked(str(experiment.code)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return not ProcessGroup.objects.filter(experiment=experiment, ended_at__isnull=True).exists()


@pytest.mark.backends
def test_a_solo_experiment_runs_in_a_slurm_job_and_its_runs_carry_the_job(
    digits_workload: object, submitter: object, dispatcher: Dispatcher, tmp_path: Path
) -> None:
    """Submitted with ``manage.py submit --json``, which waits and prints the JSON."""
    path = tmp_path / "quick.yaml"
    path.write_text(QUICK.replace("target: slurm", "target: slurm:debug"))
    submit = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "submit", str(path), "--json"],
        cwd=ROOT,
        env=dict(dispatcher.cli.env, WATTLAB_SLURM_ENABLED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A submission the command refused ends it at once: say why, not "timed out".
        dispatcher.until(
            lambda: Experiment.objects.exists() or submit.poll() is not None, 60, "the submission"
        )
        assert Experiment.objects.exists(), submit.communicate()[1][-2000:]
        experiment = Experiment.objects.get()
        assert experiment.status == Experiment.Status.QUEUED
        assert experiment.dispatched_at is None  # no Celery message: Slurm runs it
        dispatcher.until(lambda: _ended(experiment), 120, "the experiment to end")
        out, err = submit.communicate(timeout=60)
    finally:
        if submit.poll() is None:
            submit.kill()
    dispatcher.until(lambda: _fresh(experiment).slurm_state == "COMPLETED", 20, "COMPLETED")

    assert experiment.status == Experiment.Status.SUCCEEDED, dispatcher
    assert experiment.slurm_job_id.isdigit()
    assert submit.returncode == 0, err
    doc = json.loads(out)
    assert doc["status"] == "succeeded"
    assert doc["slurm_job_id"] == experiment.slurm_job_id
    assert doc["slurm_state"] in {"RUNNING", "COMPLETED"}  # as last read when it ended
    cluster = dispatcher.cluster
    assert experiment.host is not None and experiment.host.hostname == cluster.node
    runs = list(Run.objects.filter(experiment=experiment))
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    job = {
        "cluster": cluster.name,
        "job_id": experiment.slurm_job_id,
        "partition": "debug",
        "account": "",
        "node": cluster.node,
        "gpus": "",
    }
    assert [run["slurm"] for run in doc["runs"]] == [job, job]
    assert all(run.slurm == job for run in runs)
    assert _no_process_left(experiment)


PARALLEL = (
    QUICK.replace("name: quick-on-slurm", "name: parallel-on-slurm")
    + """
background:
  workload: digits-mlp
  hyperparameters: {epochs: 60, hidden: 128, seed: 1}
  restart_delay: 0.1
  startup_wait: 0.5
"""
)


def test_a_parallel_experiment_runs_with_its_background_in_the_same_job(
    digits_workload: object, dispatcher: Dispatcher, tmp_path: Path
) -> None:
    """Through the real command, ``manage.py slurm_dispatch --loop``."""
    experiment = _submit(PARALLEL)
    env = dict(dispatcher.cli.env, WATTLAB_SLURM_ENABLED="1")
    env["WATTLAB_SLURM_LOG_DIR"] = str(dispatcher.log_dir)
    env["WATTLAB_SLURM_SIGNAL_LEAD_SECONDS"] = "0"
    log_path = tmp_path / "dispatch.log"
    with log_path.open("wb") as log_file:
        command = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "slurm_dispatch", "--loop"]
            + ["--interval", "0.3"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 150
        while _fresh(experiment).is_active or experiment.slurm_state != "COMPLETED":
            assert time.monotonic() < deadline, f"{log_path.read_text()}\n{dispatcher}"
            assert command.poll() is None, log_path.read_text()
            time.sleep(0.3)
    finally:
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=20) == 0, log_path.read_text()

    assert experiment.status == Experiment.Status.SUCCEEDED, dispatcher
    assert f"submitted as Slurm job {experiment.slurm_job_id}" in log_path.read_text()
    runs = list(Run.objects.filter(experiment=experiment))
    assert len(runs) == 2
    for run in runs:
        assert run.status == Run.Status.SUCCEEDED
        assert run.coverage_percent is not None and run.coverage_background_runs
        assert run.slurm["job_id"] == experiment.slurm_job_id
    assert experiment.background_runs.count() >= 1
    assert _no_process_left(experiment)


def _blocker(dispatcher: Dispatcher) -> str:
    """A job holding the whole node, so the next one waits for resources."""
    done = dispatcher.cluster.client(
        "sbatch", "--parsable", "--exclusive", "--job-name=blocker", "--output=/dev/null",
        "--wrap=sleep 300",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_cancel_while_the_job_is_pending_cancels_the_job(
    digits_workload: object, dispatcher: Dispatcher
) -> None:
    blocker = _blocker(dispatcher)
    try:
        experiment = _submit(QUICK)
        dispatcher.until(
            lambda: (
                _fresh(experiment).slurm_state == "PENDING"
                and experiment.slurm_reason in {"Resources", "Priority"}
            ),
            30,
            "the job to wait for resources",
        )
        assert experiment.slurm_display.startswith(f"job {experiment.slurm_job_id} pending: ")
        assert experiment.status == Experiment.Status.QUEUED

        assert services.experiment_cancel(experiment=experiment, by=None)
        dispatcher.until(lambda: _fresh(experiment).slurm_state == "CANCELLED", 30, "scancel")
    finally:
        dispatcher.cli.cancel([blocker])

    assert experiment.status == Experiment.Status.CANCELLED
    assert not Run.objects.filter(experiment=experiment).exists()
    assert "scancel of Slurm job" in str(dispatcher)


def test_cancel_while_the_job_runs_cancels_the_job_and_leaves_no_process(
    pretend_workload: object, dispatcher: Dispatcher
) -> None:
    experiment = _submit(LONG)
    dispatcher.until(lambda: _running_a_run(experiment), 90, "the training to start")
    assert _fresh(experiment).slurm_display == f"job {experiment.slurm_job_id} running on " + (
        dispatcher.cluster.node
    )
    assert find_marked(str(experiment.code))  # the training runs on this (the only) node

    services.experiment_cancel(experiment=experiment, by=None)
    dispatcher.until(lambda: _ended(experiment), 30, "the experiment to stop")
    dispatcher.until(lambda: _fresh(experiment).slurm_state == "CANCELLED", 30, "the job's end")

    assert experiment.status == Experiment.Status.CANCELLED, dispatcher
    assert experiment.error == "cancelled on request"
    assert Run.objects.get(experiment=experiment).status == Run.Status.CANCELLED
    assert _no_process_left(experiment)


def test_the_worker_stops_cleanly_before_the_jobs_time_limit(
    pretend_workload: object, dispatcher: Dispatcher, slurm_settings: Any
) -> None:
    """A one-minute job (Slurm's least) whose --signal comes 40 s ahead: Slurm sends
    SIGUSR1 at its first 30 s tick past 20 s into the job, and the worker stops the
    experiment there (at once, if a busy machine started it later than that)."""
    slurm_settings.WATTLAB_SLURM_SIGNAL_LEAD_SECONDS = 40
    experiment = _submit(LONG + "slurm: {time_limit: 1}\n")
    dispatcher.until(lambda: _ended(experiment), 90, "the stop ahead of the time limit")
    dispatcher.until(lambda: _fresh(experiment).slurm_state == "COMPLETED", 20, "the job's end")

    assert experiment.status == Experiment.Status.FAILED, dispatcher
    assert experiment.error.startswith("stopped before the Slurm job's time limit"), dispatcher
    for run in Run.objects.filter(experiment=experiment):
        assert run.status == Run.Status.CANCELLED and run.ended_at is not None
    assert _no_process_left(experiment)


def test_scancel_from_outside_fails_the_experiment_with_slurms_state(
    pretend_workload: object, dispatcher: Dispatcher
) -> None:
    experiment = _submit(LONG)
    dispatcher.until(lambda: _running_a_run(experiment), 90, "the training to start")

    done = dispatcher.cluster.client("scancel", _fresh(experiment).slurm_job_id)
    assert done.returncode == 0, done.stderr
    dispatcher.until(lambda: _fresh(experiment).slurm_state == "CANCELLED", 30, "the job's end")
    dispatcher.until(lambda: not experiment.is_active, 10, "the experiment's end")

    assert experiment.status == Experiment.Status.FAILED, dispatcher
    assert f"(the Slurm job {experiment.slurm_job_id} ended CANCELLED" in experiment.error
    assert _no_process_left(experiment)


def test_a_partition_that_does_not_exist_fails_the_experiment_in_one_line(
    digits_workload: object, dispatcher: Dispatcher
) -> None:
    experiment = _submit(QUICK.replace("target: slurm", "target: slurm:nosuch"))
    dispatcher.once()

    _fresh(experiment)
    assert experiment.status == Experiment.Status.FAILED
    assert experiment.slurm_job_id == ""
    assert experiment.error.startswith("Slurm refused the job: ")
    assert "Invalid partition name specified" in experiment.error
    assert "\n" not in experiment.error


def test_an_account_the_partition_does_not_take_is_not_left_pending(
    digits_workload: object, dispatcher: Dispatcher
) -> None:
    experiment = _submit(
        QUICK.replace("target: slurm", "target: slurm:restricted") + "slurm: {account: nope}\n"
    )
    dispatcher.until(lambda: _ended(experiment), 30, "the experiment to fail")
    dispatcher.until(lambda: _fresh(experiment).slurm_state == "CANCELLED", 20, "scancel")

    assert experiment.status == Experiment.Status.FAILED
    assert experiment.error.startswith(f"Slurm cannot run job {experiment.slurm_job_id}: ")
    assert "account not known" in experiment.error
    assert "\n" not in experiment.error


def test_without_sbatch_the_dispatcher_fails_what_is_queued_and_stops(
    digits_workload: object, dispatcher: Dispatcher, tmp_path: Path
) -> None:
    experiment = _submit(QUICK)
    empty = tmp_path / "bin"
    empty.mkdir()
    env = dict(dispatcher.cli.env, WATTLAB_SLURM_ENABLED="1", PATH=str(empty))

    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "slurm_dispatch", "--loop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "CommandError: sbatch is not on the PATH: install Slurm's client commands "
        "(Debian: slurm-client) where slurm_dispatch runs, or set WATTLAB_SLURM_BIN_DIR"
    )
    _fresh(experiment)
    assert experiment.status == Experiment.Status.FAILED
    assert experiment.error.startswith("cannot submit to Slurm: sbatch is not on the PATH")


def test_a_job_killed_at_its_time_limit_fails_the_experiment_with_slurms_reason(
    pretend_workload: object, dispatcher: Dispatcher
) -> None:
    """No --signal lead (WATTLAB_SLURM_SIGNAL_LEAD_SECONDS=0): Slurm ends the job at
    its one-minute limit (within its 30 s timer), SIGTERM first; the worker stops what
    runs, and Slurm's TIMEOUT is on the experiment. The slowest test here: a minute is
    the least Slurm allows."""
    experiment = _submit(LONG + "slurm: {time_limit: 1}\n")
    dispatcher.until(lambda: _fresh(experiment).slurm_state == "TIMEOUT", 120, "TIMEOUT", 1.0)

    assert experiment.status == Experiment.Status.FAILED, dispatcher
    assert f"(the Slurm job {experiment.slurm_job_id} ended TIMEOUT (TimeLimit))" in (
        experiment.error
    )
    assert experiment.slurm_display == f"job {experiment.slurm_job_id} timeout: TimeLimit"
    assert Run.objects.get(experiment=experiment).status == Run.Status.CANCELLED
    assert _no_process_left(experiment)


def test_a_job_whose_worker_cannot_start_says_why_from_its_output(
    digits_workload: object, dispatcher: Dispatcher, slurm_settings: Any, tmp_path: Path
) -> None:
    """Wattlab's folder as the nodes see it is wrong: the job fails at once, and the
    experiment quotes the job's last output line."""
    slurm_settings.WATTLAB_SLURM_ROOT = str(tmp_path)  # no scripts/slurm_job.py there
    experiment = _submit(QUICK)
    dispatcher.until(lambda: _ended(experiment), 30, "the experiment to fail")

    assert experiment.status == Experiment.Status.FAILED
    assert experiment.error.startswith(
        f"the Slurm job {experiment.slurm_job_id} ended FAILED (NonZeroExitCode) before its "
        "worker started the experiment; the job's output ends: "
    ), experiment.error
    assert "No such file or directory" in experiment.error
    assert "\n" not in experiment.error


def test_a_submission_cut_short_is_found_by_its_job_name(
    digits_workload: object, dispatcher: Dispatcher
) -> None:
    """The dispatcher died between sbatch and writing the job id: the next pass finds
    the job by its name and adopts it instead of submitting a second one."""
    from experiments.slurm.dispatch import STALE_SUBMIT_S, _take
    from experiments.slurm.options import job_request

    experiment = _submit(QUICK)
    assert _take(experiment)
    request = job_request(
        experiment_id=experiment.id,
        code=str(experiment.code),
        partition="",
        slurm={},
        expected_s=60,
    )
    job_id = dispatcher.cli.submit([*request.options, "--hold"], request.script)
    Experiment.objects.filter(id=experiment.id).update(
        slurm_submitted_at=timezone.now() - dt.timedelta(seconds=STALE_SUBMIT_S + 1)
    )

    report = dispatcher.once()

    assert _fresh(experiment).slurm_job_id == job_id
    assert f"adopted Slurm job {job_id}" in "\n".join(report.lines)
    assert report.submitted == 0
    assert dispatcher.cli.find_by_name(f"wattlab-{experiment.code}") == [job_id]


def test_a_job_slurm_has_forgotten_makes_its_experiment_lost(
    digits_workload: object, dispatcher: Dispatcher
) -> None:
    """Not in squeue (past MinJobAge, or a controller that lost its state) and no
    accounting to ask: lost, saying both."""
    experiment = _submit(QUICK)
    Experiment.objects.filter(id=experiment.id).update(
        status=Experiment.Status.RUNNING, slurm_job_id="999999", slurm_state="RUNNING"
    )
    dispatcher.once()

    _fresh(experiment)
    assert (experiment.status, experiment.slurm_state) == ("lost", "UNKNOWN")
    assert experiment.error.startswith("Slurm no longer knows job 999999 (not in squeue; sacct: ")


def test_a_job_pending_past_the_limit_is_cancelled_and_its_experiment_failed(
    digits_workload: object, dispatcher: Dispatcher, slurm_settings: Any
) -> None:
    slurm_settings.WATTLAB_SLURM_PENDING_LIMIT_SECONDS = 2
    blocker = _blocker(dispatcher)
    try:
        experiment = _submit(QUICK)
        dispatcher.until(lambda: _ended(experiment), 30, "the pending limit")
        dispatcher.until(lambda: _fresh(experiment).slurm_state == "CANCELLED", 20, "scancel")
    finally:
        dispatcher.cli.cancel([blocker])
    assert experiment.status == Experiment.Status.FAILED
    assert experiment.error.startswith(
        f"Slurm job {experiment.slurm_job_id} was still pending after "
    )
    assert "(WATTLAB_SLURM_PENDING_LIMIT_SECONDS=2)" in experiment.error
