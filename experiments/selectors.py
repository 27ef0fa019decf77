"""Reads for the pages and the API. Every function here issues a fixed number of
queries, whatever the number of rows (the list and compare pages are pinned by tests).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from experiments.models import BackgroundRun, Experiment, Host, ProcessGroup, Run, Workload

#: Columns the list shows; the big JSON columns (plan, submitted config) stay in the DB.
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
)

FINISHED_STATUSES = (
    Experiment.Status.SUCCEEDED,
    Experiment.Status.FAILED,
    Experiment.Status.CANCELLED,
    Experiment.Status.LOST,
    Experiment.Status.IMPORTED,
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
    """Runs and background runs of one experiment (two queries; traces stay behind)."""
    runs = list(
        experiment.runs.defer("trace", "log_tail").order_by(
            "config_index", "repeat_index", "attempt"
        )
    )
    background = list(
        BackgroundRun.objects.filter(experiment=experiment).defer("log_tail").order_by("index")
    )
    return {"runs": runs, "background_runs": background}


def experiment_progress(*, experiment: Experiment, runs: list[Run] | None = None) -> dict[str, Any]:
    """Runs done / total, the current run's elapsed time and an expected end.

    The ETA is the mean duration of the finished runs (plus the sleep between runs)
    times what is left; None until one run has finished.
    """
    now = timezone.now()
    total = experiment.total_runs or experiment.configurations * experiment.runs_per_config
    done = experiment.runs_done
    percent = 100.0 * done / total if total else 0.0
    current = None
    eta = None
    if runs is not None:
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
_MAX_INT = 2**31 - 1


def run_for_experiment(
    *, experiment: Experiment, config_index: int, repeat_index: int, attempt: int
) -> Run | None:
    if max(config_index, repeat_index, attempt) > _MAX_INT:
        return None
    return (
        Run.objects.filter(
            experiment=experiment,
            config_index=config_index,
            repeat_index=repeat_index,
            attempt=attempt,
        )
        .select_related("experiment")
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


# --- Hosts -------------------------------------------------------------------------


def host_online_after() -> dt.datetime:
    """A host is online when its heartbeat is younger than three heartbeat periods."""
    seconds = max(3 * float(getattr(settings, "WATTLAB_HEARTBEAT_SECONDS", 10.0)), 30.0)
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


def target_choices() -> list[tuple[str, str]]:
    """ "any", then each online host and each of its GPUs."""
    choices = [("any", "any free GPU")]
    for host in Host.objects.filter(last_heartbeat__gte=host_online_after()):
        choices.append((host.hostname, f"{host.hostname} (any GPU)"))
        for gpu in host.gpus or []:
            idx = gpu.get("index")
            name = gpu.get("name", "GPU")
            choices.append((f"{host.hostname}:{idx}", f"{host.hostname}:{idx} — {name}"))
    return choices


# --- Orphaned process groups (admin) ----------------------------------------------


def orphaned_groups_q() -> Q:
    """Not ended while its experiment is over, or its host stopped sending heartbeats."""
    stale = host_online_after()
    return Q(ended_at__isnull=True) & (
        Q(experiment__status__in=FINISHED_STATUSES)
        | Q(host__last_heartbeat__lt=stale)
        | Q(host__last_heartbeat__isnull=True)
    )


def process_groups_orphaned() -> QuerySet[ProcessGroup]:
    return ProcessGroup.objects.filter(orphaned_groups_q())


# --- Compare -----------------------------------------------------------------------

#: The charts plot a workload's latest runs up to this many (the page says so); the
#: table's medians come from all of them, aggregated by the database.
COMPARE_POINTS = 600
#: Configurations in the table (the CSV has them all).
COMPARE_ROWS = 50


def hyper_key(hyperparameters: dict[str, Any]) -> str:
    """Same configuration whatever the representation (1 == 1.0 == "1")."""

    def norm(value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    return json.dumps({k: norm(v) for k, v in sorted(hyperparameters.items())}, sort_keys=True)


@dataclass
class GroupStats:
    n: int
    median: float | None
    low: float | None
    high: float | None
    stdev: float | None

    @classmethod
    def of(cls, values: list[float]) -> GroupStats:
        if not values:
            return cls(0, None, None, None, None)
        return cls(
            len(values),
            statistics.median(values),
            min(values),
            max(values),
            statistics.stdev(values) if len(values) > 1 else None,
        )


@dataclass
class CompareRow:
    key: str
    hyperparameters: dict[str, Any]
    solo: GroupStats
    parallel: GroupStats
    imported: bool = False

    @property
    def ratio(self) -> float | None:
        if self.solo.median and self.parallel.median is not None:
            return self.parallel.median / self.solo.median
        return None


@dataclass
class ComparePoint:
    code: str
    config_index: int
    repeat_index: int
    attempt: int
    mode: str
    hyperparameters: dict[str, Any]
    energy_j: float
    gpu_method: str
    metrics: dict[str, float]
    imported: bool

    @property
    def run_ref(self) -> str:
        return f"{self.config_index}.{self.repeat_index}.{self.attempt}"


@dataclass
class CompareData:
    workload: Workload
    rows: list[CompareRow]
    points: list[ComparePoint]
    metric_names: list[str]
    numeric_params: list[str]
    truncated: bool
    methods: dict[str, int] = field(default_factory=dict)
    total_runs: int = 0
    configurations: int = 0


def _compare_base(workload: Workload) -> QuerySet[Run]:
    return Run.objects.filter(
        experiment__foreground_workload=workload,
        status=Run.Status.SUCCEEDED,
        gpu_energy_j__isnull=False,
    )


# Two steps so the percentile is computed only for the configurations shown: count
# runs per configuration (cheap), keep the top ones, then aggregate their energies.
_GROUPS_SQL = """
WITH base AS MATERIALIZED (
    SELECT r.hyperparameters AS hp, e.mode AS mode, r.gpu_energy_j AS energy,
           r.imported AS imp
    FROM experiments_run r JOIN experiments_experiment e ON e.id = r.experiment_id
    WHERE e.foreground_workload_id = %s AND r.status = %s AND r.gpu_energy_j IS NOT NULL
), top AS (
    SELECT hp, bool_or(mode = 'solo')::int + bool_or(mode = 'parallel')::int AS modes,
           count(*) AS total, count(*) OVER () AS configs
    FROM base GROUP BY hp ORDER BY 2 DESC, 3 DESC, hp::text LIMIT %s
)
SELECT b.hp::text, b.mode, count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY b.energy),
       min(b.energy), max(b.energy), stddev_samp(b.energy), bool_or(b.imp), max(t.configs)
