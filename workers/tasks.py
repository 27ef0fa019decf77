"""Thin Celery tasks: they take ids, call the services and the engine.

The only module under ``workers/`` that imports Django. Status, progress and results
live in our tables; Celery carries messages only (no result backend).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import InterfaceError, OperationalError

from core.liveness import liveness_file, mark_alive
from experiments import selectors, services
from experiments.engine_store import OrmExperimentStore, plan_for
from experiments.models import Experiment, Host, ProcessGroup
from experiments.slurm.dispatch import slurm_job_started

log = logging.getLogger(__name__)

#: Set by the worker launcher for each worker process: the GPU it owns ("" = CPU slot).
GPU_INDEX_ENV = "WATTLAB_GPU_INDEX"


def worker_gpu_index() -> int | None:
    raw = os.environ.get(GPU_INDEX_ENV, "").strip()
    if raw in {"", "cpu", "none"}:
        return None
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"{GPU_INDEX_ENV}={raw!r} is not a GPU index (or empty)") from None


def _host() -> Host:
    host = Host.objects.filter(hostname=settings.WATTLAB_HOSTNAME).first()
    return host if host is not None else register_host()


def register_host() -> Host:
    """Record this host, its GPUs and its meters (workers.energy finds them)."""
    from workers.energy.nvml import list_gpus
    from workers.energy.session import describe_meters

    try:
        meters = describe_meters()
    except Exception as exc:  # a broken meter must not keep the worker from serving
        log.exception("describing the meters failed")
        meters = {"error": str(exc)}
    host = services.host_register(
        hostname=settings.WATTLAB_HOSTNAME,
        gpus=list_gpus(),
        meters=meters,
        cpu_count=os.cpu_count(),
    )
    index = worker_gpu_index()
    if index is not None:
        _observe_sensors(index)
    return host


def _observe_sensors(index: int) -> None:
    """How often this worker's GPU updates its energy counter and power (a second of
    polling at start): a window only a few updates long is flagged on its runs."""
    from workers.energy.sensors import observe_update_periods

    try:
        periods = observe_update_periods([index]).get(index)
    except Exception as exc:  # a failed observation costs the flag, never the worker
        log.warning("observing GPU %s's sensors failed: %s: %s", index, type(exc).__name__, exc)
        return
    if periods is not None:
        services.host_gpu_sensors(
            hostname=settings.WATTLAB_HOSTNAME, index=index, periods=periods.to_dict()
        )


@shared_task(
    name="workers.tasks.run_experiment",
    acks_late=True,
    # The database away at the claim: the message must not be acked and forgotten
    # (the experiment would stay queued for ever). Celery sends it again with a backoff;
    # once claimed, a retry finds the experiment no longer queued and does nothing.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=60,
)
def run_experiment(experiment_id: int) -> None:
    """Claim the experiment (queued -> running) and run it on this host.

    A redelivered message finds the experiment no longer queued and does nothing:
    a training never starts twice. The runner decides how the experiment ended and
    reports it through the store; a database outage during the run only delays the
    writes (``workers.buffered_store``), past ``WATTLAB_OUTAGE_LIMIT`` they are spooled
    and replayed by this host's control worker.
    """
    gpu_index = worker_gpu_index()
    host = _host()
    experiment = services.experiment_claim(
        experiment_id=experiment_id, host=host, gpu_index=gpu_index
    )
    if experiment is None:
        log.info("experiment %s is not queued any more; nothing to do", experiment_id)
        return
    job = _slurm_job()
    if job is not None:
        # A worker holding a Slurm allocation (scripts/slurm/wattlab-worker.sbatch):
        # the experiment names its job, which drains it at the job's end.
        slurm_job_started(experiment_id=experiment_id, job_id=job.job_id, node=job.node)
    _run_claimed(experiment, host, gpu_indices=[] if gpu_index is None else [gpu_index])


def _slurm_job() -> Any:
    """The Slurm job this worker runs in (None outside one), from its environment."""
    from workers.slurm_job import SlurmJob

    return SlurmJob.from_env(os.environ)


def _run_claimed(
    experiment: Experiment, host: Host, *, gpu_indices: list[int], stop: Any = None
) -> None:
    """Run a claimed experiment to its end and record it (``stop``: a
    ``workers.runner.StopRequest`` set by a signal handler)."""
    from workers.buffered_store import BufferedStore
    from workers.energy.session import open_meters
    from workers.runner import run_experiment as engine_run

    job = _slurm_job()
    orm_store = OrmExperimentStore(experiment, host, job.as_dict() if job else None)
    store = BufferedStore(orm_store, backoff_max=settings.WATTLAB_HEARTBEAT_SECONDS)
    experiment_id = experiment.id
    try:
        plan = plan_for(experiment, gpu_index=None, gpu_indices=gpu_indices, python=sys.executable)
        meters = open_meters(plan.gpu_indices)
        try:
            engine_run(plan, store, meters=meters, stop=stop)
        finally:
            meters.close()
    except SoftTimeLimitExceeded:
        # The runner's own cleanup (stopping its groups) ran on the way out.
        store.experiment_ended("error", "stopped at the worker's time limit")
    except Exception as exc:
        log.exception("experiment %s failed in the worker", experiment.code)
        store.experiment_ended("error", f"worker error: {type(exc).__name__}: {exc}")
    finally:
        if store.drain(settings.WATTLAB_OUTAGE_LIMIT):
            _close_ended_groups(experiment_id, host)
            _warm_compare(experiment)
        else:
            store.spool(
                _spool_dir(host.hostname) / f"{experiment.code}.spool", orm_store.spool_meta
            )


def run_slurm_job(experiment_id: int, stop: Any) -> int:
    """The worker of a Slurm job (``scripts/slurm_job.py``): serve exactly the job's
    allocation, claim experiment ``experiment_id``, run it, return the exit status.

    The node registers as a host under its Slurm name. The job's GPUs come from its
    environment (``workers.slurm_job``); a job given none runs the CPU path even on a
    GPU node (``CUDA_VISIBLE_DEVICES`` is emptied, for the trainings too). ``stop``
    (a ``StopRequest``) is set by the job's signals; the runner reads it with the
    cancel, so a signal that came before the claim stops the experiment at once.
    """
    from workers.energy.nvml import list_gpus
    from workers.slurm_job import SlurmJob, allocation_gpu_indices

    job = SlurmJob.from_env(os.environ)
    if job is None:
        log.error("not in a Slurm job (no SLURM_JOB_ID): nothing to do")
        return 2
    visible = [g for g in list_gpus() if "error" not in g]
    indices, note = allocation_gpu_indices(
        [(g["index"], g.get("uuid", "")) for g in visible], os.environ
    )
    if not indices:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    log.info("Slurm job %s on %s: GPUs %s (%s)", job.job_id, job.node, indices or "none", note)
    replay_spooled_for(job.node)
    host = _claim_with_retries(
        lambda: services.host_register(
            hostname=job.node,
            gpus=[g for g in visible if g["index"] in indices],
            cpu_count=os.cpu_count(),
        )
    )
    # Claimed even when Slurm's signal came already (the worker starts slowly on a busy
    # node): the runner then stops at once, and the experiment says why.
    experiment = _claim_with_retries(
        lambda: services.experiment_claim(
            experiment_id=experiment_id, host=host, gpu_index=indices[0] if indices else None
        )
    )
    if experiment is None:
        log.info("experiment %s is not queued any more; nothing to do", experiment_id)
        return 0
    slurm_job_started(experiment_id=experiment_id, job_id=job.job_id, node=job.node)
    _run_claimed(experiment, host, gpu_indices=indices, stop=stop)
    return 0


#: How long a job's worker keeps trying to reach the database before it gives up.
CLAIM_PATIENCE_S = 60.0


def _claim_with_retries(step: Any) -> Any:
    """``step()``, tried again while the database does not answer (a compute node's
    network may come up late); past :data:`CLAIM_PATIENCE_S` the error propagates and
    the job fails, which the dispatcher reports with the job's last output line."""
    from django.db import close_old_connections

    deadline = time.monotonic() + CLAIM_PATIENCE_S
    delay = 0.5
    while True:
        close_old_connections()
        try:
            return step()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("the database does not answer (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _warm_compare(experiment: Experiment) -> None:
    """Keep the workload's comparison ready for its first reader: computing it cold is
    most of a Compare request at team scale (docs/benchmarks/web.md), and here it costs
    the worker a fraction of a second after the experiment has ended, when nothing of it
    is measured any more. Never fails the task: the page computes it otherwise."""
    started = time.monotonic()
    try:
        selectors.compare_workload_warm(workload=experiment.foreground_workload)
    except Exception as exc:
        log.warning(
            "keeping the comparison of %s failed: %s: %s", experiment.code, type(exc).__name__, exc
        )
        return
    log.info(
        "comparison of %s kept in %.0f ms",
        experiment.foreground_workload.name,
        (time.monotonic() - started) * 1000,
    )


def _spool_dir(hostname: str) -> Path:
    return Path(settings.WATTLAB_SCRATCH_DIR) / "spool" / hostname


def replay_spooled() -> int:
    """Write what experiments of this host left when the database stayed away too long."""
    return replay_spooled_for(settings.WATTLAB_HOSTNAME)


def replay_spooled_for(hostname: str) -> int:
    """The same for a host named otherwise (a Slurm node: the next job there replays
    what an earlier one left)."""
    from workers.buffered_store import replay_spool

    return replay_spool(_spool_dir(hostname), OrmExperimentStore.from_spool_meta)


def _close_ended_groups(experiment_id: int, host: Host) -> None:
    """Record the end of groups the runner stopped without reporting it (an exception
    such as the soft time limit can cut its bookkeeping short). Only groups that are
    really gone from this host are closed; a live one stays open, an orphan."""
    from workers.procgroup import group_members, same_process

    for group in selectors.process_groups_open(experiment_id=experiment_id, host=host):
        alive = same_process(group.leader_pid, group.leader_create_time)
        if alive or group_members(group.pgid):
            log.error(
                "process group %s of experiment %s is still running", group.pgid, experiment_id
            )
            continue
        services.group_close_gone(
            group_id=group.id, reason="gone when the experiment ended (not reported)"
        )


def _terminate(group: ProcessGroup) -> str:
    """Terminate a recorded group on this host, after the identity checks."""
    from workers.procgroup import GroupIdentity, StopError, terminate_recorded

    if group.host.hostname != settings.WATTLAB_HOSTNAME:
        # Its pids mean nothing here: a message on the wrong host's queue signals nothing.
        here = settings.WATTLAB_HOSTNAME
        return f"refused: the group belongs to {group.host.hostname}, not {here}"
    identity = GroupIdentity(
        pgid=group.pgid,
        leader_pid=group.leader_pid,
        leader_create_time=group.leader_create_time,
    )
    try:
        result: str = terminate_recorded(
            identity, marker=str(group.experiment.code), grace=settings.WATTLAB_GRACE_SECONDS
        )
    except StopError as exc:
        result = f"failed: {exc}"
    return result


@shared_task(name="workers.tasks.terminate_group")
def terminate_group(group_id: int) -> str:
    """On the owning host: terminate an (orphaned) group by its recorded identity."""
    group = ProcessGroup.objects.select_related("experiment", "host").get(id=group_id)
    result = _terminate(group)
    services.process_group_terminated(
        group_id=group_id, result=result, ended=result in {"terminated", "already gone"}
    )
    return result


def clean_orphans() -> list[str]:
    """This host's leftover groups of experiments that ended (or were marked lost) more
    than ``WATTLAB_ORPHAN_GRACE`` ago: terminate each once, as the admin's action would,
    and record the result (who: the system). Returns the results."""
    grace = settings.WATTLAB_ORPHAN_GRACE
    if grace is None:
        return []
    results = []
    due = selectors.process_groups_due_for_cleanup(hostname=settings.WATTLAB_HOSTNAME, grace=grace)
    for group in due:
        result = _terminate(group)
        services.process_group_terminated(
            group_id=group.id,
            result=result,
            ended=result in {"terminated", "already gone"},
            automatic=f"orphan grace {grace:g} s",
        )
        log.warning(
            "orphaned process group %s of experiment %s: %s (after %g s grace)",
            group.pgid,
            group.experiment.code,
            result,
            grace,
        )
        results.append(result)
    return results


@shared_task(name="workers.tasks.reap_lost")
def reap_lost() -> list[str]:
    return services.experiments_reap_lost()


# --- host registration and heartbeat (in the control worker, which never forks) -----

_stop_heartbeat = threading.Event()


def _guarded(what: str, step: Any) -> None:
    """Run one step of a housekeeping loop; a failure (the database or the broker may be
    away for a while) is one log line, and the loop carries on."""
    from django.db import close_old_connections, connection

    from core.contract import error_line

    close_old_connections()
    try:
        step()
    except Exception as exc:
        log.warning("%s failed: %s", what, error_line(exc))
        try:
            connection.close()
        except Exception:  # the connection was already broken: nothing to close
            pass


def _mark_alive() -> None:
    """The file a container's health probe reads (``core.liveness``): this host's
    heartbeat reached the database just now."""
    mark_alive(liveness_file(settings.VAR_DIR, settings.WATTLAB_HOSTNAME))


def _host_heartbeat() -> None:
    services.host_heartbeat(hostname=settings.WATTLAB_HOSTNAME, utilisation=_host_utilisation())
    _mark_alive()


def _heartbeat_loop() -> None:
    period = settings.WATTLAB_HEARTBEAT_SECONDS
    while not _stop_heartbeat.wait(period):
        _guarded("host heartbeat", _host_heartbeat)
        _guarded("replaying spooled writes", replay_spooled)
        _guarded("dispatching queued experiments", services.experiments_dispatch_pending)


def _orphan_loop() -> None:
    # Its own thread: terminating a group waits out its grace period, which must not
    # delay the host heartbeat.
    period = settings.WATTLAB_HEARTBEAT_SECONDS
    _guarded(
        "marking this host's stale experiments lost",
        lambda: services.experiments_reap_lost(hostname=settings.WATTLAB_HOSTNAME),
    )
    while True:
        _guarded("cleaning orphaned process groups", clean_orphans)
        if _stop_heartbeat.wait(period):
            return


def _host_utilisation() -> dict[str, Any]:
    import psutil

    from workers.energy.nvml import gpu_utilisation

    load1, load5, _load15 = os.getloadavg()
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "load_1m": round(load1, 2),
        "load_5m": round(load5, 2),
        "memory_percent": psutil.virtual_memory().percent,
        # {"0": 87.0, ...}: the Hosts page shows each GPU's utilisation beside it.
        "gpus": gpu_utilisation(),
    }


