"""The queue end to end with a REAL Celery worker (scripts/worker.py) and real
trainings: submit, progress, cancel, redelivery, a worker killed mid-run, orphan
termination through the control queue. The experiment whose figures are read runs
digits-mlp; the tests of what happens to a run's processes run the pretend training
(``pretend_workload``: real processes in their own groups that sleep), so they leave
the 2 cores to the rest of the suite.

Runs on whatever the environment selects: PostgreSQL + Redis in ``make test``, SQLite +
kombu's filesystem broker without DATABASE_URL / REDIS_URL (``make test`` runs this
file a second time that way).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from experiments import queues, selectors, services
from experiments.expfile import parse_experiment_text
from experiments.models import Experiment, ProcessGroup, Run
from tests.conftest import DATA, WorkerProc, run_manage
from workers.procgroup import find_marked, group_members

pytestmark = [pytest.mark.slow, pytest.mark.queue, pytest.mark.backends]

# A short variant of examples/experiments/demo-parallel.yaml: ~2 s foreground runs,
# ~3 s background runs restarting after 0.1 s, so the union of background runs
# covers the foreground windows and there are several background runs.
SHORT_PARALLEL = """
name: short-parallel
foreground:
  workload: digits-mlp
  hyperparameters: {epochs: 30, hidden: 512}
  mutate: [learning_rate]
configurations: 2
seed: 11
sleep_between_runs: 0.5
timeout: 120
background:
  workload: digits-mlp
  hyperparameters: {epochs: 50, hidden: 512, seed: 1}
  restart_delay: 0.1
  startup_wait: 1.5
"""

# The pretend training: runs that last until the test stops them, and two short ones.
LONG_SOLO = """
name: long-solo
foreground:
  workload: pretend
  hyperparameters: {seconds: 1000}
timeout: 600
"""

LONG_PARALLEL = (
    LONG_SOLO.replace("name: long-solo", "name: long-parallel")
    + """
background:
  workload: pretend
  hyperparameters: {seconds: 1000}
  startup_wait: 0.5
"""
)

SHORT_SOLO = """
name: short-solo
foreground:
  workload: pretend
  hyperparameters: {seconds: 1.5}
  mutate: [lr]