FROM base b JOIN top t ON t.hp = b.hp
GROUP BY b.hp, b.mode, t.modes, t.total
ORDER BY t.modes DESC, t.total DESC, b.hp::text, b.mode
"""


def _groups_postgres(workload: Workload, limit: int) -> tuple[list[CompareRow], int]:
    """Median / spread / n per configuration and mode, computed by PostgreSQL (jsonb
    equality is by value, so 1 and 1.0 are the same configuration)."""
    from django.db import connection

    rows: dict[str, CompareRow] = {}
    configs = 0
    with connection.cursor() as cursor:
        cursor.execute(_GROUPS_SQL, [workload.pk, Run.Status.SUCCEEDED, limit])
        for hp_text, mode, n, med, lo, hi, sd, imp, total in cursor.fetchall():
            configs = int(total)
            hp = json.loads(hp_text)
            key = hyper_key(hp)  # 2 and 2.0 are one group in jsonb: one row here too
            row = rows.get(key)
            if row is None:
                empty = GroupStats(0, None, None, None, None)
                row = rows[key] = CompareRow(key, hp, empty, empty)
            stats = GroupStats(
                int(n), float(med), float(lo), float(hi), float(sd) if sd is not None else None
            )
            if mode == Experiment.Mode.PARALLEL:
                row.parallel = stats
            else:
                row.solo = stats
            row.imported = row.imported or bool(imp)
    return list(rows.values()), configs


def _groups_python(workload: Workload, limit: int) -> tuple[list[CompareRow], int]:
    """The same figures in Python, for SQLite (no percentile aggregate there)."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"solo": [], "parallel": []})
    hparams: dict[str, dict[str, Any]] = {}
    imported_keys: set[str] = set()
    for hp, mode, energy, imported in _compare_base(workload).values_list(
        "hyperparameters", "experiment__mode", "gpu_energy_j", "imported"
    ):
        if energy is None:  # excluded by the query; keeps the type checker honest
            continue
        key = hyper_key(hp or {})
        groups[key][mode].append(energy)
        hparams.setdefault(key, hp or {})
        if imported:
            imported_keys.add(key)
    rows = [
        CompareRow(
            key,
            hparams[key],
            GroupStats.of(g["solo"]),
            GroupStats.of(g["parallel"]),
            key in imported_keys,
        )
        for key, g in groups.items()
    ]
    # Configurations measured both ways first: they are what the comparison is for.
    rows.sort(key=lambda r: (not (r.solo.n and r.parallel.n), -(r.solo.n + r.parallel.n), r.key))
    return rows[:limit], len(rows)


