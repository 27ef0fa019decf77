"""Reads for the pages and the API. Every function here issues a fixed number of
queries, whatever the number of rows (the list and compare pages are pinned by tests).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import statistics
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from core import runlabel
from core.liveness import online_seconds
from experiments import carbon, stats
from experiments.figures import FIGURES, EnergyFigure
from experiments.figures import best as figures_best
from experiments.jsonshapes import read_as
from experiments.models import BackgroundRun, Experiment, Host, ProcessGroup, Run, Workload
from experiments.mutation import config_key

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
_MAX_INT = 2**31 - 1


def run_for_experiment(*, experiment: Experiment, index: runlabel.RunIndex) -> Run | None:
    """The run a label names (core.runlabel: attempt 1 is also an imported run's 0)."""
    if max(index) > _MAX_INT:
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


# --- Hosts -------------------------------------------------------------------------


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


# --- Compare -----------------------------------------------------------------------

#: The charts plot a workload's latest runs up to this many (the page says so); the
#: table's medians come from all of them, aggregated by the database.
COMPARE_POINTS = 600
#: Configurations in the table (the CSV has them all).
COMPARE_ROWS = 50


@dataclass
class GroupStats:
    """One group of runs: n, median, spread (min–max), and the median's bootstrap 95 %
    interval when the group's values were kept for statistics."""

    n: int
    median: float | None
    low: float | None
    high: float | None
    stdev: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    #: The group's values (the latest ``STATS_VALUES``), for the statistics.
    values: list[float] = field(default_factory=list, repr=False)

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
            values=values[:STATS_VALUES],
        )


@dataclass
class CompareRow:
    key: str
    hyperparameters: dict[str, Any]
    solo: GroupStats
    parallel: GroupStats
    imported: bool = False
    #: Parallel against solo (``stats.compare``), for the rows measured both ways that
    #: the chart shows.
    comparison: stats.Comparison | None = None

    @property
    def ratio(self) -> float | None:
        if self.solo.median and self.parallel.median is not None:
            return self.parallel.median / self.solo.median
        return None

    @property
    def verdict(self) -> str:
        return self.comparison.verdict("parallel", "solo") if self.comparison else ""


@dataclass
class ComparePoint:
    code: str
    config_index: int
    repeat_index: int
    attempt: int
    mode: str
    hyperparameters: dict[str, Any]
    #: The chosen figure in the chosen unit; None for a run without it (listed to pick,
    #: never plotted).
    value: float | None
    method: str
    metrics: dict[str, float]
    imported: bool

    @property
    def run_ref(self) -> str:
        return runlabel.run_label(self.config_index, self.repeat_index, self.attempt)


@dataclass
class CompareData:
    workload: Workload
    figure: EnergyFigure
    rows: list[CompareRow]
    #: Runs with the figure, latest first, for the charts.
    points: list[ComparePoint]
    metric_names: list[str]
    numeric_params: list[str]
    truncated: bool
    methods: dict[str, int] = field(default_factory=dict)
    #: Finished runs with the figure.
    total_runs: int = 0
    configurations: int = 0
    #: Finished runs whatever their figures, and how many have each figure.
    finished_runs: int = 0
    figure_counts: dict[str, int] = field(default_factory=dict)
    #: The latest finished runs whatever their figures, to pick side by side.
    recent: list[ComparePoint] = field(default_factory=list)
    #: J, kWh, kgCO2e or cost (experiments.carbon.UNITS), and its label for the pages.
    unit: str = carbon.Unit.J
    unit_label: str = "J"
    #: The cache key these figures are stored under ("" when not cached): the page
    #: caches what it draws from them under the same key.
    cache_key: str = ""

    @property
    def lacking(self) -> int:
        return self.finished_runs - self.total_runs

    @property
    def methods_text(self) -> str:
        """Each method's label and count, or "none" (never a bare period)."""
        labels = dict(Run.Method.choices)
        if self.figure.fixed_method:
            labels[self.figure.fixed_method] = self.figure.fixed_method_label
        return (
            ", ".join(
                " + ".join(labels.get(part, part) for part in m.split(" + ")) + f" ({n})"
                for m, n in self.methods.items()
            )
            or "none"
        )


#: Values kept per group for the statistics (the latest): the bootstrap costs
#: n_resamples x n per group, and 60 runs already pin a median to a few per cent of the
#: spread; the page says how many a group has in all.
STATS_VALUES = 60
#: Rows of the table that get statistics: the ones the chart draws.
STATS_ROWS = 12


def _finished(workload: Workload) -> QuerySet[Run]:
    return Run.objects.filter(experiment__foreground_workload=workload, status=Run.Status.SUCCEEDED)