configurations: 2
seed: 11
sleep_between_runs: 0.5
timeout: 120
"""

REPLAY_TRACE = DATA / "traces" / "rtx3080" / "MRT-OAST_default_035_parallel"


def _wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, worker: WorkerProc | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    log = f"\nworker log:\n{worker.log()[-4000:]}" if worker is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{log}")


def _status(experiment: Experiment) -> str:
    experiment.refresh_from_db()
    return str(experiment.status)


def _submit(text: str) -> Experiment:
    return services.experiment_submit(owner=None, spec=parse_experiment_text(text), source="cli")


@pytest.mark.one_backend  # the queue's and the claim's differences: the other tests here
def test_submit_wait_json_returns_a_succeeded_parallel_experiment(
    digits_workload: object,
    submitter: object,
    celery_worker_factory: Callable[..., WorkerProc],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's "done means", on a short demo: succeeded, coverage >= 90 %, at least
    two background runs, energy figures with their methods, nothing left running."""
    env = {"WATTLAB_METER_DOUBLE": str(REPLAY_TRACE)} if REPLAY_TRACE.is_dir() else {}
    # With the reaper on and a 1 s heartbeat: a healthy run must never be taken as lost.
    worker = celery_worker_factory(reaper=True, **env)
    path = tmp_path / "short-parallel.yaml"
    path.write_text(SHORT_PARALLEL)

    done = run_manage("submit", str(path), "--wait", "--json", timeout=240)

    assert done.returncode == 0, done.stderr[-3000:]
    # Progress went to stderr (stdout holds only the JSON document).
    assert "2/2 runs done" in done.stderr and "background runs:" in done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "succeeded"
    assert doc["mode"] == "parallel"
    assert len(doc["runs"]) == 2
    for run in doc["runs"]:
        assert run["status"] == "succeeded"
        assert run["exit_code"] == 0
        assert run["metrics"]["accuracy"] > 50
        assert run["coverage"]["percent"] >= 90, run["coverage"]
        assert run["coverage"]["verdict"] in {"good", "partial"}
        energy = run["energy"]
        assert energy["cpu_method"] in {"rapl", "perf", "estimate"}
        assert energy["cpu_j"] is not None and energy["cpu_j"] > 0
        if env:  # the labelled replay double of a recorded RTX 3080 trace
            assert energy["gpu_method"] in {"counter", "integrated"}
            assert energy["gpu_j"] is not None and energy["gpu_j"] > 0
        else:
            assert energy["gpu_method"] == "unavailable" and energy["gpu_j"] is None
    assert doc["runs"][0]["hyperparameters"] != doc["runs"][1]["hyperparameters"]
    assert len(doc["background_runs"]) >= 2
    # Every background run is closed. The loop is stopped at the end: its last run was
    # cut short by that stop, or (when the stop landed in the 0.1 s restart delay) had
    # just ended by itself with exit code 0; nothing else is a legitimate ending.
    assert all(bg["ended_at"] is not None for bg in doc["background_runs"])
    last = doc["background_runs"][-1]
    assert last["stopped"] is True or last["exit_code"] == 0, last
    assert not any(bg["stopped"] for bg in doc["background_runs"][:-1])
    # Nothing of it is left: no process carries its marker, every group ended.
    assert find_marked(doc["code"]) == []
    experiment = Experiment.objects.get(code=doc["code"])
    groups = ProcessGroup.objects.filter(experiment=experiment)
    assert groups.count() >= 3  # two foreground runs and the background loop
    assert not groups.filter(ended_at__isnull=True).exists()
    # Logs went through Django's storage, readable where the web app runs.
    run = Run.objects.filter(experiment=experiment).first()
    assert run is not None and "Test Accuracy" in run.log.read().decode()
    assert "Test Accuracy" in run.log_tail

    # Once the experiment has ended, the worker keeps the workload's comparison for
    # Compare's first reader: here it is read from the shared cache, never computed.
    from experiments import selectors
    from experiments.selectors import compare as compare_reads

    def computed(**_kwargs: object) -> None:
        raise AssertionError("computed here, not kept by the worker")

    monkeypatch.setattr(compare_reads, "compare_workload", computed)

    def kept() -> bool:
        try:
            data = selectors.compare_workload_warm(workload=experiment.foreground_workload)
        except AssertionError:
            return False
        return data.finished_runs >= 2

    _wait_for(kept, 30, "the worker to keep the comparison", worker)


def test_cancel_stops_a_running_experiment_within_seconds(
    pretend_workload: object, celery_worker_proc: WorkerProc
) -> None:
    experiment = _submit(LONG_PARALLEL)
    _wait_for(
        lambda: Run.objects.filter(experiment=experiment, status="running").exists(),
        60,
        "the foreground run to start",
    )
    code = str(experiment.code)
    assert find_marked(code), "the training should be running"

    cancelled = run_manage("cancel", code)
    asked = time.monotonic()

    assert cancelled.returncode == 0, cancelled.stderr
    _wait_for(lambda: _status(experiment) == "cancelled", 30, "the experiment to be cancelled")
    # The runner polls every second and then stops its groups (grace 3 s here).
    assert time.monotonic() - asked < 20
    _wait_for(lambda: find_marked(code) == [], 15, "every process of it to end")
    assert not ProcessGroup.objects.filter(experiment=experiment, ended_at__isnull=True).exists()
    assert not Run.objects.filter(experiment=experiment, status="running").exists()


