"""Reads behind Compare, its CSV, the report's comparison, the API's and ``submit
--wait``'s: a workload's succeeded runs as ``experiments.comparison.RunRecord``, in a
fixed number of queries whatever their number (the page is pinned by tests), then one
``comparison.Table`` built from them in Python for PostgreSQL and SQLite alike.

No arithmetic on energies happens in SQL: PostgreSQL raises on a float overflow (an
energy edited to 1.7e308 J summed into a total), Python gives inf, which the comparison
leaves out and counts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from experiments import carbon, comparison
from experiments.comparison import RunRecord, Table
from experiments.figures import FIGURES, EnergyFigure
from experiments.figures import best as figures_best
from experiments.models import Experiment, Run, Workload
from experiments.mutation import config_key

#: The charts plot a workload's latest runs up to this many (the page says so); the
#: table's statistics come from all the runs of its configurations.
COMPARE_POINTS = 600
#: Configurations in the table (the CSV and the API have them all).
COMPARE_ROWS = 50
#: Rows the parallel-vs-solo chart draws (the table has every row).
CHART_ROWS = 12


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
        return f"{self.config_index}.{self.repeat_index}.{self.attempt}"


@dataclass
class CompareData:
    workload: Workload
    figure: EnergyFigure
    table: Table
    #: Runs with the figure, latest first, for the charts.
    points: list[ComparePoint]
    metric_names: list[str]
    numeric_params: list[str]
    truncated: bool
    methods: dict[str, int] = field(default_factory=dict)
    #: Finished runs with the figure.
    total_runs: int = 0
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
    #: Runs whose figure (in the unit) is not a finite number: left out everywhere.
    not_finite: int = 0

    @property
    def rows(self) -> list[comparison.Row]:
        return self.table.rows

    @property
    def configurations(self) -> int:
        return self.table.configurations

    @property
    def include_partial(self) -> bool:
        return self.table.include_partial

    @property
    def lacking(self) -> int:
        return self.finished_runs - self.total_runs

    @property
    def methods_text(self) -> str:
        """Each method's label and count, or "none" (never a bare period)."""
        return methods_text(self.figure, self.methods)

    @property
    def chart_rows(self) -> list[comparison.Row]:
        return self.rows[:CHART_ROWS]


def methods_text(figure: EnergyFigure, methods: dict[str, int]) -> str:
    labels = dict(Run.Method.choices)
    if figure.fixed_method:
        labels[figure.fixed_method] = figure.fixed_method_label
    return (
        ", ".join(
            " + ".join(labels.get(part, part) for part in m.split(" + ")) + f" ({n})"
            for m, n in methods.items()
        )
        or "none"
    )


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
    return int(row["n"] or 0), counts, {"last": row["last"], "end": row["end"]}


def _currency() -> str:
    cur = str(getattr(settings, "WATTLAB_CURRENCY", "") or "")
    return cur if re.fullmatch(r"[A-Z]{3}", cur) else ""


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


# --- The runs of a comparison --------------------------------------------------------

#: What a ``RunRecord`` is read from, in this order (the SQL below selects the same).
_RECORD_COLUMNS = (
    "id",
    "hyperparameters",
    "experiment__mode",
    "imported",
    "factors",
    "gpu_energy_j",
    "gpu_foreground_j",
    "cpu_energy_j",
    "dram_energy_j",
    "gpu_method",
    "gpu_foreground_method",
    "cpu_method",
    "dram_method",
    "duration_s",
    "coverage_percent",
    "coverage_verdict",
)


def _record(values: tuple[Any, ...], figure: EnergyFigure, unit: str) -> RunRecord | None:
    """A record from a row of ``_RECORD_COLUMNS``; None when the run has no value in the
    unit (no carbon intensity for kgCO2e, another currency for a cost)."""
    (rid, hp, mode, imported, factors, gpu, gpu_fg, cpu, dram) = values[:9]
    (gpu_m, gpu_fg_m, cpu_m, dram_m, duration, cov, verdict) = values[9:]
    hp = hp or {}
    record = RunRecord(
        id=int(rid),
        mode=str(mode),
        hyperparameters=hp,
        key=config_key(hp),
        value=None,
        gpu_energy_j=gpu,
        gpu_foreground_j=gpu_fg,
        cpu_energy_j=cpu,
        dram_energy_j=dram,
        gpu_method=gpu_m or "",
        gpu_foreground_method=gpu_fg_m or "",
        cpu_method=cpu_m or "",
        dram_method=dram_m or "",
        duration_s=duration,
        coverage_percent=cov,
        coverage_verdict=verdict or "",
        imported=bool(imported),
    )
    value = _value_python(figure.value(record), factors, unit)
    if value is None:
        return None
    return _with_value(record, value)


def _with_value(record: RunRecord, value: float) -> RunRecord:
    return replace(record, value=value)