def _with_figure(workload: Workload, figure: EnergyFigure) -> QuerySet[Run]:
    return _finished(workload).filter(**{f"{part}__isnull": False for part in figure.parts})


def figure_counts(*, workload: Workload) -> tuple[int, dict[str, int], dict[str, Any]]:
    """Finished runs, how many have each figure, and the cache state (newest id, latest
    end), in one aggregate query."""
    from django.db.models import Count, Max

    aggregates: dict[str, Any] = {
        "n": Count("id"),
        "last": Max("id"),
        "end": Max("ended_at"),
    }
    for f in FIGURES:
        present = Q(**{f"{part}__isnull": False for part in f.parts})
        aggregates[f"fig_{f.key}"] = Count("id", filter=present)
    row = _finished(workload).aggregate(**aggregates)
    counts = {f.key: int(row[f"fig_{f.key}"] or 0) for f in FIGURES}
    return int(row["n"] or 0), counts, row


# Two steps so the percentile is computed only for the configurations shown: count
# runs per configuration (cheap), keep the top ones, then aggregate their energies.
# {value} is a figure's expression from experiments.figures, never user input.
# The workload's experiments are looked up first (an array of ids): the runs are then
# read through their (experiment, status) index, not by a scan of every run. The
# shown configurations are numbered once, and the per-group aggregate sorts on that
# number, not on the jsonb hyperparameters (jsonb equality still decides the groups:
# 1 and 1.0 are one configuration). Only the groups that can be among the shown ones
# (at least as measured as the limit-th: "cut") are sorted by their text, not all of a
# workload's 15,000 (the same rows, 93 -> 86 ms median at 100,000 runs, load 4.5-5).
_GROUPS_SQL = """
WITH base AS MATERIALIZED (
    SELECT r.id AS id, r.hyperparameters AS hp, e.mode AS mode, {value} AS energy,
           r.imported AS imp
    FROM experiments_run r JOIN experiments_experiment e ON e.id = r.experiment_id
    WHERE r.experiment_id = ANY(ARRAY(
              SELECT id FROM experiments_experiment WHERE foreground_workload_id = %(workload)s))
          AND r.status = %(status)s AND {value} IS NOT NULL
), grouped AS MATERIALIZED (
    SELECT hp, bool_or(mode = 'solo')::int + bool_or(mode = 'parallel')::int AS modes,
           count(*) AS total
    FROM base GROUP BY hp
), cut AS (
    SELECT modes, total FROM grouped ORDER BY modes DESC, total DESC
    OFFSET %(limit)s - 1 LIMIT 1
), top AS (
    SELECT hp, modes, total, (SELECT count(*) FROM grouped) AS configs,
           row_number() OVER (ORDER BY modes DESC, total DESC, hp::text) AS rank
    FROM (
        SELECT hp, modes, total FROM grouped
        WHERE NOT EXISTS (SELECT 1 FROM cut) OR (modes, total) >= (SELECT modes, total FROM cut)
        ORDER BY modes DESC, total DESC, hp::text LIMIT %(limit)s
    ) counted
)
SELECT min(t.hp::text), b.mode, count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY b.energy),
       min(b.energy), max(b.energy), stddev_samp(b.energy), bool_or(b.imp), max(t.configs),
       (array_agg(b.energy ORDER BY b.id DESC))[1:%(values)s]
FROM base b JOIN top t ON t.hp = b.hp
GROUP BY t.rank, b.mode
ORDER BY t.rank, b.mode
"""


def _currency() -> str:
    cur = str(getattr(settings, "WATTLAB_CURRENCY", "") or "")
    return cur if re.fullmatch(r"[A-Z]{3}", cur) else ""


def _value_sql(figure: EnergyFigure, unit: str) -> str:
    """The figure in the unit, per run with the factors it kept (NULL where one is not
    set). Costs add up only in the installation's currency (WATTLAB_CURRENCY)."""
    value = figure.sql("r")
    if unit == carbon.Unit.J:
        return value
    kwh = f"({value} / {carbon.J_PER_KWH})"
    facility = f"({kwh} * COALESCE((r.factors->>'pue')::float, 1.0))"
    if unit == carbon.Unit.KWH:
        return kwh
    if unit == carbon.Unit.KGCO2E:
        return f"({facility} * (r.factors->>'carbon_intensity_g_per_kwh')::float / 1000.0)"
    cur = _currency()  # three capital letters, checked: safe inside the SQL text
    return (
        f"(CASE WHEN r.factors->>'currency' = '{cur}' "
        f"THEN {facility} * (r.factors->>'price_per_kwh')::float END)"
    )


