"""Start this host's workers in the foreground (``make worker``).

One Celery worker process per GPU (concurrency 1, its own queue ``gpu.<host>.<i>``
plus ``gpu.<host>`` and the shared ``gpu``), or one CPU slot where NVML finds no GPU;
one small control worker for process-group cleanup (``control.<host>`` and the shared
``control`` queue, which also carries the reaper's beat task); with ``--reaper`` a
loop that marks experiments lost when their heartbeat stops.

Ctrl-C / SIGTERM: the experiments running here are cancelled (the runner stops its
process groups), the workers get a warm shutdown, and anything still carrying an
experiment's marker is killed, so no training outlives the worker.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.conf import settings

    from core.liveness import liveness_file
    from experiments import queues
    from workers.energy.nvml import list_gpus

    host = settings.WATTLAB_HOSTNAME
    # A restarted container keeps its files: it is healthy again only once this start's
    # control worker has registered the host.
    liveness_file(settings.VAR_DIR, host).unlink(missing_ok=True)
    # Only the GPUs an inherited CUDA_VISIBLE_DEVICES allows; one NVML cannot read is
    # reported on the Hosts page but gets no worker.
    gpus = [g for g in list_gpus() if "error" not in g]
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

    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    shutdown(children, host)
    return 0


def shutdown(children: list[subprocess.Popen[bytes]], host: str, grace: float = 30.0) -> None:
    from django.db import connection

    from experiments import services
    from experiments.models import Experiment
    from workers.procgroup import find_marked

    running = list(Experiment.objects.filter(host__hostname=host, status=Experiment.Status.RUNNING))
    for experiment in running:
        services.experiment_cancel(experiment=experiment, by=None)
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
