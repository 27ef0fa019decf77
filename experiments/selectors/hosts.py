"""Reads of worker hosts and their process groups: the Hosts page, the target choices
of the form, and the orphans the admin and the control workers clean up."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.liveness import online_seconds
from experiments.models import Experiment, Host, ProcessGroup


def host_online_after() -> dt.datetime:
    """A host is online when its heartbeat is younger than three heartbeat periods
    (``core.liveness``, which a worker container's health probe follows too)."""
    seconds = online_seconds(float(getattr(settings, "WATTLAB_HEARTBEAT_SECONDS", 10.0)))
    return timezone.now() - dt.timedelta(seconds=seconds)


def host_list() -> list[dict[str, Any]]:
    """Every host with its GPUs, online state and running experiments (two queries)."""
    hosts = list(Host.objects.all())
    running: dict[int, list[Experiment]] = defaultdict(list)
    for exp in (
        Experiment.objects.filter(status=Experiment.Status.RUNNING, host__isnull=False)
        .select_related("owner", "foreground_workload")
        .only(
            "code",
            "name",
            "host_id",
            "gpu_index",
            "owner__username",
            "foreground_workload__name",
            "runs_done",
            "total_runs",
            "mode",
            "status",
        )
    ):
        assert exp.host_id is not None
        running[exp.host_id].append(exp)
    cutoff = host_online_after()
    now = timezone.now()
    rows = []
    for host in hosts:
        online = bool(host.last_heartbeat and host.last_heartbeat >= cutoff)
        age = (now - host.last_heartbeat).total_seconds() if host.last_heartbeat else None
        rows.append(
            {
                "host": host,
                "online": online,
                "heartbeat_age_s": age,
                "experiments": running.get(host.pk, []),
            }
        )
    return rows


def _slot_word(hosts: list[Host]) -> str:
    """What a run waits for: a GPU where a host has one, else a worker's CPU slot."""
    return "GPU" if any(h.gpus for h in hosts) or not hosts else "worker (CPU slot)"


def target_choices() -> list[tuple[str, str]]:
    """ "any", then each online host and each of its GPUs."""
    online = list(Host.objects.filter(last_heartbeat__gte=host_online_after()))
    choices = [("any", f"any free {_slot_word(online)}")]
    for host in online:
        choices.append((host.hostname, f"{host.hostname} (any {_slot_word([host])})"))
        for gpu in host.gpus or []:
            idx = gpu.get("index")
            name = gpu.get("name", "GPU")
            choices.append((f"{host.hostname}:{idx}", f"{host.hostname}:{idx} — {name}"))
    if settings.WATTLAB_SLURM_ENABLED:
        choices.append(("slurm", "Slurm cluster (its default partition)"))
        for partition in settings.WATTLAB_SLURM_PARTITIONS:
            choices.append((f"slurm:{partition}", f"Slurm partition {partition}"))
    return choices


def queued_wait(experiment: Experiment) -> str:
    """What a queued experiment waits for, as its page says it: a free GPU only where
    a host it may run on has one (a host without a GPU runs it in a CPU slot)."""
    online = list(Host.objects.filter(last_heartbeat__gte=host_online_after()))
    target = experiment.target or "any"
    if target != "any":
        hostname = target.split(":")[0]
        online = [h for h in online if h.hostname == hostname]
        if not online:
            return f"waiting for {hostname}, which is offline (no heartbeat)"
        if ":" in target:
            return f"waiting for GPU {target.split(':', 1)[1]} of {hostname} to be free"
    if not online:
        return "waiting for a worker: no host is online (start one with make worker)"
    return f"waiting for a free {_slot_word(online)}"


# --- Orphaned process groups (admin) ----------------------------------------------


def orphaned_groups_q() -> Q:
    """The one definition of an orphan: a process group not ended while its experiment
    is no longer active, or while its host is offline (no heartbeat for as long as the
    Hosts page allows, see ``host_online_after``)."""
    return Q(ended_at__isnull=True) & (
        ~Q(experiment__status__in=Experiment.ACTIVE_STATUSES)
        | Q(host__last_heartbeat__lt=host_online_after())
        | Q(host__last_heartbeat__isnull=True)
    )


def orphaned_process_groups() -> QuerySet[ProcessGroup]:
    return ProcessGroup.objects.filter(orphaned_groups_q())


def process_groups_due_for_cleanup(
    *, hostname: str, grace: float, now: dt.datetime | None = None
) -> QuerySet[ProcessGroup]:
    """Orphans on ``hostname`` whose experiment ended (or was marked lost) more than
    ``grace`` seconds ago and that nobody tried to terminate yet: the policy's work."""
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=grace)
    return (
        ProcessGroup.objects.filter(orphaned_groups_q())
        .filter(
            host__hostname=hostname,
            experiment__ended_at__lte=cutoff,
            terminate_requested_at__isnull=True,
        )
        .exclude(experiment__status__in=Experiment.ACTIVE_STATUSES)
        .select_related("experiment")
    )


def process_groups_open(*, experiment_id: int, host: Host) -> QuerySet[ProcessGroup]:
    """The groups of an experiment on ``host`` whose end is not recorded."""
    return ProcessGroup.objects.filter(
        experiment_id=experiment_id, host=host, ended_at__isnull=True
    )
