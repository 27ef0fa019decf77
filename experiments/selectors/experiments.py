"""Reads of experiments and their runs for the pages and the API. Every function here
issues a fixed number of queries, whatever the number of rows (the list page is pinned
by tests)."""

from __future__ import annotations

import datetime as dt
import statistics
import uuid
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from core import runlabel
from experiments.models import BackgroundRun, Experiment, Run, Workload

_LIST_FIELDS = (
    "code",
    "name",
    "mode",
    "status",
    "source",
    "imported",
    "created_at",
    "started_at",
    "ended_at",
    "total_runs",
    "runs_done",
    "gpu_energy_j",
    "cpu_energy_j",
    "worst_verdict",
    "configurations",
    "runs_per_config",
    "owner__username",
    "foreground_workload__name",
    "background_workload__name",
    "host__hostname",
    "gpu_index",
    # The Slurm job's state in a few words (Experiment.slurm_display).
    "target",
    "slurm_job_id",
    "slurm_state",
    "slurm_reason",
    "slurm_node",
    "slurm_submitted_at",
)


def experiment_list(
    *,
    owner: str = "",
    workload: str = "",
    status: str = "",
    mode: str = "",
    q: str = "",
) -> QuerySet[Experiment]:
    """The team's experiments, newest first, filtered. Lazy: paginate before reading."""
    qs = Experiment.objects.select_related(
        "owner", "foreground_workload", "background_workload", "host"
    ).only(*_LIST_FIELDS)
    if owner:
        qs = qs.filter(owner__username=owner)
    if workload:
        qs = qs.filter(
            Q(foreground_workload__name=workload) | Q(background_workload__name=workload)
        )
    if status:
        qs = qs.filter(status=status)
    if mode:
        qs = qs.filter(mode=mode)
    q = q.strip()
    if q:
        cond = Q(name__icontains=q) | Q(foreground_workload__name__icontains=q)
        try:
            cond |= Q(code=uuid.UUID(q))
        except ValueError:
            pass
        qs = qs.filter(cond)
    return qs.order_by("-created_at", "-id")


def experiment_filter_choices() -> dict[str, list[str]]:
    """Owners and workloads for the list filters (two small queries)."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(experiments__isnull=False).distinct()
    return {
        "owners": sorted(users.values_list("username", flat=True)),
        "workloads": list(Workload.objects.values_list("name", flat=True)),
    }


def experiment_detail(*, experiment: Experiment) -> dict[str, Any]:
    """Runs and background runs of one experiment (two queries; traces and log tails
    stay behind: a background run says only whether it has a tail, ``has_log_tail``,
    which the page's log link needs without loading each tail)."""
    from django.db.models import BooleanField, ExpressionWrapper

    runs = list(
        experiment.runs.defer("trace", "log_tail").order_by(
            "config_index", "repeat_index", "attempt"
        )
    )
    background = list(
        BackgroundRun.objects.filter(experiment=experiment)
        .defer("log_tail")
        .annotate(has_log_tail=ExpressionWrapper(~Q(log_tail=""), output_field=BooleanField()))
        .order_by("index")
    )
    return {"runs": runs, "background_runs": background}


def experiment_progress(*, experiment: Experiment, runs: list[Run]) -> dict[str, Any]:
    """Runs done / total, the current run's elapsed time and an expected end.

    The ETA is the mean duration of the finished runs (plus the sleep between runs)
    times what is left; None until one run has finished.
    """
    now = timezone.now()
    total = experiment.total_runs or experiment.configurations * experiment.runs_per_config
    done = experiment.runs_done
    percent = 100.0 * done / total if total else 0.0
    eta = None
    running = [r for r in runs if r.status == Run.Status.RUNNING]
    current = running[-1] if running else None
    durations = [r.duration_s for r in runs if r.duration_s]
    if experiment.is_active and durations and total > done:
        per_run = statistics.fmean(durations) + experiment.sleep_between_runs
        left = (total - done) * per_run
        if current and current.started_at:
            left -= min((now - current.started_at).total_seconds(), per_run)
        eta = now + dt.timedelta(seconds=max(left, 0.0))
    elapsed = None
    if current and current.started_at:
        elapsed = (now - current.started_at).total_seconds()
    exp_elapsed = None
    if experiment.started_at:
        exp_elapsed = ((experiment.ended_at or now) - experiment.started_at).total_seconds()
    return {
        "total": total,
        "done": done,
        "percent": percent,
        "current": current,
        "current_elapsed_s": elapsed,
        "elapsed_s": exp_elapsed,
        "eta": eta,
    }


#: PostgreSQL integer columns: a larger number in a URL is simply not found.
MAX_INT = 2**31 - 1


def run_for_experiment(*, experiment: Experiment, index: runlabel.RunIndex) -> Run | None:
    """The run a label names (core.runlabel: attempt 1 is also an imported run's 0)."""
    if max(index) > MAX_INT:
        return None
    return (
        Run.objects.filter(
            experiment=experiment,
            config_index=index.config_index,
            repeat_index=index.repeat_index,
            attempt__in=runlabel.stored_attempts(index.attempt),
        )
        .select_related("experiment")
        .order_by("-attempt")
        .first()
    )


def background_runs_between(
    *, experiment: Experiment, start: dt.datetime, end: dt.datetime
) -> list[BackgroundRun]:
    """Background runs that overlap [start, end] (one query)."""
    return list(
        BackgroundRun.objects.filter(experiment=experiment, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .defer("log_tail")
        .order_by("index")
    )


def runs_by_refs(refs: list[str]) -> list[Run]:
    """Runs named ``<experiment code>:<run label>`` (core.runlabel; one query)."""
    cond = Q()
    any_valid = False
    for ref in refs[:50]:
        code, _, rest = ref.partition(":")
        index = runlabel.parse_run_label(rest)
        try:
            uid = uuid.UUID(code)
        except ValueError:
            continue
        if index is None:
            continue
        cond |= Q(
            experiment__code=uid,
            config_index=index.config_index,
            repeat_index=index.repeat_index,
            attempt__in=runlabel.stored_attempts(index.attempt),
        )
        any_valid = True
    if not any_valid:
        return []
    return list(
        Run.objects.filter(cond)
        .select_related("experiment", "experiment__foreground_workload")
        .defer("trace", "log_tail")
    )
