"""Writes. Every status change is a conditional UPDATE that must change the rows it
expects, so two workers (or a worker and a user) never both win.

Views, management commands, the API and the engine store call these; nothing else
writes experiments, runs, background runs, process groups or hosts.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from core.contract import BackgroundRunRecord, GroupInfo, RunKey, RunResult
from core.coverage import worst_verdict
from experiments import queues
from experiments.expfile import ExperimentFile
from experiments.models import (
    BackgroundRun,
    Experiment,
    Host,
    ProcessGroup,
    Run,
    Workload,
    host_factors,
    slurm_target_q,
)

log = logging.getLogger(__name__)

LOG_TAIL_CHARS = 4000

Errors = dict[str, list[str]]


# --- validation and planning --------------------------------------------------------


@dataclass
class PlanPreview:
    """What a submission would run. ``available``: new configurations the space can
    still supply (never seen before for this workload and mode)."""

    configurations: list[dict[str, Any]] = field(default_factory=list)
    #: None: a continuous range makes the supply practically unlimited.
    available: int | None = 0
    errors: Errors = field(default_factory=dict)
    #: Said, never refused: fixed values outside the sampling range, duration notes.
    warnings: Errors = field(default_factory=dict)


def _add(errors: Errors, key: str, message: str) -> None:
    errors.setdefault(key, []).append(message)


def _active_workload(name: str, key: str, errors: Errors) -> Workload | None:
    workload = Workload.objects.filter(name=name).first()
    if workload is None:
        known = ", ".join(Workload.objects.filter(is_active=True).values_list("name", flat=True))
        _add(errors, key, f"no workload named {name!r} is registered (known: {known or 'none'})")
        return None
    if not workload.is_active:
        _add(errors, key, f"workload {name!r} is retired and takes no new experiments")
        return None
    return workload


def _check_part(
    *, prefix: str, workload: Workload, values: dict[str, Any], mutate: list[str], errors: Errors
) -> list[Any] | None:
    from experiments import mutation

    try:
        space = mutation.parse_space(workload.hyperparameters)
    except mutation.SpaceError as exc:
        _add(errors, f"{prefix}.workload", f"workload {workload.name!r} is misconfigured: {exc}")
        return None
    for name, problem in mutation.check_values(space, values).items():
        _add(errors, f"{prefix}.hyperparameters.{name}", problem)
    known = {param.name for param in space}
    for name in mutate:
        if name not in known:
            _add(
                errors,
                f"{prefix}.mutate",
                f"{name!r} is not a parameter of {workload.name} "
                f"(parameters: {', '.join(sorted(known)) or 'none'})",
            )
        elif name in values:
            _add(errors, f"{prefix}.mutate", f"{name!r} is both fixed and mutated; pick one")
    return space


def _check_target(spec: ExperimentFile, errors: Errors) -> tuple[Host | None, int | None]:
    hostname, gpu = spec.target_parts()
    if hostname is None:
        return None, None
    host = Host.objects.filter(hostname=hostname).first()
    if host is None:
        _add(errors, "target", f"no host named {hostname!r} has registered a worker")
        return None, None
    if gpu is not None and gpu not in {g.get("index") for g in host.gpus}:
        indices = ", ".join(str(g.get("index")) for g in host.gpus) or "none"
        _add(errors, "target", f"host {hostname} has no GPU {gpu} (GPUs: {indices})")
    return host, gpu


def _validate(spec: ExperimentFile) -> tuple[Errors, Workload | None, list[Any] | None]:
    errors: Errors = {}
    fg = _active_workload(spec.foreground.workload, "foreground.workload", errors)
    space = None
    if fg is not None:
        space = _check_part(
            prefix="foreground",
            workload=fg,
            values=dict(spec.foreground.hyperparameters),
            mutate=list(spec.foreground.mutate),
            errors=errors,
        )
    if spec.background is not None:
        bg = _active_workload(spec.background.workload, "background.workload", errors)
        if bg is not None:
            _check_part(
                prefix="background",
                workload=bg,
                values=dict(spec.background.hyperparameters),
                mutate=[],
                errors=errors,
            )
    if spec.timeout > settings.WATTLAB_MAX_RUN_SECONDS:
        _add(
            errors,
            "timeout",
            f"{spec.timeout:g} is above the maximum {settings.WATTLAB_MAX_RUN_SECONDS} "
            "seconds per run",
        )
    if not spec.foreground.mutate and spec.configurations > 1:
        _add(
            errors,
            "configurations",
            f"{spec.configurations} configurations need at least one parameter in "
            "foreground.mutate (without it every configuration is the same)",
        )
    _check_target(spec, errors)
    if spec.is_slurm:
        from experiments.slurm.options import check_slurm_spec

        for key, message in check_slurm_spec(spec):
            _add(errors, key, message)
    return errors, fg, space


def _plan(
    spec: ExperimentFile, workload: Workload, space: list[Any]
) -> tuple[list[dict[str, Any]], int | None, Errors]:
    """(configurations, available, errors); available None = practically unlimited."""
    from experiments import history, mutation

    fixed = dict(spec.foreground.hyperparameters)
    mutate = list(spec.foreground.mutate)
    seen = history.seen_configuration_keys(workload=workload, mode=spec.mode)
    try:
        available = mutation.count_available(
            space, fixed=fixed, mutate=mutate, strategy=spec.strategy, seen=seen
        )
        configs = mutation.plan_configurations(
            space,
            fixed=fixed,
            mutate=mutate,
            n=spec.configurations,
            seed=spec.seed,
            strategy=spec.strategy,
            seen=seen,
        )
    except mutation.SpaceExhausted as exc:
        return [], exc.available, {"configurations": [str(exc)]}
    except mutation.SpaceError as exc:
        return [], 0, {"foreground.mutate": [str(exc)]}
    return [dict(c) for c in configs], available, {}


def _duration_check(
    spec: ExperimentFile, workload: Workload, *, legacy_file: bool
) -> tuple[Errors, Errors]:
    """(errors, warnings) about how long the experiment may take.

    ``configurations x runs x (retries + 1) x (timeout + sleep)`` is a ceiling, not an
    estimate: the timeout is there to stop a hung run. It is only said. What is
    checked is the expected duration from this workload's earlier runs in this mode
    (imported ones included) where there are any: above the limit the worker's soft
    time limit would stop the experiment part way, so a native submission is refused;
    a file the earlier profiler ran is imported with a warning (it ran that long
    there). The broker does not need the experiment to fit: a second delivery finds it
    claimed (see ``experiment_claim``)."""
    from experiments import history

    errors: Errors = {}
    warnings: Errors = {}
    limit = settings.WATTLAB_MAX_EXPERIMENT_SECONDS
    runs = spec.configurations * spec.runs_per_config
    worst = runs * (spec.max_retries + 1) * (spec.timeout + spec.sleep_between_runs)
    typical = history.typical_run_seconds(workload=workload, mode=spec.mode)
    if typical is not None:
        median, n = typical
        expected = runs * median + (runs - 1) * spec.sleep_between_runs
        if expected > limit:
            message = (
                f"expected about {expected:.0f} s ({runs} runs at the median {median:.0f} s "
                f"of {n} earlier runs of {workload.name} in {spec.mode} mode, plus the "
                f"sleeps), above the {limit} s a worker gives an experiment before it "
                "stops it (WATTLAB_MAX_EXPERIMENT_SECONDS)"
            )
            _add(warnings if legacy_file else errors, "configurations", message)
    if worst > limit and not errors:
        _add(
            warnings,
            "timeout",
            f"at most {worst:g} s if every run used its whole timeout and every retry; "
            f"the worker stops an experiment after {limit} s"
            + ("" if typical else " (no earlier runs of this workload to estimate from)"),
        )
    return errors, warnings


def sampling_range_notes(spec: ExperimentFile) -> Errors:
    """Fixed values that lie outside their sampling range (inside the hard bounds, or
    they would be errors): a boundary test on purpose, or a slip worth a look."""
    from experiments import mutation

    notes: Errors = {}
    parts = [("foreground", spec.foreground.workload, spec.foreground.hyperparameters)]
    if spec.background is not None:
        parts.append(("background", spec.background.workload, spec.background.hyperparameters))
    for prefix, name, values in parts:
        workload = Workload.objects.filter(name=name).first()
        if workload is None:
            continue
        try:
            space = mutation.parse_space(workload.hyperparameters)
        except mutation.SpaceError:
            continue
        for key, note in mutation.outside_sampling_range(space, dict(values)).items():
            _add(notes, f"{prefix}.hyperparameters.{key}", note)
    return notes


def experiment_warnings(spec: ExperimentFile, *, legacy_file: bool = False) -> Errors:
    """What a submission is told but not refused for: fixed values outside their
    sampling range, how long it may take."""
    warnings = sampling_range_notes(spec)
    workload = Workload.objects.filter(name=spec.foreground.workload).first()
    if workload is not None:
        for key, messages in _duration_check(spec, workload, legacy_file=legacy_file)[1].items():
            warnings.setdefault(key, []).extend(messages)
    return warnings


def experiment_plan_preview(*, spec: ExperimentFile, legacy_file: bool = False) -> PlanPreview:
    """What a submission would run, and what it would be refused for. ``legacy_file``:
    an entry of a file the earlier profiler ran (its expected duration only warns)."""
    errors, workload, space = _validate(spec)
    warnings = experiment_warnings(spec, legacy_file=legacy_file)
    if workload is not None:
        for key, messages in _duration_check(spec, workload, legacy_file=legacy_file)[0].items():
            errors.setdefault(key, []).extend(messages)
    if errors or workload is None or space is None:
        return PlanPreview(errors=errors, warnings=warnings)
    configs, available, plan_errors = _plan(spec, workload, space)
    return PlanPreview(
        configurations=configs, available=available, errors=plan_errors, warnings=warnings
    )


def experiment_submit(
    *, owner: Any, spec: ExperimentFile, source: str = "web", legacy_file: bool = False
) -> Experiment:
    """Validate against the registered workloads, plan, store and enqueue (after commit).

    Raises ``ValidationError`` whose ``message_dict`` is keyed by experiment-file key
    paths (``foreground.hyperparameters.epochs``).
    """
    errors, workload, space = _validate(spec)
    if workload is not None:
        for key, messages in _duration_check(spec, workload, legacy_file=legacy_file)[0].items():
            errors.setdefault(key, []).extend(messages)
    if errors or workload is None or space is None:
        raise ValidationError(errors or {"foreground.workload": ["is not usable"]})
    configs, _available_count, plan_errors = _plan(spec, workload, space)
    if plan_errors:
        raise ValidationError(plan_errors)
    plan = [{"index": i, "hyperparameters": values} for i, values in enumerate(configs)]
    return _create_experiment(owner=owner, spec=spec, source=source, plan=plan)


def _create_experiment(
    *, owner: Any, spec: ExperimentFile, source: str, plan: list[dict[str, Any]]
) -> Experiment:
    fg = Workload.objects.get(name=spec.foreground.workload)
    bg = Workload.objects.get(name=spec.background.workload) if spec.background else None
    with transaction.atomic():
        _check_queued_runs_cap(owner, len(plan) * spec.runs_per_config)
        experiment = Experiment.objects.create(
            owner=owner if owner is not None and owner.is_authenticated else None,
            name=spec.name,
            mode=spec.mode,
            source=source,
            foreground_workload=fg,
            fg_hyperparameters=dict(spec.foreground.hyperparameters),
            mutate=list(spec.foreground.mutate),
            strategy=spec.strategy,
            configurations=len(plan),
            seed=spec.seed,
            runs_per_config=spec.runs_per_config,
            sleep_between_runs=spec.sleep_between_runs,
            timeout=spec.timeout,
            max_retries=spec.max_retries,
            background_workload=bg,
            bg_hyperparameters=dict(spec.background.hyperparameters) if spec.background else {},
            restart_delay=spec.background.restart_delay if spec.background else 2.0,
            startup_wait=spec.background.startup_wait if spec.background else 5.0,
            between_runs=spec.background.between_runs if spec.background else "keep",
            target=spec.target,
            submitted_config=spec.model_dump(mode="json"),
            plan=plan,
            total_runs=len(plan) * spec.runs_per_config,
        )
        # Enqueue only once the row is visible to the worker that will claim it.
        transaction.on_commit(lambda: _dispatch(experiment))
    return experiment


def _check_queued_runs_cap(owner: Any, new_runs: int) -> None:
    """One user may not fill every GPU's queue: refuse a submission that would take
    their queued and running runs past ``WATTLAB_MAX_QUEUED_RUNS_PER_USER``.

    The owner's row is locked first, so two submissions at once cannot both slip
    under the cap. A submission without an owner (the command line run on the server
    by an operator) is not capped.
    """
    cap = settings.WATTLAB_MAX_QUEUED_RUNS_PER_USER
    if owner is None or not getattr(owner, "is_authenticated", False) or cap <= 0:
        return
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    pending = Experiment.objects.filter(
        owner=owner, status__in=Experiment.ACTIVE_STATUSES
    ).aggregate(total=Sum("total_runs"), done=Sum("runs_done"))
    waiting = (pending["total"] or 0) - (pending["done"] or 0)
    if waiting + new_runs > cap:
        raise ValidationError(
            {
                "configurations": [
                    f"this experiment has {new_runs} run(s) and you already have {waiting} "
                    f"queued or running; the limit is {cap} per user. Ask for fewer "
                    "configurations or runs, or wait for your experiments to finish."
                ]
            }
        )


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


def experiment_rerun(*, experiment: Experiment, by: Any) -> Experiment:
    """The same configurations again (not a new sample), owned by ``by``."""
    from experiments.expfile import experiment_file_from_dict

    spec = experiment_file_from_dict(experiment.submitted_config)
    errors, _workload, _space = _validate(spec)
    errors.pop("configurations", None)
    if errors:
        raise ValidationError(errors)
    return _create_experiment(owner=by, spec=spec, source=experiment.source, plan=experiment.plan)


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


# --- runs and background runs ----------------------------------------------------------


def run_start(
    *,
    experiment_id: int,
    key: RunKey,
    hyperparameters: dict[str, Any],
    started_at: dt.datetime,
    slurm: dict[str, str] | None = None,
) -> Run:
    """``slurm``: the Slurm job the run goes in (``workers.slurm_job.SlurmJob``)."""
    run, _created = Run.objects.update_or_create(
        experiment_id=experiment_id,
        config_index=key.config_index,
        repeat_index=key.repeat_index,
        attempt=key.attempt,
        defaults={
            "hyperparameters": hyperparameters,
            "status": Run.Status.RUNNING,
            "started_at": started_at,
            "slurm": dict(slurm or {}),
        },
    )
    return run


def run_samples(*, experiment_id: int, key: RunKey, trace: bytes) -> None:
    Run.objects.filter(
        experiment_id=experiment_id,
        config_index=key.config_index,
        repeat_index=key.repeat_index,
        attempt=key.attempt,
    ).update(trace=trace)


def _tail(path: str) -> tuple[bytes, str]:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return b"", ""
    return data, data[-LOG_TAIL_CHARS * 4 :].decode("utf-8", errors="replace")[-LOG_TAIL_CHARS:]


def run_finish(*, experiment_id: int, code: str, result: RunResult) -> Run:
    key = result.key
    run, _created = Run.objects.get_or_create(
        experiment_id=experiment_id,
        config_index=key.config_index,
        repeat_index=key.repeat_index,
        attempt=key.attempt,
        defaults={"hyperparameters": result.hyperparameters, "started_at": result.started_at},
    )
    energy = result.energy
    run.hyperparameters = result.hyperparameters
    run.status = result.status
    run.started_at = result.started_at
    run.ended_at = result.ended_at
    run.duration_s = result.duration_s
    run.exit_code = result.exit_code
    run.error = result.error[:10000]
    run.metrics = result.metrics
    run.gpu_energy_j = energy.gpu.value
    run.gpu_method = energy.gpu.method
    run.gpu_uuid = energy.gpu_uuid
    run.gpu_foreground_j = energy.gpu_foreground.value
    run.gpu_foreground_method = energy.gpu_foreground.method
    run.cpu_energy_j = energy.cpu.value
    run.cpu_method = energy.cpu.method
    run.cpu_foreground_j = energy.cpu_foreground.value
    run.cpu_foreground_method = energy.cpu_foreground.method
    run.dram_energy_j = energy.dram.value
    run.dram_method = energy.dram.method
    run.provenance = {
        "gpu": asdict(energy.gpu),
        "gpu_foreground": asdict(energy.gpu_foreground),
        "cpu": asdict(energy.cpu),
        "cpu_foreground": asdict(energy.cpu_foreground),
        "dram": asdict(energy.dram),
        "flags": list(energy.flags),
        "gpu_uuid": energy.gpu_uuid,
    }
    run.device_state = energy.device_state
    run.device_settings_key = str(energy.device_state.get("settings_key", ""))[:500]
    for name, value in energy.summaries.items():
        # Summaries are named after the Run fields (gpu_power_avg_w, ...).
        if name.startswith("gpu_") and hasattr(run, name):
            setattr(run, name, value)
    run.flags = sorted(set(energy.flags) | set(energy.gpu.flags) | set(energy.cpu.flags))
    coverage = result.coverage
    if coverage is not None:
        run.coverage_percent = coverage.percent
        run.coverage_longest_gap_s = coverage.longest_gap_s
        run.coverage_verdict = coverage.verdict
        run.coverage_background_runs = coverage.background_runs
        run.provenance["coverage"] = {"advice": coverage.advice, "gaps": coverage.gaps}
    run.trace = result.trace
    # The factors of this moment: a host's factors changed later leave this run alone.
    host = Host.objects.filter(experiments__id=experiment_id).first()
    run.factors = host_factors(host).to_dict()
    data, tail = _tail(result.log_path)
    run.log_tail = tail
    if data:
        name = f"{code}/run_{key.config_index}_{key.repeat_index}_{key.attempt}.log"
        run.log.save(name, ContentFile(data), save=False)
    run.save()
    _update_totals(experiment_id)
    return run


def _update_totals(experiment_id: int) -> None:
    runs = Run.objects.filter(experiment_id=experiment_id)
    finished = runs.exclude(status__in=Run.UNFINISHED_STATUSES)
    totals = finished.aggregate(gpu=Sum("gpu_energy_j"), cpu=Sum("cpu_energy_j"))
    verdicts = set(finished.values_list("coverage_verdict", flat=True))
    worst = worst_verdict(verdicts)
    done = finished.values("config_index", "repeat_index").distinct().count()
    Experiment.objects.filter(id=experiment_id).update(
        gpu_energy_j=totals["gpu"],
        cpu_energy_j=totals["cpu"],
        worst_verdict=worst,
        runs_done=done,
    )


def background_run_start(*, experiment_id: int, record: BackgroundRunRecord) -> BackgroundRun:
    run, _created = BackgroundRun.objects.update_or_create(
        experiment_id=experiment_id,
        index=record.index,
        defaults={"started_at": record.started_at},
    )
    return run


def background_run_finish(
    *, experiment_id: int, code: str, record: BackgroundRunRecord
) -> BackgroundRun:
    run, _created = BackgroundRun.objects.get_or_create(
        experiment_id=experiment_id, index=record.index, defaults={"started_at": record.started_at}
    )
    run.ended_at = record.ended_at
    run.exit_code = record.exit_code
    run.stopped = record.stopped
    data, tail = _tail(record.log_path)
    run.log_tail = tail
    if data:
        run.log.save(f"{code}/background_{record.index}.log", ContentFile(data), save=False)
    run.save()
    return run


# --- process groups -----------------------------------------------------------------------


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


__all__ = [
    "PlanPreview",
    "background_run_finish",
    "background_run_start",
    "experiment_cancel",
    "experiment_claim",
    "experiment_delete",
    "experiment_event",
    "experiment_fail",
    "experiment_finish",
    "experiment_heartbeat",
    "experiment_plan_preview",
    "experiment_rerun",
    "experiment_submit",
    "experiment_warnings",
    "experiments_dispatch_pending",
    "experiments_reap_lost",
    "group_close_gone",
    "group_end",
    "group_start",
    "host_gpu_sensors",
    "host_heartbeat",
    "host_register",
    "process_group_request_terminate",
    "process_group_terminated",
    "run_finish",
    "run_samples",
    "run_start",
    "sampling_range_notes",
]