def _never_forks(consumer: Any) -> bool:
    from celery.concurrency.solo import TaskPool as SoloPool

    return isinstance(getattr(consumer, "pool", None), SoloPool)


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_kwargs: Any) -> None:
    register_host()
    from django.db import connection

    # The pool forks children after this; they must not share this connection.
    connection.close()
    # The host heartbeat is a thread, so it runs only in the worker that never forks:
    # the control worker (--pool solo, which scripts/worker.py always starts). In a
    # prefork worker's main process it could hold a lock (pynvml's library lock, one
    # inside libnvidia-ml or libpq) at the moment a pool child is forked; the child
    # inherits it held and hangs in its own nvmlInit.
    if not _never_forks(sender):
        return
    _guarded("marking this host alive", _mark_alive)
    _stop_heartbeat.clear()
    threading.Thread(target=_heartbeat_loop, name="wattlab-host-heartbeat", daemon=True).start()
    threading.Thread(target=_orphan_loop, name="wattlab-orphan-cleanup", daemon=True).start()
    log.info(
        "host heartbeat for %s every %g s from %s",
        settings.WATTLAB_HOSTNAME,
        settings.WATTLAB_HEARTBEAT_SECONDS,
        getattr(sender, "hostname", "this worker"),
    )


@worker_shutdown.connect
def _on_worker_shutdown(**_kwargs: Any) -> None:
    _stop_heartbeat.set()


__all__ = [
    "clean_orphans",
    "reap_lost",
    "register_host",
    "replay_spooled",
    "run_experiment",
    "run_slurm_job",
    "terminate_group",
]
