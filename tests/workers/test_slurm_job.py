"""The worker's side of a Slurm job, without a cluster: which job it is and which GPUs
it was given (from the environment Slurm sets), the GPU pinning of its trainings
(with the fake NVML library of the NVML tests), and the signals that stop it."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from core.contract import ProgramSpec, RunPlan
from tests.workers.conftest import alive, program, read_pids
from tests.workers.test_runner import RecordingStore, make_plan
from workers.energy.session import open_meters
from workers.procgroup import find_marked
from workers.runner import StopRequest, run_experiment
from workers.slurm_job import (
    TERMINATED_REASON,
    TIME_LIMIT_REASON,
    SlurmJob,
    allocation_gpu_indices,
    install_stop_signals,
)

#: What slurmd puts in a batch job's environment (22.05, a job given two GPUs).
JOB_ENV = {
    "SLURM_JOB_ID": "4711",
    "SLURM_CLUSTER_NAME": "lab",
    "SLURM_JOB_PARTITION": "gpu",
    "SLURM_JOB_ACCOUNT": "vision",
    "SLURMD_NODENAME": "node07",
    "SLURM_JOB_NODELIST": "node07",
    "SLURM_JOB_GPUS": "1,3",
    "CUDA_VISIBLE_DEVICES": "1,3",
}
FOUR_GPUS = [(i, f"GPU-fake-uuid-{i}") for i in range(4)]


def test_the_job_is_read_from_its_environment() -> None:
    job = SlurmJob.from_env(JOB_ENV)
    assert job is not None
    assert job.as_dict() == {
        "cluster": "lab",
        "job_id": "4711",
        "partition": "gpu",
        "account": "vision",
        "node": "node07",
        "gpus": "1,3",
    }
    assert SlurmJob.from_env({"PATH": "/usr/bin"}) is None


def test_the_allocations_gpus_are_the_ones_cuda_visible_devices_names() -> None:
    indices, note = allocation_gpu_indices(FOUR_GPUS, JOB_ENV)
    assert indices == [1, 3]
    assert "CUDA_VISIBLE_DEVICES='1,3'" in note


def test_a_node_that_confines_devices_numbers_the_allocation_from_zero() -> None:
    """ConstrainDevices: the job sees only its two GPUs, as 0 and 1, whatever their
    numbers on the node (SLURM_JOB_GPUS)."""
    env = dict(JOB_ENV, CUDA_VISIBLE_DEVICES="0,1")
    assert allocation_gpu_indices(FOUR_GPUS[:2], env)[0] == [0, 1]


def test_without_cuda_visible_devices_slurm_job_gpus_names_them() -> None:
    env = {k: v for k, v in JOB_ENV.items() if k != "CUDA_VISIBLE_DEVICES"}
    assert allocation_gpu_indices(FOUR_GPUS, dict(env, SLURM_JOB_GPUS="0-2"))[0] == [0, 1, 2]
    assert allocation_gpu_indices(FOUR_GPUS, dict(env, SLURM_STEP_GPUS="2"))[0] == [2]


def test_a_job_given_no_gpu_serves_none_even_on_a_gpu_node() -> None:
    env = {k: v for k, v in JOB_ENV.items() if k not in {"SLURM_JOB_GPUS"}}
    indices, note = allocation_gpu_indices(FOUR_GPUS, env)
    assert indices == []
    assert "no GPU" in note


def test_the_training_is_pinned_to_the_allocations_gpus(
    marker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the fake NVML library: the job's worker meters GPUs 1 and 3 and its
    training sees exactly those, by UUID."""
    from tests.workers.conftest import fake_nvml

    fake_nvml(monkeypatch, count=4)
    indices, _note = allocation_gpu_indices(FOUR_GPUS, JOB_ENV)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", JOB_ENV["CUDA_VISIBLE_DEVICES"])
    meters = open_meters(indices, double="", try_perf=False)
    show = [sys.executable, "-c", "import os; print('pin', os.environ['CUDA_VISIBLE_DEVICES'])"]
    run = RunPlan(0, 0, {}, ProgramSpec(show, str(tmp_path)))
    store = RecordingStore()
    try:
        outcome = run_experiment(
            make_plan(marker, tmp_path, [run], success_pattern=None), store, meters=meters
        )
    finally:
        meters.close()
    assert outcome.status == "succeeded", outcome.message
    (result,) = store.of("run_finished")
    assert "pin GPU-fake-uuid-1,GPU-fake-uuid-3" in Path(result.log_path).read_text()
    assert result.energy.gpu_uuid == "GPU-fake-uuid-1,GPU-fake-uuid-3"


def test_sigusr1_and_sigterm_ask_for_a_stop_with_their_reason() -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        first, second = StopRequest(), StopRequest()
        install_stop_signals(first)
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # the first reason stays
        install_stop_signals(second)
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert first.is_set() and first.reason == TIME_LIMIT_REASON
    assert second.is_set() and second.reason == TERMINATED_REASON


def test_a_stop_request_stops_the_experiment_cleanly_with_its_reason(
    marker: str, tmp_path: Path
) -> None:
    """What the job's worker does on Slurm's --signal: the training's group is stopped
    as on a cancel, and the experiment ends in error with the reason."""
    pidfile = tmp_path / "pids"
    stop = StopRequest()
    run = RunPlan(0, 0, {}, ProgramSpec(program("spawn_tree.py", str(pidfile)), str(tmp_path)))

    class StopOnceStarted(RecordingStore):
        def heartbeat(self) -> None:
            super().heartbeat()
            if pidfile.exists():
                stop.request(TIME_LIMIT_REASON)

    store = StopOnceStarted()
    meters = open_meters([0], double="synthetic:100", try_perf=False)
    began = time.monotonic()
    try:
        outcome = run_experiment(
            make_plan(marker, tmp_path, [run], heartbeat_interval=0.1),
            store,
            meters=meters,
            stop=stop,
        )
    finally:
        meters.close()

    assert (outcome.status, outcome.message) == ("error", TIME_LIMIT_REASON)
    assert store.of("experiment_ended") == [("error", TIME_LIMIT_REASON)]
    (result,) = store.of("run_finished")
    assert result.status == "cancelled"
    assert not any(alive(pid) for pid in read_pids(pidfile, 3))
    assert find_marked(marker) == []
    assert time.monotonic() - began < 20