def test_a_queued_experiment_is_cancelled_at_once_and_never_runs(
    pretend_workload: object, celery_worker_proc: WorkerProc
) -> None:
    services.host_register(hostname="elsewhere", gpus=[{"index": 0, "name": "x"}])
    # Targeted at a host with no worker: it stays queued.
    experiment = _submit(LONG_SOLO + "target: elsewhere:0\n")
    time.sleep(1.0)
    assert _status(experiment) == "queued"

    assert services.experiment_cancel(experiment=experiment, by=None) is True

    assert _status(experiment) == "cancelled"
    assert not Run.objects.filter(experiment=experiment).exists()


def test_a_redelivered_message_never_starts_the_training_twice(
    pretend_workload: object, celery_worker_proc: WorkerProc
) -> None:
    experiment = _submit(SHORT_SOLO)
    # The same message a second time, as a broker redelivery would.
    queues.enqueue_experiment(experiment.id, queue=queues.shared_queue())

    _wait_for(
        lambda: _status(experiment) not in Experiment.ACTIVE_STATUSES,
        120,
        "the experiment to end",
        celery_worker_proc,
    )
    experiment.refresh_from_db()
    assert experiment.status == "succeeded", (
        f"{experiment.error}\n{celery_worker_proc.log()[-4000:]}"
    )
    # The duplicate is received and refused after the first delivery ends (the worker
    # takes one message at a time).
    _wait_for(
        lambda: "is not queued any more" in celery_worker_proc.log(),
        30,
        "the duplicate to be refused",
        celery_worker_proc,
    )
    runs = Run.objects.filter(experiment=experiment)
    assert runs.count() == 2
    assert set(runs.values_list("config_index", flat=True)) == {0, 1}


def test_a_killed_worker_leaves_a_lost_experiment_and_orphans_the_control_queue_ends(
    pretend_workload: object, celery_worker_factory: Callable[..., WorkerProc]
) -> None:
    heartbeat = 1.0
    hostname = "killed-host"
    doomed = celery_worker_factory(heartbeat=heartbeat, hostname=hostname)
    # The reaper lives elsewhere (another host, or the web side).
    reaper = celery_worker_factory(heartbeat=heartbeat, reaper=True)
    experiment = _submit(LONG_PARALLEL + f"target: {hostname}\n")
    code = str(experiment.code)
    _wait_for(
        lambda: ProcessGroup.objects.filter(experiment=experiment, role="foreground").exists(),
        60,
        "the foreground group to start",
    )

    doomed.kill()
    killed_at = time.monotonic()

    _wait_for(lambda: _status(experiment) == "lost", 30, "the experiment to be marked lost")
    elapsed = time.monotonic() - killed_at
    # Two heartbeat periods, plus the reaper's quarter period, plus a wide margin for
    # a loaded machine (the figure itself is printed for the record).
    print(f"marked lost {elapsed:.2f} s after SIGKILL (heartbeat {heartbeat} s)")
    assert elapsed < 2 * heartbeat + 5
    orphans = selectors.orphaned_process_groups().filter(experiment=experiment)
    assert orphans.count() >= 2  # the background loop and the foreground run
    survivors = find_marked(code)
    assert survivors, "the trainings run in their own sessions and outlive the worker"

    # A new worker on that host serves its control queue: terminate the orphans.
    replacement = celery_worker_factory(heartbeat=heartbeat, hostname=hostname)
    for group in orphans:
        services.process_group_request_terminate(group=group, by=None)
    _wait_for(
        lambda: (
            not ProcessGroup.objects.filter(experiment=experiment, ended_at__isnull=True).exists()
        ),
        60,
        "the control worker to terminate the orphans",
    )
    results = set(
        ProcessGroup.objects.filter(experiment=experiment).values_list(
            "terminate_result", flat=True
        )
    )
    assert results <= {"terminated", "already gone", ""}
    assert "terminated" in results
    _wait_for(lambda: find_marked(code) == [], 15, "every process of it to end")
    for group in ProcessGroup.objects.filter(experiment=experiment):
        assert group_members(group.pgid) == []
    del reaper, replacement


