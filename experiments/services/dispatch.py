"""Sending an experiment's message to its queue, and sending it later when the broker
was away at submit: saved, never forgotten."""

from __future__ import annotations

import datetime as dt
import logging

from django.utils import timezone

from experiments import queues
from experiments.models import Experiment, slurm_target_q

log = logging.getLogger(__name__)


def _dispatch(experiment: Experiment) -> bool:
    """Send the experiment's message and record that it went. With the broker away the
    row stays undispatched (``queue_error`` says why) and
    :func:`experiments_dispatch_pending` sends it later: saved, never forgotten."""
    if experiment.is_slurm:
        return True  # no message: `manage.py slurm_dispatch` submits it (experiments.slurm)
    queue = queues.queue_for_target(experiment.target)
    try:
        queues.enqueue_experiment(experiment.id, queue=queue)
    except Exception as exc:  # kombu's errors vary by transport; all mean "not sent"
        experiment.queue_error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        log.warning("experiment %s saved but not sent: %s", experiment.code, experiment.queue_error)
        return False
    now = timezone.now()
    Experiment.objects.filter(id=experiment.id, dispatched_at__isnull=True).update(
        dispatched_at=now
    )
    experiment.dispatched_at = now
    experiment.queue_error = ""
    return True


#: What submit says when the broker was away: the row is kept and sent later.
SAVED_NOT_SENT = "saved; will start when the queue is reachable"

#: A queued experiment's first send happens right after its commit; the dispatcher
#: leaves it that long before it takes over (a message sent twice is harmless: the
#: claim lets only one delivery run it, but there is no need for it).
DISPATCH_AFTER_S = 5.0


def experiments_dispatch_pending(*, now: dt.datetime | None = None) -> list[str]:
    """Send queued experiments whose message never reached the broker (it was down
    when they were saved). Stops at the first failure: the broker is still away."""
    now = now or timezone.now()
    pending = (
        Experiment.objects.filter(
            status=Experiment.Status.QUEUED,
            dispatched_at__isnull=True,
            created_at__lt=now - dt.timedelta(seconds=DISPATCH_AFTER_S),
        )
        .exclude(slurm_target_q())
        .order_by("created_at", "id")
    )
    sent: list[str] = []
    for experiment in pending.only("id", "code", "target"):
        if not _dispatch(experiment):
            break
        log.warning("experiment %s: sent to its queue (the broker was away)", experiment.code)
        sent.append(str(experiment.code))
    return sent
