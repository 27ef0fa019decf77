"""Reads behind Compare, its CSV, the report's comparison, the API's and ``submit
--wait``'s: a workload's succeeded runs as ``experiments.comparison.RunGroup``s, in a
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from core import runlabel
from experiments import carbon, comparison
from experiments.comparison import RunGroup, Table
from experiments.figures import FIGURES, EnergyFigure
from experiments.figures import best as figures_best
from experiments.jsonshapes import read_as
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
        return runlabel.run_label(self.config_index, self.repeat_index, self.attempt)


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
    #: Of the charts' runs, those whose figure (in the unit) is not a finite number.
    charts_not_finite: int = 0

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
    def not_finite(self) -> int:
        """Values left out of the table's statistics as not finite."""
        return self.table.not_finite

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

#: What a row of runs is read from on SQLite and for an experiment's configurations, in
#: this order (PostgreSQL aggregates the same columns per group, below).
_RUN_COLUMNS = (
    "hyperparameters",
    "experiment__mode",
    *comparison.GROUP_BY,
    "imported",
    "factors",
    *comparison.PARTS,
    "duration_s",
    "coverage_percent",
    "coverage_verdict",
)


def _setup(values: Iterable[Any]) -> tuple[Any, ...]:
    """The ``GROUP_BY`` columns of a run, "unavailable" where nothing was recorded."""
    return tuple(comparison.NOT_RECORDED if v in (None, "") else v for v in values)


class _Reader:
    """Runs into ``comparison.RunGroup``s, each distinct configuration and set of
    factors decoded and keyed once (a workload's thousands of runs share a few)."""

    def __init__(self, figure: EnergyFigure, unit: str) -> None:
        self.figure = figure
        self.unit = unit
        self._configs: dict[str, tuple[dict[str, Any], str]] = {}
        self._factors: dict[str, carbon.Factors | None] = {}
        self.groups: dict[tuple[Any, ...], RunGroup] = {}

    def config(self, hp: dict[str, Any] | str | None) -> tuple[dict[str, Any], str]:
        text = hp if isinstance(hp, str) else json.dumps(hp or {}, sort_keys=True)
        found = self._configs.get(text)
        if found is None:
            # Raw SQL's text is read as the column reads it back (jsonshapes).
            values = (
                read_as(Run, "hyperparameters", json.loads(hp))
                if isinstance(hp, str)
                else dict(hp or {})
            )
            found = self._configs[text] = (values, config_key(values))
        return found

    def factors(self, factors: dict[str, Any] | str | None) -> carbon.Factors | None:
        """A run's kept factors, or None where they cannot give the unit (none kept; a
        cost in another currency): each distinct set decoded once."""
        text = factors if isinstance(factors, str) else json.dumps(factors or {}, sort_keys=True)
        if text not in self._factors:
            f = carbon.Factors.from_dict(read_as(Run, "factors", json.loads(text or "{}")))
            if self.unit == carbon.Unit.COST and (f is None or f.currency != _currency()):
                f = None
            self._factors[text] = f
        return self._factors[text]

    def _converter(self) -> Any:
        """joules, factors -> the value in the unit (None: no factor for it)."""
        if self.unit == carbon.Unit.J:
            return lambda j, _f: j
        if self.unit == carbon.Unit.KWH:
            return lambda j, _f: carbon.convert(j, self.unit, None)

        def convert(j: float, factors: Any) -> float | None:
            f = self.factors(factors)
            return None if f is None else carbon.convert(j, self.unit, f)

        return convert

    def group(self, hp: Any, mode: str, setup: tuple[Any, ...]) -> RunGroup:
        config, key = self.config(hp)
        found = self.groups.get((key, mode, setup))
        if found is None:
            found = self.groups[(key, mode, setup)] = RunGroup(
                key, config, mode, setup, parts={p: [] for p in comparison.PARTS}
            )
        return found

    def add_runs(
        self,
        hp: Any,
        mode: str,
        setup: tuple[Any, ...],
        imported: bool,
        factors: list[Any],
        arrays: list[list[Any]],
    ) -> None:
        """One group of runs as arrays (the database's aggregate): ``PARTS``, then
        durations, coverage and verdicts."""
        n_parts = len(comparison.PARTS)
        parts = dict(zip(comparison.PARTS, arrays[:n_parts], strict=True))
        durations, coverage, verdicts = arrays[n_parts:]
        convert = self._converter()
        columns = [parts[p] for p in self.figure.parts]
        values: list[float | None] = []
        for i, run in enumerate(zip(*columns, strict=True)):
            values.append(None if any(v is None for v in run) else convert(sum(run), factors[i]))
        keep = [i for i, v in enumerate(values) if v is not None]
        if not keep:
            return
        g = self.group(hp, mode, setup)
        every = len(keep) == len(values)
        g.values += values if every else [values[i] for i in keep]
        for p in comparison.PARTS:
            g.parts[p] += parts[p] if every else [parts[p][i] for i in keep]
        g.durations += durations if every else [durations[i] for i in keep]
        g.coverage += coverage if every else [coverage[i] for i in keep]
        g.verdicts += [(v or "") for v in (verdicts if every else [verdicts[i] for i in keep])]
        g.imported = g.imported or imported

    def add_rows(self, rows: Iterable[Sequence[Any]]) -> list[RunGroup]:
        """Rows of ``_RUN_COLUMNS`` (SQLite, an experiment's configurations): gathered
        into the arrays the database gives PostgreSQL's groups, then read alike."""
        n_group = len(comparison.GROUP_BY)
        width = len(comparison.PARTS) + 3  # the parts, duration, coverage, verdict
        buckets: dict[tuple[Any, ...], tuple[Any, list[Any], list[list[Any]], list[bool]]] = {}
        for row in rows:
            hp, mode = row[0], str(row[1])
            text = hp if isinstance(hp, str) else json.dumps(hp or {}, sort_keys=True)
            handle = (text, mode, tuple(row[2 : 2 + n_group]))
            bucket = buckets.get(handle)
            if bucket is None:
                bucket = buckets[handle] = (hp, [], [[] for _ in range(width)], [False])
            bucket[1].append(row[3 + n_group])
            for column, value in zip(bucket[2], row[4 + n_group :], strict=True):
                column.append(value)
            bucket[3][0] = bucket[3][0] or bool(row[2 + n_group])
        for (_text, mode, raw_setup), (hp, factors, arrays, imported) in buckets.items():
            self.add_runs(hp, mode, _setup(raw_setup), imported[0], factors, arrays)
        return list(self.groups.values())