@pytest.mark.one_backend  # the command's signal handling, the same on either backend
def test_ctrl_c_during_submit_wait_asks_and_cancels(
    pretend_workload: object, submitter: object, celery_worker_proc: WorkerProc, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT, child_env

    path = tmp_path / "long.yaml"
    path.write_text(LONG_SOLO)
    # Started as a background job is, with SIGINT ignored (inherited): Ctrl-C must still
    # reach it. -X faulthandler: if it hangs, SIGABRT prints where every thread is.
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        waiting = subprocess.Popen(
            [
                sys.executable,
                "-X",
                "faulthandler",
                str(ROOT / "manage.py"),
                "submit",
                str(path),
                "--wait",
            ],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, ignored)
    try:

        def started() -> bool:
            if waiting.poll() is not None:
                _out, err = waiting.communicate()
                raise AssertionError(f"submit --wait ended early: {err[-3000:]}")
            return Run.objects.filter(experiment__name="long-solo", status="running").exists()

        _wait_for(started, 60, "the run to start", celery_worker_proc)
        experiment = Experiment.objects.get(name="long-solo")
        waiting.send_signal(signal.SIGINT)
        try:
            out, err = waiting.communicate("y\n", timeout=60)
        except subprocess.TimeoutExpired:
            waiting.send_signal(signal.SIGABRT)
            out, err = waiting.communicate(timeout=10)
            raise AssertionError(
                f"no answer to Ctrl-C in 60 s:\n{out[-2000:]}\n{err[-6000:]}"
            ) from None
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert "Cancel long-solo" in out
    assert "cancel requested" in out
    assert waiting.returncode == 1  # only a succeeded experiment exits 0
    assert "Traceback" not in err
    assert _status(experiment) == "cancelled"
    _wait_for(
        lambda: find_marked(str(experiment.code)) == [],
        15,
        "every process of it to end",
        celery_worker_proc,
    )


def test_the_worker_registers_its_host_and_heartbeats(
    transactional_db: None, celery_worker_proc: WorkerProc
) -> None:
    from experiments.models import Host

    host = Host.objects.get(hostname=celery_worker_proc.hostname)
    assert host.queue == queues.host_queue(host.hostname)
    assert host.control_queue == queues.control_queue(host.hostname)
    assert host.gpus == []  # no NVIDIA GPU on this machine: one CPU slot
    assert host.meters["cpu"]["method"] in {"rapl", "perf", "estimate"}
    first = host.last_heartbeat
    _wait_for(
        lambda: Host.objects.get(id=host.id).last_heartbeat != first,
        10,
        "a heartbeat",
        celery_worker_proc,
    )
    assert "cpu_percent" in Host.objects.get(id=host.id).utilisation
    # The heartbeat thread runs in the control worker alone, which never forks; the
    # prefork worker (cpu0@) forks a child per experiment and must not carry it.
    started = re.findall(r"host heartbeat for \S+ every \S+ s from (\S+)", celery_worker_proc.log())
    assert started == [f"control@{celery_worker_proc.hostname}"]


@pytest.mark.one_backend  # the runner's own deadline, the same on either backend
def test_the_experiment_time_limit_lets_the_runner_stop_its_groups(
    pretend_workload: object, celery_worker_factory: Callable[..., WorkerProc]
) -> None:
    # This worker's experiments may last 6 s: the runner's own deadline fires mid-training.
    worker = celery_worker_factory(WATTLAB_MAX_EXPERIMENT_SECONDS="6")
    experiment = _submit(LONG_PARALLEL)
    code = str(experiment.code)
    _wait_for(lambda: _status(experiment) == "running", 60, "the claim", worker)

    _wait_for(lambda: _status(experiment) == "failed", 60, "the time limit", worker)

    assert "SoftTimeLimitExceeded" in experiment.error or "time limit" in experiment.error
    _wait_for(lambda: find_marked(code) == [], 15, "every process of it to end", worker)
    assert not ProcessGroup.objects.filter(experiment=experiment, ended_at__isnull=True).exists()
    assert not Run.objects.filter(experiment=experiment, status="running").exists()