# The top configurations are chosen by the database: count runs per configuration
# (cheap), keep the ``limit`` measured both ways and most; then their runs are read. The
# workload's experiments are looked up first (an array of ids), so the runs are read
# through their (experiment, status) covering index, and only the groups that can be
# among the shown ones ("cut") are sorted by their text. jsonb equality decides the
# configurations (1 and 1.0 are one). {present} names Run columns from
# experiments.figures, never user input.
_TOP_RUNS_SQL = """
WITH base AS MATERIALIZED (
    SELECT r.id AS id, r.hyperparameters AS hp, e.mode AS mode
    FROM experiments_run r JOIN experiments_experiment e ON e.id = r.experiment_id
    WHERE r.experiment_id = ANY(ARRAY(
              SELECT id FROM experiments_experiment WHERE foreground_workload_id = %(workload)s))
          AND r.status = %(status)s AND {present}
), grouped AS MATERIALIZED (
    SELECT hp, bool_or(mode = 'solo')::int + bool_or(mode = 'parallel')::int AS modes,
           count(*) AS total
    FROM base GROUP BY hp
), cut AS (
    SELECT modes, total FROM grouped ORDER BY modes DESC, total DESC
    OFFSET %(limit)s - 1 LIMIT 1
), top AS (
    SELECT hp FROM grouped
    WHERE NOT EXISTS (SELECT 1 FROM cut) OR (modes, total) >= (SELECT modes, total FROM cut)
    ORDER BY modes DESC, total DESC, hp::text LIMIT %(limit)s
)
SELECT (SELECT count(*) FROM grouped), r.id, r.hyperparameters::text, b.mode, r.imported,
       r.factors::text, r.gpu_energy_j, r.gpu_foreground_j, r.cpu_energy_j, r.dram_energy_j,
       r.gpu_method, r.gpu_foreground_method, r.cpu_method, r.dram_method, r.duration_s,
       r.coverage_percent, r.coverage_verdict
FROM base b JOIN top t ON t.hp = b.hp JOIN experiments_run r ON r.id = b.id
ORDER BY r.id DESC
"""


def _records_postgres(
    workload: Workload, figure: EnergyFigure, limit: int, unit: str
) -> tuple[list[RunRecord], int]:
    from django.db import connection

    present = " AND ".join(f"r.{part} IS NOT NULL" for part in figure.parts)
    records: list[RunRecord] = []
    configs = 0
    with connection.cursor() as cursor:
        cursor.execute(
            _TOP_RUNS_SQL.format(present=present),
            {"workload": workload.pk, "status": Run.Status.SUCCEEDED, "limit": limit},
        )
        for total, rid, hp, mode, imported, factors, *rest in cursor.fetchall():
            configs = int(total)
            row = (rid, json.loads(hp), mode, imported, json.loads(factors or "{}"), *rest)
            record = _record(row, figure, unit)
            if record is not None:
                records.append(record)
    return records, configs


def _records_python(
    workload: Workload, figure: EnergyFigure, limit: int, unit: str
) -> tuple[list[RunRecord], int]:
    """The same runs chosen in Python, for SQLite."""
    records = [
        r
        for r in (
            _record(values, figure, unit)
            for values in _with_figure(workload, figure)
            .order_by("-id")
            .values_list(*_RECORD_COLUMNS)
        )
        if r is not None
    ]
    return _top(records, limit)


def _top(records: list[RunRecord], limit: int) -> tuple[list[RunRecord], int]:
    """The records of the ``limit`` configurations measured both ways and most."""
    modes: dict[str, set[str]] = {}
    totals: dict[str, int] = {}
    for r in records:
        modes.setdefault(r.key, set()).add(r.mode)
        totals[r.key] = totals.get(r.key, 0) + 1
    ranked = sorted(totals, key=lambda k: (-len(modes[k]), -totals[k], k))[:limit]
    keep = set(ranked)
    return [r for r in records if r.key in keep], len(totals)


def _records_of(
    workload: Workload,
    figure: EnergyFigure,
    unit: str,
    hyperparameters: Iterable[dict[str, Any]],
) -> list[RunRecord]:
    """Every run of these configurations (any experiment, either mode) with the figure."""
    wanted = {config_key(hp): hp for hp in hyperparameters}
    if not wanted:
        return []
    same = Q()
    for hp in wanted.values():
        same |= Q(hyperparameters=hp)
    rows = _with_figure(workload, figure).filter(same).order_by("-id").values_list(*_RECORD_COLUMNS)
    return [r for r in (_record(values, figure, unit) for values in rows) if r and r.key in wanted]


def configurations_table(
    *,
    workload: Workload,
    figure: EnergyFigure,
    hyperparameters: Iterable[dict[str, Any]],
    unit: str = carbon.Unit.J,
    include_partial: bool = False,
) -> Table:
    """The comparison of these configurations only (an experiment's: its report, its
    ``submit --wait`` summary, its API comparison): the same rows Compare shows for
    them, from every run of them in either mode (one query)."""
    records = _records_of(workload, figure, unit, hyperparameters)
    return comparison.build(
        records,
        figure=figure,
        unit_label=carbon.unit_label(unit, _currency()),
        include_partial=include_partial,
    )


