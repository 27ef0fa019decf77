"""Queue names and enqueueing. Messages carry ids only; the rows are the truth.

Every worker process listens on the shared ``gpu`` queue, on its host's ``gpu.<host>``
queue and on its own ``gpu.<host>.<index>`` (``gpu.<host>.cpu`` for a CPU slot); the
target of an experiment picks one of them. Process-group cleanup goes to
``control.<host>``, served by a separate small worker so that it is not stuck behind
an hours-long training.
"""

from __future__ import annotations

from celery import current_app
from django.conf import settings

SHARED_QUEUE = "gpu"
SHARED_CONTROL_QUEUE = "control"
RUN_EXPERIMENT_TASK = "workers.tasks.run_experiment"
TERMINATE_GROUP_TASK = "workers.tasks.terminate_group"
REAP_TASK = "workers.tasks.reap_lost"


def _p(name: str) -> str:
    # A prefix keeps separate installations (or test sessions) on one broker apart.
    return f"{settings.WATTLAB_QUEUE_PREFIX}{name}"


def shared_queue() -> str:
    return _p(SHARED_QUEUE)


def shared_control_queue() -> str:
    return _p(SHARED_CONTROL_QUEUE)


def host_queue(hostname: str) -> str:
    return _p(f"gpu.{hostname}")


def gpu_queue(hostname: str, gpu_index: int | None) -> str:
    return _p(f"gpu.{hostname}.{'cpu' if gpu_index is None else gpu_index}")


def control_queue(hostname: str) -> str:
    return _p(f"control.{hostname}")


def worker_queues(hostname: str, gpu_index: int | None) -> list[str]:
    return [shared_queue(), host_queue(hostname), gpu_queue(hostname, gpu_index)]


def queue_for_target(target: str) -> str:
    """``any`` -> gpu, ``HOST`` -> gpu.HOST, ``HOST:GPU`` -> gpu.HOST.GPU."""
    if target == "any":
        return shared_queue()
    hostname, _, gpu = target.partition(":")
    if gpu:
        return gpu_queue(hostname, int(gpu))
    return host_queue(hostname)


# Celery's current app is the project's (webapp/celery.py makes it the default in
# every thread), so the app never imports the project package above it.
def enqueue_experiment(experiment_id: int, *, queue: str) -> None:
    current_app.send_task(RUN_EXPERIMENT_TASK, args=[experiment_id], queue=queue)


def enqueue_terminate(group_id: int, *, queue: str) -> None:
    current_app.send_task(TERMINATE_GROUP_TASK, args=[group_id], queue=queue)
