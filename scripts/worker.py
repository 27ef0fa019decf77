"""Start this host's workers in the foreground (``make worker``).

One Celery worker process per GPU (concurrency 1, its own queue ``gpu.<host>.<i>``
plus ``gpu.<host>`` and the shared ``gpu``), or one CPU slot where NVML finds no GPU;
one small control worker for process-group cleanup (``control.<host>`` and the shared
``control`` queue, which also carries the reaper's beat task); with ``--reaper`` a
loop that marks experiments lost when their heartbeat stops.

Ctrl-C / SIGTERM: the experiments running here are cancelled (the runner stops its
process groups), the workers get a warm shutdown, and anything still carrying an
experiment's marker is killed, so no training outlives the worker.

Inside a Slurm job (``scripts/slurm/wattlab-worker.sbatch``) it serves exactly the
job's allocation: its GPUs (none given: CPU slots, and no GPU for the trainings);
each run records the job. SIGUSR1 (the job's ``--signal``, ahead of its time limit)
drains it like SIGTERM, saying so on the experiments it stops; ``--idle-timeout``
gives the allocation back once nothing has run here for that long.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")


def _celery(queues: list[str], name: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "webapp", "worker",
        "-Q", ",".join(queues), "-n", name, "--concurrency", "1",
        "--without-gossip", "--without-mingle",
        "--loglevel", os.environ.get("WATTLAB_WORKER_LOGLEVEL", "INFO"), *extra,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reaper", action="store_true", help="also run the lost-experiment reaper")
    parser.add_argument("--cpu-slots", type=int, default=1, help="worker processes without a GPU")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=0.0,
        help="stop once no experiment has run here for this many seconds (0: never)",
    )
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.conf import settings

    job = _serve_slurm_allocation()
    from core.liveness import liveness_file
    from experiments import queues
    from workers.energy.nvml import list_gpus, unmeterable
    from workers.training_env import training_user_notice

    try:
        notice = training_user_notice(settings.WATTLAB_TRAINING_USER)
    except ValueError as exc:
        print(f"wattlab worker: WATTLAB_TRAINING_USER: {exc}", file=sys.stderr, flush=True)
        return 2
    if notice:
        print(f"wattlab worker: {notice}", file=sys.stderr, flush=True)
    host = settings.WATTLAB_HOSTNAME
    # A restarted container keeps its files: it is healthy again only once this start's
    # control worker has registered the host.
    liveness_file(settings.VAR_DIR, host).unlink(missing_ok=True)
    # Only the GPUs an inherited CUDA_VISIBLE_DEVICES allows; one that cannot be metered
    # (NVML cannot read it, MIG) is reported on the Hosts page but gets no worker: its
    # trainings would go unmeasured, or unpinned onto another worker's GPU.
    gpus = []
    for gpu in list_gpus():
        why = unmeterable(gpu)
        if why:
            print(f"wattlab worker on {settings.WATTLAB_HOSTNAME}: no worker for {why}", flush=True)
        else:
            gpus.append(gpu)
    slots: list[int | None] = [g["index"] for g in gpus] or [None] * max(1, args.cpu_slots)
    children: list[subprocess.Popen[bytes]] = []
    for n, index in enumerate(slots):
        # The worker keeps the inherited CUDA_VISIBLE_DEVICES (so every worker lists the
        # same GPUs when it registers the host); the runner pins each training to its
        # metered GPU by UUID (NVML numbers GPUs in PCI-bus order, CUDA fastest-first).
        env = dict(os.environ, WATTLAB_GPU_INDEX="" if index is None else str(index))
        label = f"gpu{index}" if index is not None else f"cpu{n}"
        queue_names = queues.worker_queues(host, index)
        children.append(subprocess.Popen(_celery(queue_names, f"{label}@{host}"), env=env))
    control = [queues.control_queue(host), queues.shared_control_queue()]
    children.append(subprocess.Popen(_celery(control, f"control@{host}", "--pool", "solo")))
    if args.reaper:
        reaper = [sys.executable, str(ROOT / "manage.py"), "reap", "--loop"]
        children.append(subprocess.Popen(reaper))
    print(
        f"wattlab worker on {host}: "
        + (", ".join(f"GPU {g['index']} {g['name']}" for g in gpus) or "no GPU, CPU slot")
        + (" + reaper" if args.reaper else ""),
        flush=True,
    )

    stopping = ""  # why, once it stops

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if job is None:
            why = "its worker was stopped"
        elif signum == signal.SIGUSR1:
            why = f"the Slurm job {job.job_id} of its worker reaches its time limit"
        else:
            why = f"the Slurm job {job.job_id} of its worker was ended (scancel, preemption...)"
        stopping = stopping or why

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, stop)
    idle = IdleClock(host, job.job_id if job else "", args.idle_timeout)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
        if idle.expired():
            print(f"wattlab worker on {host}: idle {args.idle_timeout:g} s, stopping", flush=True)
            break
    shutdown(children, host, job_id=job.job_id if job else "", reason=stopping)
    return 0


def _serve_slurm_allocation() -> Any:
    """Inside a Slurm job: ``CUDA_VISIBLE_DEVICES`` narrowed to the job's GPUs, by UUID
    (none given: empty), so every worker and training of this launcher sees exactly
    the allocation. Returns the job (None outside Slurm)."""
    from workers.energy.nvml import list_gpus
    from workers.slurm_job import SlurmJob, allocation_gpu_indices

    job = SlurmJob.from_env(os.environ)
    if job is None:
        return None
    gpus = [g for g in list_gpus() if "error" not in g]
    indices, note = allocation_gpu_indices(
        [(g["index"], g.get("uuid", "")) for g in gpus], os.environ
    )
    uuids = [g["uuid"] for g in gpus if g["index"] in indices and g.get("uuid")]
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(uuids)
    print(f"Slurm job {job.job_id} on {job.node}: {note}", flush=True)
    return job


def _running(host: str, job_id: str) -> Any:
    """This worker's running experiments (on a Slurm node, those of its own job: other
    jobs' workers may share the node)."""
    from experiments.models import Experiment

    running = Experiment.objects.filter(host__hostname=host, status=Experiment.Status.RUNNING)
    return running.filter(slurm_job_id=job_id) if job_id else running


