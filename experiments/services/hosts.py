"""Worker hosts and the process groups they started: registration, heartbeats, and
terminating a group from the admin (through the owning host's control queue)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.contract import GroupInfo
from experiments import queues
from experiments.models import Host, ProcessGroup, Run


def process_group_request_terminate(*, group: ProcessGroup, by: Any) -> None:
    """Record the request and send it to the owning host's control queue: only that
    host can check that the pid still belongs to the same process."""
    user = by if by is not None and getattr(by, "is_authenticated", False) else None
    if group.ended_at is not None:
        raise ValidationError({"group": ["this process group has already ended"]})
    with transaction.atomic():
        ProcessGroup.objects.filter(id=group.id).update(
            terminate_requested_at=timezone.now(),
            terminate_requested_by=user,
            terminate_result="",
        )
        group_id = group.id
        queue = group.host.control_queue or queues.control_queue(group.host.hostname)
        transaction.on_commit(lambda: queues.enqueue_terminate(group_id, queue=queue))
    group.refresh_from_db()


def process_group_terminated(
    *, group_id: int, result: str, ended: bool, automatic: str = ""
) -> None:
    """Called on the owning host with what the engine did: after a request from the
    admin, or (``automatic``: the policy, e.g. "orphan grace 180 s") by itself, which
    is then recorded as a request by the system (no user)."""
    now = timezone.now()
    updates: dict[str, Any] = {"terminate_result": result[:2000]}
    if automatic:
        updates.update(terminate_requested_at=now, terminate_requested_by=None)
        updates["terminate_result"] = f"{result} (automatic: {automatic})"[:2000]
    ProcessGroup.objects.filter(id=group_id).update(**updates)
    if ended:
        ProcessGroup.objects.filter(id=group_id, ended_at__isnull=True).update(
            ended_at=now,
            end_reason=f"terminated automatically ({automatic})"[:200]
            if automatic
            else "terminated on request",
        )


def group_start(*, experiment_id: int, host: Host, group: GroupInfo) -> ProcessGroup:
    run = None
    if group.config_index is not None:
        run = Run.objects.filter(
            experiment_id=experiment_id,
            config_index=group.config_index,
            repeat_index=group.repeat_index or 0,
            attempt=group.attempt or 0,
        ).first()
    # get_or_create: a write repeated after a database outage records the group once.
    process_group, _created = ProcessGroup.objects.get_or_create(
        host=host,
        pgid=group.pgid,
        leader_pid=group.leader_pid,
        leader_create_time=group.leader_create_time,
        experiment_id=experiment_id,
        defaults={"role": group.role, "run": run, "started_at": timezone.now()},
    )
    return process_group


def group_end(*, experiment_id: int, group: GroupInfo, reason: str) -> None:
    ProcessGroup.objects.filter(
        experiment_id=experiment_id,
        pgid=group.pgid,
        leader_pid=group.leader_pid,
        leader_create_time=group.leader_create_time,
        ended_at__isnull=True,
    ).update(ended_at=timezone.now(), end_reason=reason[:200])


def group_close_gone(*, group_id: int, reason: str) -> bool:
    """Record the end of a group its host found gone without the runner reporting it."""
    return bool(
        ProcessGroup.objects.filter(id=group_id, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=reason[:200]
        )
    )


# --- hosts ------------------------------------------------------------------------------


def host_register(
    *,
    hostname: str,
    gpus: list[dict[str, Any]],
    meters: dict[str, Any] | None = None,
    cpu_count: int | None = None,
) -> Host:
    """Record a host and its GPUs (every worker of the host does, as it starts). A GPU
    keeps the sensor periods its own worker recorded (:func:`host_gpu_sensors`)."""
    now = timezone.now()
    with transaction.atomic():
        host = Host.objects.select_for_update().filter(hostname=hostname).first()
        earlier = _sensor_periods_by_uuid(host.gpus if host is not None else [])
        gpus = [dict(g) for g in gpus]
        for gpu in gpus:
            if gpu.get("uuid") in earlier:
                gpu["sensor_periods"] = earlier[gpu["uuid"]]
        host, _created = Host.objects.update_or_create(
            hostname=hostname,
            defaults={
                "queue": queues.host_queue(hostname),
                "control_queue": queues.control_queue(hostname),
                "gpus": gpus,
                "meters": meters or {},
                "cpu_count": cpu_count,
                "started_at": now,
                "last_heartbeat": now,
            },
        )
    return host


def _sensor_periods_by_uuid(gpus: Any) -> dict[str, Any]:
    return {
        g["uuid"]: g["sensor_periods"]
        for g in gpus or []
        if isinstance(g, dict) and g.get("uuid") and g.get("sensor_periods")
    }


def host_gpu_sensors(*, hostname: str, index: int, periods: dict[str, Any]) -> None:
    """Record how often GPU ``index``'s sensors update, as its worker observed them at
    start (``core.contract.SensorPeriods.to_dict()``); plans carry them to the engine."""
    with transaction.atomic():
        host = Host.objects.select_for_update().filter(hostname=hostname).first()
        if host is None:
            return
        gpus = [dict(g) for g in host.gpus or []]
        for gpu in gpus:
            if gpu.get("index") == index:
                gpu["sensor_periods"] = dict(periods)
        host.gpus = gpus
        host.save(update_fields=["gpus"])


def host_heartbeat(*, hostname: str, utilisation: dict[str, Any] | None = None) -> None:
    updates: dict[str, Any] = {"last_heartbeat": timezone.now()}
    if utilisation is not None:
        updates["utilisation"] = utilisation
    Host.objects.filter(hostname=hostname).update(**updates)