def _value_python(joules: float | None, factors: dict[str, Any] | None, unit: str) -> float | None:
    if joules is None:
        return None
    if unit in (carbon.Unit.J, carbon.Unit.KWH):
        return carbon.convert(joules, unit, None)  # no factor involved
    f = carbon.Factors.from_dict(factors)
    if unit == carbon.Unit.COST and (f is None or f.currency != _currency()):
        return None
    if unit in (carbon.Unit.KGCO2E, carbon.Unit.COST) and f is None:
        return None
    return carbon.convert(joules, unit, f)


def _unit_present(unit: str) -> Q:
    if unit == carbon.Unit.KGCO2E:
        return Q(factors__carbon_intensity_g_per_kwh__isnull=False)
    if unit == carbon.Unit.COST:
        return Q(factors__price_per_kwh__isnull=False, factors__currency=_currency())
    return Q()


def _groups_postgres(
    workload: Workload, figure: EnergyFigure, limit: int, unit: str = carbon.Unit.J
) -> tuple[list[CompareRow], int]:
    """Median / spread / n per configuration and mode, computed by PostgreSQL (jsonb
    equality is by value, so 1 and 1.0 are the same configuration)."""
    from django.db import connection

    rows: dict[str, CompareRow] = {}
    configs = 0
    sql = _GROUPS_SQL.format(value=_value_sql(figure, unit))
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "workload": workload.pk,
                "status": Run.Status.SUCCEEDED,
                "limit": limit,
                "values": STATS_VALUES,
            },
        )
        for hp_text, mode, n, med, lo, hi, sd, imp, total, values in cursor.fetchall():
            configs = int(total)
            hp = read_as(Run, "hyperparameters", json.loads(hp_text))
            key = config_key(hp)  # 2 and 2.0 are one group in jsonb: one row here too
            row = rows.get(key)
            if row is None:
                empty = GroupStats(0, None, None, None, None)
                row = rows[key] = CompareRow(key, hp, empty, empty)
            group = GroupStats(
                int(n),
                float(med),
                float(lo),
                float(hi),
                float(sd) if sd is not None else None,
                values=[float(v) for v in values],
            )
            if mode == Experiment.Mode.PARALLEL:
                row.parallel = group
            else:
                row.solo = group
            row.imported = row.imported or bool(imp)
    return list(rows.values()), configs