# The top configurations are chosen by the database: count runs per configuration
# (cheap), keep the ``limit`` measured both ways and most, then aggregate their runs per
# configuration, mode and ``GROUP_BY`` columns into arrays (each run at the same place
# in every array), which Python reads without a loop over rows. The workload's experiments
# are looked up first (an array of ids), so its runs are read through their (experiment,
# status) covering index alone (every column here is in it but the factors, read only
# for kgCO2e and cost), and only the groups that can be among the shown ones ("cut") are
# sorted by their text. jsonb equality decides the configurations (1
# and 1.0 are one). {present}, {columns}, {parts}, {factors} and {unit_present} name Run
# columns from experiments.figures and experiments.comparison, never user input.
_TOP_RUNS_SQL = """
WITH base AS MATERIALIZED (
    SELECT r.hyperparameters AS hp, e.mode AS mode, {columns}, r.imported AS imported,
           {factors} AS factors, {parts}, r.duration_s, r.coverage_percent, r.coverage_verdict
    FROM experiments_run r JOIN experiments_experiment e ON e.id = r.experiment_id
    WHERE r.experiment_id = ANY(ARRAY(
              SELECT id FROM experiments_experiment WHERE foreground_workload_id = %(workload)s))
          AND r.status = %(status)s AND {present} {unit_present}
), grouped AS MATERIALIZED (
    SELECT hp, bool_or(mode = 'solo')::int + bool_or(mode = 'parallel')::int AS modes,
           count(*) AS total
    FROM base GROUP BY hp
), cut AS (
    SELECT modes, total FROM grouped ORDER BY modes DESC, total DESC
    OFFSET %(limit)s - 1 LIMIT 1
), top AS (
    SELECT hp, hp::text AS text FROM grouped
    WHERE NOT EXISTS (SELECT 1 FROM cut) OR (modes, total) >= (SELECT modes, total FROM cut)
    ORDER BY modes DESC, total DESC, hp::text LIMIT %(limit)s
)
SELECT (SELECT count(*) FROM grouped), t.text, b.mode, {group_columns}, bool_or(b.imported),
       array_agg(b.factors), {part_arrays}, array_agg(b.duration_s),
       array_agg(b.coverage_percent), array_agg(b.coverage_verdict)
FROM base b JOIN top t ON t.hp = b.hp
GROUP BY t.text, b.mode, {group_columns}
"""

#: Only the factors a unit reads (a run's kept factors hold their provenance too): short
#: text, decoded once per distinct value (``_Reader.factors``).
_FACTORS_SQL = (
    "jsonb_build_object('carbon_intensity_g_per_kwh', r.factors->'carbon_intensity_g_per_kwh', "
    "'pue', r.factors->'pue', 'price_per_kwh', r.factors->'price_per_kwh', "
    "'currency', r.factors->'currency')::text"
)

#: ``_unit_present`` in SQL: a run counts in kgCO2e or a cost only with its factor.
_UNIT_PRESENT_SQL = {
    carbon.Unit.KGCO2E: "AND (r.factors->>'carbon_intensity_g_per_kwh') IS NOT NULL",
    carbon.Unit.COST: "AND (r.factors->>'price_per_kwh') IS NOT NULL "
    "AND r.factors->>'currency' = %(currency)s",
}