def experiment_configurations(experiment: Experiment) -> list[dict[str, Any]]:
    """The configurations an experiment ran (its plan, else its runs')."""
    planned = [
        entry["hyperparameters"]
        for entry in experiment.plan or []
        if isinstance(entry, dict) and isinstance(entry.get("hyperparameters"), dict)
    ]
    if planned:
        return planned
    return list(
        Run.objects.filter(experiment=experiment)
        .order_by("config_index")
        .values_list("hyperparameters", flat=True)
        .distinct()
    )


# --- The Compare page ------------------------------------------------------------------


def compare_workload_cached(
    *,
    workload: Workload,
    figure: EnergyFigure | None = None,
    unit: str = carbon.Unit.J,
    include_partial: bool = False,
) -> CompareData:
    """``compare_workload`` behind a cache keyed by the workload's finished runs (their
    number, newest id and latest end), the figure asked for ("auto": the default one),
    the unit and the coverage rule: any run finishing, imported or deleted changes the
    key, so the page never shows stale figures. One aggregate query gives the key and,
    on a miss, the per-figure counts (to choose the default); it reads only the runs'
    covering index."""
    from experiments import cache

    finished, per_figure, state = figure_counts(workload=workload)
    end = state["end"].timestamp() if state["end"] else 0
    asked = figure.key if figure else "auto"
    rule = "all" if include_partial else "good"
    key = f"wattlab-compare-{workload.pk}-{asked}-{unit}-{rule}-{finished}-{state['last']}-{end}"
    cached = cache.get(key)
    if isinstance(cached, CompareData):
        return cached
    data = compare_workload(
        workload=workload,
        figure=figure,
        unit=unit,
        counts=(finished, per_figure),
        include_partial=include_partial,
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
    figure, in joules, good coverage only), so the first reader after an experiment
    ends finds it ready. Called by the worker once an experiment has ended
    (workers.tasks)."""
    return compare_workload_cached(workload=workload, figure=None, unit=carbon.Unit.J)


def compare_workload(
    *,
    workload: Workload,
    figure: EnergyFigure | None = None,
    row_limit: int = COMPARE_ROWS,
    counts: tuple[int, dict[str, int]] | None = None,
    unit: str = carbon.Unit.J,
    include_partial: bool = False,
) -> CompareData:
    """A workload's finished runs for the compare page on one energy figure (the one
    most runs have unless given), in a fixed number of queries whatever their number:
    the figure counts, the runs of the ``row_limit`` configurations measured both ways
    and most, the figure's methods, the latest ``COMPARE_POINTS`` runs with the figure
    for the charts, and the latest runs whatever their figures to pick side by side. In
    kgCO2e or cost a run counts only where it kept the factor (one more count query)."""
    from django.db import connection
    from django.db.models import Count

    if counts is None:
        finished, per_figure, _state = figure_counts(workload=workload)
    else:
        finished, per_figure = counts
    figure = figure or figures_best(per_figure)
    if connection.vendor == "postgresql":
        records, configs = _records_postgres(workload, figure, row_limit, unit)
    else:
        records, configs = _records_python(workload, figure, row_limit, unit)
    unit_label = carbon.unit_label(unit, _currency())
    table = comparison.build(
        records,
        figure=figure,
        unit_label=unit_label,
        include_partial=include_partial,
        configurations=configs,
        limit=row_limit,
    )
    not_finite = {r.id for r in records if r.value is not None and not math.isfinite(r.value)}
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
        "id",
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
        rid, code, ci, ri, at, mode, hp, metrics, imported, factors = values[:10]
        parts = values[10 : 10 + n_parts]
        ms = values[10 + n_parts :]
        joules = None if any(p is None for p in parts) else sum(float(p) for p in parts)
        energy = _value_python(joules, factors, unit)
        if energy is not None and not math.isfinite(energy):
            not_finite.add(rid)
            energy = None  # listed to pick, never plotted
        method = figure.fixed_method or " + ".join(m or "unknown" for m in ms)
        return ComparePoint(
            str(code), ci, ri, at, mode, hp or {}, energy, method, metrics or {}, imported
        )

    points = [
        p
        for p in (
            point(v)
            for v in _with_figure(workload, figure)
            .filter(_unit_present(unit))
            .order_by("-id")
            .values_list(*columns)[:COMPARE_POINTS]
        )
        if p.value is not None
    ]
    recent = [point(v) for v in _finished(workload).order_by("-id").values_list(*columns)[:30]]
    metric_names: set[str] = set()
    numeric: set[str] = set()
    for p in points:
        metric_names.update(
            k for k, v in p.metrics.items() if isinstance(v, int | float) and math.isfinite(v)
        )
        for name, value in p.hyperparameters.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                numeric.add(name)
    total = per_figure.get(figure.key, 0)
    if unit in (carbon.Unit.KGCO2E, carbon.Unit.COST):
        total = _with_figure(workload, figure).filter(_unit_present(unit)).count()
    return CompareData(
        workload=workload,
        figure=figure,
        table=table,
        points=points,
        metric_names=sorted(metric_names),
        numeric_params=sorted(numeric),
        truncated=total > len(points),
        methods=methods,
        total_runs=total,
        finished_runs=finished,
        figure_counts=per_figure,
        recent=recent,
        unit=unit,
        unit_label=unit_label,
        not_finite=len(not_finite),
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