def _groups_python(
    workload: Workload, figure: EnergyFigure, limit: int, unit: str = carbon.Unit.J
) -> tuple[list[CompareRow], int]:
    """The same figures in Python, for SQLite (no percentile aggregate there)."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"solo": [], "parallel": []})
    hparams: dict[str, dict[str, Any]] = {}
    imported_keys: set[str] = set()
    for hp, mode, imported, factors, *parts in (
        _with_figure(workload, figure)
        .order_by("-id")
        .values_list("hyperparameters", "experiment__mode", "imported", "factors", *figure.parts)
    ):
        value = _value_python(sum(float(p) for p in parts), factors, unit)
        if value is None:
            continue
        key = config_key(hp or {})
        groups[key][mode].append(value)
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


def _add_statistics(rows: list[CompareRow], limit: int) -> None:
    """Bootstrap intervals of each group and parallel against solo, for the first
    ``limit`` rows (the bootstrap is the page's costliest step)."""
    for row in rows[:limit]:
        if row.solo.values and row.parallel.values:
            row.comparison = c = stats.compare(row.parallel.values, row.solo.values)
            row.parallel.ci_low, row.parallel.ci_high = c.a.low, c.a.high
            row.solo.ci_low, row.solo.ci_high = c.b.low, c.b.high
            continue
        for group in (row.solo, row.parallel):
            if group.values:
                summary = stats.summarise(group.values)
                group.ci_low, group.ci_high = summary.low, summary.high


def compare_workload_cached(
    *, workload: Workload, figure: EnergyFigure | None = None, unit: str = carbon.Unit.J
) -> CompareData:
    """``compare_workload`` behind a cache keyed by the workload's finished runs (their
    number, newest id and latest end), the figure asked for ("auto": the default one)
    and the unit: any run finishing, imported or deleted changes the key, so the page
    never shows stale figures. One aggregate query gives the key and, on a miss, the
    per-figure counts (to choose the default); it reads only the runs' covering index."""
    from experiments import cache

    finished, per_figure, state = figure_counts(workload=workload)
    end = state["end"].timestamp() if state["end"] else 0
    asked = figure.key if figure else "auto"
    key = f"wattlab-compare-{workload.pk}-{asked}-{unit}-{state['n']}-{state['last']}-{end}"
    cached = cache.get(key)
    if isinstance(cached, CompareData):
        return cached
    data = compare_workload(
        workload=workload, figure=figure, unit=unit, counts=(finished, per_figure)
    )
    data.cache_key = key
    cache.put(key, data, timeout=COMPARE_CACHE_SECONDS)
    return data


#: How long a comparison is kept. Its key names the data it was computed from (any run
#: finishing, imported or deleted makes a new key), so it is never stale; the limit
#: only frees what no one reads, beside the cache's own bound on entries.
COMPARE_CACHE_SECONDS = 7 * 24 * 3600


def compare_workload_warm(*, workload: Workload) -> CompareData:
    """Compute and keep the comparison Compare shows first for ``workload`` (its default
    figure, in joules), so the first reader after an experiment ends finds it ready.
    Called by the worker once an experiment has ended (workers.tasks)."""
    return compare_workload_cached(workload=workload, figure=None, unit=carbon.Unit.J)


def compare_workload(
    *,
    workload: Workload,
    figure: EnergyFigure | None = None,
    row_limit: int = COMPARE_ROWS,
    stats_rows: int = STATS_ROWS,
    counts: tuple[int, dict[str, int]] | None = None,
    unit: str = carbon.Unit.J,
) -> CompareData:
    """A workload's finished runs for the compare page on one energy figure (the one
    most runs have unless given), in a fixed number of queries whatever their number:
    the figure counts, the configurations table (median, spread, n and the latest
    values per mode, the ``row_limit`` configurations measured most), the figure's
    methods, the latest ``COMPARE_POINTS`` runs with the figure for the charts, and the
    latest runs whatever their figures to pick side by side. In kgCO2e or cost a run
    counts only where it kept the factor (one more count query)."""
    from django.db import connection
    from django.db.models import Count

    if counts is None:
        finished, per_figure, _state = figure_counts(workload=workload)
    else:
        finished, per_figure = counts
    figure = figure or figures_best(per_figure)
    if connection.vendor == "postgresql":
        compare_rows, configs = _groups_postgres(workload, figure, row_limit, unit)
    else:
        compare_rows, configs = _groups_python(workload, figure, row_limit, unit)
    _add_statistics(compare_rows, stats_rows)
    methods: dict[str, int] = {}
    if figure.fixed_method:
        methods[figure.fixed_method] = per_figure.get(figure.key, 0)
    else:
        for *ms, n in (
            _with_figure(workload, figure)
            .order_by()
            .values_list(*figure.method_fields)
            .annotate(n=Count("id"))
        ):
            label = " + ".join(m or "unknown" for m in ms)
            methods[label] = methods.get(label, 0) + n
    columns = (
        "experiment__code",
        "config_index",
        "repeat_index",
        "attempt",
        "experiment__mode",
        "hyperparameters",
        "metrics",
        "imported",
        "factors",
        *figure.parts,
        *figure.method_fields,
    )
    n_parts = len(figure.parts)

    def point(values: tuple[Any, ...]) -> ComparePoint:
        code, ci, ri, at, mode, hp, metrics, imported, factors = values[:9]
        parts = values[9 : 9 + n_parts]
        ms = values[9 + n_parts :]
        joules = None if any(p is None for p in parts) else sum(float(p) for p in parts)
        energy = _value_python(joules, factors, unit)
        method = figure.fixed_method or " + ".join(m or "unknown" for m in ms)
        return ComparePoint(
            str(code), ci, ri, at, mode, hp or {}, energy, method, metrics or {}, imported
        )

    points = [
        point(v)
        for v in _with_figure(workload, figure)
        .filter(_unit_present(unit))
        .order_by("-id")
        .values_list(*columns)[:COMPARE_POINTS]
    ]
    recent = [point(v) for v in _finished(workload).order_by("-id").values_list(*columns)[:30]]
    metric_names: set[str] = set()
    numeric: set[str] = set()
    for p in points:
        metric_names.update(k for k, v in p.metrics.items() if isinstance(v, int | float))
        for name, value in p.hyperparameters.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                numeric.add(name)
    total = per_figure.get(figure.key, 0)
    if unit in (carbon.Unit.KGCO2E, carbon.Unit.COST):
        total = _with_figure(workload, figure).filter(_unit_present(unit)).count()
    return CompareData(
        workload=workload,
        figure=figure,
        rows=compare_rows,
        points=points,
        metric_names=sorted(metric_names),
        numeric_params=sorted(numeric),
        truncated=total > len(points),
        methods=methods,
        total_runs=total,
        configurations=configs,
        finished_runs=finished,
        figure_counts=per_figure,
        recent=recent,
        unit=unit,
        unit_label=carbon.unit_label(unit, _currency()),
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