class IdleClock:
    """Expires once nothing has run here for ``seconds`` (0: never), asked at most
    once a second. The database away counts as busy: never stop on a guess."""

    def __init__(self, host: str, job_id: str, seconds: float) -> None:
        self.host, self.job_id, self.seconds = host, job_id, seconds
        self.busy_at = self.asked_at = time.monotonic()

    def expired(self) -> bool:
        now = time.monotonic()
        if self.seconds <= 0 or now - self.asked_at < 1.0:
            return False
        self.asked_at = now
        from django.db import connection

        try:
            if _running(self.host, self.job_id).exists():
                self.busy_at = now
        except Exception as exc:  # the database away: busy, as far as we know
            print(f"wattlab worker: idle check failed: {exc}", file=sys.stderr, flush=True)
            self.busy_at = now
        finally:
            connection.close()
        return now - self.busy_at >= self.seconds


def shutdown(
    children: list[subprocess.Popen[bytes]],
    host: str,
    grace: float = 30.0,
    *,
    job_id: str = "",
    reason: str = "",
) -> None:
    from django.db import DatabaseError, connection

    from core.contract import error_line
    from experiments import services
    from workers.procgroup import find_marked

    # The database away (an outage, a wrong DATABASE_URL) must not keep the workers
    # running without their launcher: without it, what runs here is not cancelled
    # through the database but its worker's warm shutdown (then a kill) still stops it,
    # and the reaper and the orphan policy see to the rest once the database answers.
    running = []
    try:
        running = list(_running(host, job_id))
        for experiment in running:
            if job_id:
                services.experiment_event(
                    experiment_id=experiment.id,
                    kind="worker_stopped",
                    message=f"stopped: {reason}",
                )
            services.experiment_cancel(experiment=experiment, by=None)
    except DatabaseError as exc:
        print(
            f"wattlab worker on {host}: the database does not answer ({error_line(exc)}); "
            "stopping the workers without cancelling through it",
            file=sys.stderr,
            flush=True,
        )
    finally:
        connection.close()
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # Celery: warm shutdown
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    # Whatever still carries an experiment's marker was started by us: end it.
    for experiment in running:
        for pid in find_marked(str(experiment.code)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    sys.exit(main())