def compare_workload_cached(*, workload: Workload) -> CompareData:
    """``compare_workload`` behind a cache keyed by the workload's finished runs (their
    number, newest id and latest end): any run finishing, imported or deleted changes
    the key, so the page never shows stale figures; one cheap aggregate query checks it."""
    from django.core.cache import cache
    from django.db.models import Count, Max

    state = _compare_base(workload).aggregate(n=Count("id"), last=Max("id"), end=Max("ended_at"))
    end = state["end"].timestamp() if state["end"] else 0
    key = f"wattlab-compare-{workload.pk}-{state['n']}-{state['last']}-{end}"
    cached = cache.get(key)
    if isinstance(cached, CompareData):
        return cached
    data = compare_workload(workload=workload)
    cache.set(key, data, timeout=600)
    return data


def compare_workload(*, workload: Workload, row_limit: int = COMPARE_ROWS) -> CompareData:
    """A workload's finished runs for the compare page, in three queries whatever their
    number: the configurations table (median, spread and n per mode, the ``row_limit``
    configurations measured most), the GPU energy methods, and the latest
    ``COMPARE_POINTS`` runs for the charts."""
    from django.db import connection
    from django.db.models import Count

    if connection.vendor == "postgresql":
        compare_rows, configs = _groups_postgres(workload, row_limit)
    else:
        compare_rows, configs = _groups_python(workload, row_limit)
    methods = {
        (m or "unknown"): n
        for m, n in _compare_base(workload)
        .order_by()
        .values_list("gpu_method")
        .annotate(n=Count("id"))
    }
    rows = list(
        _compare_base(workload)
        .order_by("-id")
        .values_list(
            "experiment__code",
            "config_index",
            "repeat_index",
            "attempt",
            "experiment__mode",
            "hyperparameters",
            "gpu_energy_j",
            "gpu_method",
            "metrics",
            "imported",
        )[:COMPARE_POINTS]
    )
    points: list[ComparePoint] = []
    metric_names: set[str] = set()
    numeric: set[str] = set()
    for code, ci, ri, at, mode, hp, energy, method, metrics, imported in rows:
        if energy is None:  # excluded by the query; keeps the type checker honest
            continue
        hp = hp or {}
        metrics = metrics or {}
        metric_names.update(k for k, v in metrics.items() if isinstance(v, int | float))
        for name, value in hp.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                numeric.add(name)
        points.append(
            ComparePoint(str(code), ci, ri, at, mode, hp, energy, method, metrics, imported)
        )
    total = sum(methods.values())
    return CompareData(
        workload=workload,
        rows=compare_rows,
        points=points,
        metric_names=sorted(metric_names),
        numeric_params=sorted(numeric),
        truncated=total > len(points),
        methods=methods,
        total_runs=total,
        configurations=configs,
    )


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when energy (x) is minimised and the metric (y)
    maximised; sorted by energy."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def runs_by_refs(refs: list[str]) -> list[Run]:
    """Runs named ``<experiment code>:<config>.<repeat>.<attempt>`` (one query)."""
    cond = Q()
    any_valid = False
    for ref in refs[:50]:
        code, _, rest = ref.partition(":")
        parts = rest.split(".")
        try:
            uid = uuid.UUID(code)
            ci, ri, at = (int(p) for p in parts)
        except ValueError:
            continue
        if max(ci, ri, at) > _MAX_INT or min(ci, ri, at) < 0:
            continue
        cond |= Q(experiment__code=uid, config_index=ci, repeat_index=ri, attempt=at)
        any_valid = True
    if not any_valid:
        return []
    return list(
        Run.objects.filter(cond)
        .select_related("experiment", "experiment__foreground_workload")
        .defer("trace", "log_tail")
    )