def _groups_postgres(
    workload: Workload, figure: EnergyFigure, limit: int, unit: str
) -> tuple[list[RunGroup], int]:
    from django.db import connection

    sql = _TOP_RUNS_SQL.format(
        present=" AND ".join(f"r.{part} IS NOT NULL" for part in figure.parts),
        columns=", ".join(f"r.{c}" for c in comparison.GROUP_BY),
        parts=", ".join(f"r.{p}" for p in comparison.PARTS),
        factors="NULL::text" if unit in (carbon.Unit.J, carbon.Unit.KWH) else _FACTORS_SQL,
        unit_present=_UNIT_PRESENT_SQL.get(unit, ""),
        group_columns=", ".join(f"b.{c}" for c in comparison.GROUP_BY),
        part_arrays=", ".join(f"array_agg(b.{p})" for p in comparison.PARTS),
    )
    params: dict[str, Any] = {
        "workload": workload.pk,
        "status": Run.Status.SUCCEEDED,
        "limit": limit,
        "currency": _currency(),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    configs = int(rows[0][0]) if rows else 0
    reader = _Reader(figure, unit)
    n_group = len(comparison.GROUP_BY)
    for row in rows:
        # (total, configuration as text, mode, GROUP_BY..., imported, then one array a
        # column, each run at the same place in every array)
        text, mode = row[1], str(row[2])
        setup = _setup(row[3 : 3 + n_group])
        imported = bool(row[3 + n_group])
        factors, *arrays = row[4 + n_group :]
        reader.add_runs(text, mode, setup, imported, factors, arrays)
    return list(reader.groups.values()), configs


def _groups_python(
    workload: Workload, figure: EnergyFigure, limit: int, unit: str
) -> tuple[list[RunGroup], int]:
    """The same groups in Python, for SQLite."""
    rows = (
        _with_figure(workload, figure)
        .filter(_unit_present(unit))
        .order_by("-id")
        .values_list(*_RUN_COLUMNS)
    )
    groups = _Reader(figure, unit).add_rows(rows)
    return _top(groups, limit)


def _top(groups: list[RunGroup], limit: int) -> tuple[list[RunGroup], int]:
    """The groups of the ``limit`` configurations measured both ways and most."""
    modes: dict[str, set[str]] = {}
    totals: dict[str, int] = {}
    for g in groups:
        modes.setdefault(g.key, set()).add(g.mode)
        totals[g.key] = totals.get(g.key, 0) + g.n
    ranked = set(sorted(totals, key=lambda k: (-len(modes[k]), -totals[k], k))[:limit])
    return [g for g in groups if g.key in ranked], len(totals)


def _groups_of(
    workload: Workload,
    figure: EnergyFigure,
    unit: str,
    hyperparameters: Iterable[dict[str, Any]],
) -> list[RunGroup]:
    """Every run of these configurations (any experiment, either mode) with the figure."""
    wanted = {config_key(hp): hp for hp in hyperparameters}
    if not wanted:
        return []
    same = Q()
    for hp in wanted.values():
        same |= Q(hyperparameters=hp)
    rows = _with_figure(workload, figure).filter(same).order_by("-id").values_list(*_RUN_COLUMNS)
    return [g for g in _Reader(figure, unit).add_rows(rows) if g.key in wanted]


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
    groups = _groups_of(workload, figure, unit, hyperparameters)
    return comparison.build(
        groups,
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
    # An imported experiment has no plan: its runs' configurations, each once.
    ran: dict[str, dict[str, Any]] = {}
    for hp in (
        Run.objects.filter(experiment=experiment)
        .order_by("config_index", "repeat_index", "attempt")
        .values_list("hyperparameters", flat=True)
    ):
        ran.setdefault(config_key(hp or {}), hp or {})
    return list(ran.values())


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
    key = (
        f"wattlab-compare-{CACHE_FORMAT}-{workload.pk}-{asked}-{unit}-{rule}-{finished}-"
        f"{state['last']}-{end}"
    )
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


#: The shape of what is cached, in its key: raised when ``CompareData`` or the rows it
#: holds change shape (the comparison's rewrite, its grouping by GPU settings), so a
#: value an earlier version stored is never read as this one.
CACHE_FORMAT = 2

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
        groups, configs = _groups_postgres(workload, figure, row_limit, unit)
    else:
        groups, configs = _groups_python(workload, figure, row_limit, unit)
    unit_label = carbon.unit_label(unit, _currency())
    table = comparison.build(
        groups,
        figure=figure,
        unit_label=unit_label,
        include_partial=include_partial,
        configurations=configs,
        limit=row_limit,
    )
    # The charts' runs whose figure is not a finite number (drawn nowhere, counted).
    not_finite: set[int] = set()
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
        charts_not_finite=len(not_finite),
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
