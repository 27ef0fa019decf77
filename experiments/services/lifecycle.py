"""An experiment's life after submit: cancel and delete (people), claim, heartbeat,
events, finish and the reaper (workers). Every status change is a conditional UPDATE
that must change the rows it expects, so two workers (or a worker and a user) never
both win."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from experiments.models import Experiment, Host, ProcessGroup, Run

log = logging.getLogger(__name__)


def experiment_cancel(*, experiment: Experiment, by: Any) -> bool:
    """Ask the experiment to stop. A queued one is cancelled at once; a running one
    records the request, which the runner polls every second and acts on (it stops
    its process groups). Returns False when there was nothing to cancel."""
    now = timezone.now()
    user = by if by is not None and getattr(by, "is_authenticated", False) else None
    changed = Experiment.objects.filter(id=experiment.id, status=Experiment.Status.QUEUED).update(
        status=Experiment.Status.CANCELLED,
        cancel_requested_at=now,
        cancel_requested_by=user,
        ended_at=now,
    )
    if not changed:
        changed = Experiment.objects.filter(
            id=experiment.id, status=Experiment.Status.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now, cancel_requested_by=user)
    experiment.refresh_from_db()
    return bool(changed)


def experiment_delete(*, experiment: Experiment, by: Any) -> None:
    if experiment.status in Experiment.ACTIVE_STATUSES:
        raise ValidationError(
            {"status": [f"experiment is {experiment.status}; cancel it before deleting it"]}
        )
    live = ProcessGroup.objects.filter(experiment_id=experiment.id, ended_at__isnull=True)
    if live.exists():
        # The process-group rows are the only record staff have of what still runs on a
        # host (and the only way to terminate it from the admin): they must outlive it.
        raise ValidationError(
            {
                "status": [
                    f"{live.count()} of its process group(s) have not ended on their host; "
                    "staff can terminate them in the admin, then it can be deleted"
                ]
            }
        )
    with transaction.atomic():
        # Only an experiment that is still not active, with no live group, is deleted.
        deleted, _ = (
            Experiment.objects.filter(id=experiment.id)
            .exclude(status__in=Experiment.ACTIVE_STATUSES)
            .exclude(
                id__in=ProcessGroup.objects.filter(ended_at__isnull=True).values("experiment_id")
            )
            .delete()
        )
    if not deleted:
        raise ValidationError(
            {"status": ["experiment became active (or started a process group); try again"]}
        )
    log.info("experiment %s deleted by %s", experiment.code, by)


# --- worker side: claim, heartbeat, finish ------------------------------------------


def experiment_claim(*, experiment_id: int, host: Host, gpu_index: int | None) -> Experiment | None:
    """queued -> running; None when another delivery (or a cancel) got there first."""
    now = timezone.now()
    changed = Experiment.objects.filter(id=experiment_id, status=Experiment.Status.QUEUED).update(
        status=Experiment.Status.RUNNING,
        host=host,
        gpu_index=gpu_index,
        started_at=now,
        heartbeat_at=now,
    )
    if changed != 1:
        return None
    return Experiment.objects.select_related("foreground_workload", "background_workload").get(
        id=experiment_id
    )


def experiment_heartbeat(*, experiment_id: int) -> None:
    now = timezone.now()
    changed = Experiment.objects.filter(id=experiment_id, status=Experiment.Status.RUNNING).update(
        heartbeat_at=now
    )
    if changed:
        return
    # Marked lost while its worker could not reach the database: the worker is alive,
    # so the experiment runs again (its runs' results follow from the worker's buffer).
    revived = Experiment.objects.filter(id=experiment_id, status=Experiment.Status.LOST).update(
        status=Experiment.Status.RUNNING, heartbeat_at=now, ended_at=None, error=""
    )
    if revived:
        log.warning("experiment %s is heartbeating again: running, not lost", experiment_id)
        experiment_event(
            experiment_id=experiment_id,
            kind="revived",
            message="marked lost while its worker could not reach the database; "
            "the worker is alive and the experiment goes on",
        )


def experiment_event(*, experiment_id: int, kind: str, message: str) -> None:
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(id=experiment_id)
        events = list(experiment.events)
        events.append({"at": timezone.now().isoformat(), "kind": kind, "message": message[:2000]})
        Experiment.objects.filter(id=experiment_id).update(events=events[-200:])


def _close_unfinished_runs(experiment_id: int, reason: str) -> None:
    """A run the runner never reported finished did not end well: say so."""
    Run.objects.filter(experiment_id=experiment_id, status__in=Run.UNFINISHED_STATUSES).update(
        status=Run.Status.ERROR, error=reason, ended_at=timezone.now()
    )


#: The runner's outcome (``workers.runner.OutcomeStatus``) -> the experiment's status.
_OUTCOME_STATUS = {
    "succeeded": Experiment.Status.SUCCEEDED,
    "failed": Experiment.Status.FAILED,
    "cancelled": Experiment.Status.CANCELLED,
    "error": Experiment.Status.FAILED,
}


def experiment_finish(*, experiment_id: int, outcome: str, error: str = "") -> str:
    """Record how the experiment ended. The runner decides (``outcome``: succeeded,
    failed, cancelled or error, with ``error`` saying why); this only stores it. A
    worker's report also replaces the reaper's "lost" guess (it could not reach the
    database for a while)."""
    status = _OUTCOME_STATUS[outcome]
    _close_unfinished_runs(experiment_id, error or "the runner ended before this run did")
    Experiment.objects.filter(
        id=experiment_id, status__in=[Experiment.Status.RUNNING, Experiment.Status.LOST]
    ).update(status=status, ended_at=timezone.now(), error=error[:10000])
    return str(status)


def experiment_fail(*, experiment_id: int, error: str) -> None:
    """An error outside the runner (the worker could not start it, or its time limit)."""
    experiment_finish(experiment_id=experiment_id, outcome="error", error=error)


def experiments_reap_lost(
    *,
    now: dt.datetime | None = None,
    heartbeat_seconds: float | None = None,
    hostname: str | None = None,
) -> list[str]:
    """Running experiments whose heartbeat is older than two periods are lost; their
    unended process groups then count as orphans (``selectors.orphaned_process_groups``;
    the admin can terminate them, and the owning host's control worker does after
    ``WATTLAB_ORPHAN_GRACE``). ``hostname``: only that host's (a control worker
    starting up reaps its own)."""
    now = now or timezone.now()
    period = heartbeat_seconds or settings.WATTLAB_HEARTBEAT_SECONDS
    cutoff = now - dt.timedelta(seconds=2 * period)
    stale = Experiment.objects.filter(status=Experiment.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    if hostname is not None:
        stale = stale.filter(host__hostname=hostname)
    lost: list[str] = []
    for experiment in stale.only("id", "code", "heartbeat_at"):
        changed = Experiment.objects.filter(
            id=experiment.id,
            status=Experiment.Status.RUNNING,
            heartbeat_at=experiment.heartbeat_at,
        ).update(
            status=Experiment.Status.LOST,
            ended_at=now,
            error=(
                "the worker stopped sending heartbeats (last at "
                f"{experiment.heartbeat_at.isoformat() if experiment.heartbeat_at else 'never'})"
            ),
        )
        if changed:
            Run.objects.filter(experiment_id=experiment.id, status=Run.Status.RUNNING).update(
                status=Run.Status.ERROR, error="worker lost during the run", ended_at=now
            )
            lost.append(str(experiment.code))
            log.warning("experiment %s marked lost", experiment.code)
    return lost
