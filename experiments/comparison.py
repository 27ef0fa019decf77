"""Parallel against solo as one answer: what sharing the GPU costs a training, per
configuration, with what each figure can and cannot tell. Pure (no Django): the runs come
in as ``RunGroup``s (``experiments.selectors.compare`` reads them), and the Compare page,
its CSV, the experiment report, the API and ``submit --wait`` all show the ``Table``
built here, so they agree on every number.

The rules, each said where the numbers are shown:

- **Coverage decides which parallel runs count.** A parallel run measured contention
  only if the background covered its window: by default only runs whose coverage
  verdict is good (``core.coverage.GOOD``, >= 95 %) enter a group; the others are left
  out and counted with their coverage. ``include_partial`` puts them back, counted
  and marked.
- **Runs measured differently are never pooled.** A group is one configuration, one mode
  and one way of measuring (``GROUP_BY``: the method of every energy figure, and the
  GPUs' settings: model, power limit, application clocks), so a RAPL run and an
  estimate run of one configuration are two rows, and so are runs at two power limits.
- **What cannot be told is said.** A figure measured so that it cannot show what sharing
  the device costs (the GPU not measured, a CPU estimate of the foreground alone) gets no
  "no difference" verdict: the row says what is missing and how to get it.
- **What sharing costs** (``Row.slowdown``, ``Row.sharing``): the foreground's slowdown
  (duration, parallel over solo) and the energy ratio of each figure that can show it,
  with their intervals (``experiments.stats``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from core.coverage import GOOD, VERDICTS
from experiments import stats
from experiments.figures import (
    BY_KEY,
    HOW_TO_MEASURE,
    SETUP_FIELDS,
    EnergyFigure,
    Scope,
    scope,
    setup_label,
)

SOLO = "solo"
PARALLEL = "parallel"

#: The energy figures whose parallel / solo ratio is part of the answer, where they can
#: show it: the whole GPU, the foreground's share of it (a labelled estimate), and the
#: whole CPU package. DRAM and the total are on the per-figure table.
SHARING_FIGURES: tuple[EnergyFigure, ...] = (BY_KEY["gpu"], BY_KEY["gpu_foreground"], BY_KEY["cpu"])


#: The Run columns whose values runs must share to be pooled into one group, besides
#: their configuration and mode: how they were measured (the method of every energy
#: figure), so a RAPL run and an estimate run of one configuration are two rows, and the
#: GPUs' settings during the run (``Run.device_settings_key``: model, power limit,
#: application clocks), so runs at two power limits are two rows. One more grouping
#: attribute is one more column name here (and its label in ``GROUP_LABELS``).
GROUP_BY: tuple[str, ...] = (*SETUP_FIELDS, "device_settings_key")
#: How a grouping column beyond the methods is named where a row says what it is.
GROUP_LABELS = {"device_settings_key": "GPU settings"}
#: What a grouping column holds where nothing was recorded (a run without a GPU, or
#: from before the column existed).
NOT_RECORDED = "unavailable"

#: The Run energy columns (joules) a group carries, for every figure's value.
PARTS: tuple[str, ...] = ("gpu_energy_j", "gpu_foreground_j", "cpu_energy_j", "dram_energy_j")


@dataclass
class RunGroup:
    """Succeeded runs of one configuration in one mode that share their ``GROUP_BY``
    columns (``setup``): one entry per run in each list, in the same order."""

    key: str
    hyperparameters: dict[str, Any]
    mode: str
    setup: tuple[Any, ...]
    #: The chosen figure in the chosen unit (not finite values are left out later).
    values: list[float | None] = field(default_factory=list)
    #: Each of ``PARTS`` in joules.
    parts: dict[str, list[float | None]] = field(default_factory=dict)
    durations: list[float | None] = field(default_factory=list)
    coverage: list[float | None] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    imported: bool = False

    @property
    def n(self) -> int:
        return len(self.values)

    def extend(self, other: RunGroup) -> None:
        self.values += other.values
        for part in PARTS:
            self.parts.setdefault(part, []).extend(other.parts.get(part, [None] * other.n))
        self.durations += other.durations
        self.coverage += other.coverage
        self.verdicts += other.verdicts
        self.imported = self.imported or other.imported

    def sample(self) -> SimpleNamespace:
        """An object with the group's ``GROUP_BY`` columns as attributes (what
        ``EnergyFigure.method_of`` reads)."""
        return SimpleNamespace(**dict(zip(GROUP_BY, self.setup, strict=True)))

    def figure_values(self, figure: EnergyFigure) -> list[float | None]:
        """``figure`` in joules for each run: the sum of its parts, None where one is
        missing (Python's float sum overflows to inf, never to an error)."""
        columns = [self.parts.get(p) or [None] * self.n for p in figure.parts]
        out: list[float | None] = []
        for values in zip(*columns, strict=True):
            out.append(None if any(v is None for v in values) else sum(values))
        return out

    def split(self, include_partial: bool) -> tuple[list[int], list[int]]:
        """(runs counted, runs left out): solo runs always count; parallel runs when
        their coverage verdict is good, or when the reader asked to include the
        others."""
        if self.mode != PARALLEL or include_partial:
            return list(range(self.n)), []
        counted = [i for i, v in enumerate(self.verdicts) if v == GOOD]
        left = [i for i, v in enumerate(self.verdicts) if v != GOOD]
        return counted, left


def _pick(values: list[Any], indices: list[int]) -> list[Any]:
    return [values[i] for i in indices]


@dataclass
class Side:
    """One row in one mode: the statistics of the runs counted, and the coverage of the
    runs left out for it. Only figures are kept, never the runs themselves (a
    comparison is cached whole)."""

    mode: str
    summary: stats.GroupSummary = field(default_factory=lambda: stats.GroupSummary(0, None))
    duration: stats.GroupSummary = field(default_factory=lambda: stats.GroupSummary(0, None))
    #: Coverage (%) of the counted runs: parallel only.
    coverage: stats.GroupSummary | None = None
    #: Counted runs whose coverage is not good (only when they are included).
    short_of_good: int = 0
    #: Coverage (%) of each parallel run left out (None: not recorded).
    left_out_coverage: list[float | None] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.summary.n

    @property
    def median(self) -> float | None:
        return self.summary.median

    @property
    def left_out(self) -> int:
        return len(self.left_out_coverage)


def _side(group: RunGroup | None, mode: str, include_partial: bool) -> tuple[Side, list[int]]:
    """A row's side from its group, and the indices of the runs it counts."""
    if group is None:
        return Side(mode), []
    counted, left = group.split(include_partial)
    side = Side(mode, left_out_coverage=_pick(group.coverage, left))
    side.summary = stats.summarise(_pick(group.values, counted))
    side.duration = stats.summarise(_pick(group.durations, counted))
    if mode == PARALLEL:
        side.coverage = stats.summarise(_pick(group.coverage, counted))
        side.short_of_good = sum(1 for i in counted if group.verdicts[i] != GOOD)
    return side, counted


@dataclass(frozen=True)
class Ratio:
    """One energy figure's parallel / solo ratio in a row (in joules)."""

    figure: EnergyFigure
    method: str
    comparison: stats.Comparison


@dataclass
class Row:
    """One configuration measured one way, solo and parallel."""

    key: str
    hyperparameters: dict[str, Any]
    setup: tuple[str, ...]
    solo: Side
    parallel: Side
    figure: EnergyFigure
    #: The chosen figure's method in this row, and what it includes.
    method: str = ""
    scope: Scope = field(default_factory=lambda: Scope("", "", True))
    imported: bool = False
    #: Runs to add in each mode for the chosen figure's ratio to reach its precision.
    more: dict[str, int] = field(default_factory=dict)
    #: The chosen figure, parallel against solo (both sides have values).
    comparison: stats.Comparison | None = None
    #: The foreground's duration, parallel over solo.
    slowdown: stats.Comparison | None = None
    #: The energy ratio of each of ``SHARING_FIGURES`` that can show it here.
    sharing: list[Ratio] = field(default_factory=list)

    @property
    def paired(self) -> bool:
        return bool(self.solo.n and self.parallel.n)

    @property
    def ratio(self) -> float | None:
        return self.comparison.ratio if self.comparison else None

    @property
    def measured_with(self) -> str:
        """The methods that measured, then every other grouping column recorded
        ("GPU counter, GPU settings: NVIDIA A100 · 300 W · ...")."""
        n = len(SETUP_FIELDS)
        extra = [
            f"{GROUP_LABELS.get(k, k)}: {v}"
            for k, v in zip(GROUP_BY[n:], self.setup[n:], strict=True)
            if v != NOT_RECORDED
        ]
        return ", ".join([setup_label(self.setup[:n]), *extra])

    @property
    def device_settings(self) -> str:
        """The GPUs' settings the row's runs share ("" where none were recorded)."""
        value = str(dict(zip(GROUP_BY, self.setup, strict=True)).get("device_settings_key", ""))
        return "" if value == NOT_RECORDED else value

    def sample(self) -> SimpleNamespace:
        """The row's ``GROUP_BY`` columns as attributes (each figure's method)."""
        return SimpleNamespace(**dict(zip(GROUP_BY, self.setup, strict=True)))

    @property
    def cannot_tell(self) -> str:
        """Why this row's figure cannot show what sharing costs ("" when it can)."""
        return "" if self.scope.shows_sharing else self.scope.why_not

    @property
    def verdict(self) -> str:
        if self.comparison is None:
            return ""
        if self.cannot_tell:
            return f"cannot tell what sharing costs on this figure: {self.cannot_tell}"
        return self.comparison.verdict("parallel", "solo")

    @property
    def sharing_by_key(self) -> dict[str, Ratio]:
        return {r.figure.key: r for r in self.sharing}

    @property
    def left_out(self) -> int:
        return self.parallel.left_out

    def more_runs(self) -> dict[str, int]:
        """Runs to add in each mode for the chosen figure's ratio to reach its precision
        (the formula of ``stats.runs_needed``; a verdict's minimum where it cannot be
        estimated)."""
        return dict(self.more)

    @property
    def suggested_mode(self) -> str:
        """The mode "add runs" offers first: the one missing, else both."""
        if self.paired:
            return "both"
        return PARALLEL if self.solo.n else SOLO

    @property
    def suggested_runs(self) -> int:
        """Runs to add per configuration (at least one): the most either mode needs."""
        more = self.more_runs()
        wanted = more[self.suggested_mode] if self.suggested_mode != "both" else max(more.values())
        return max(1, min(wanted, 100))

    @property
    def configuration_list(self) -> list[dict[str, Any]]:
        return [self.hyperparameters]


@dataclass
class Table:
    """The rows of a comparison and what it left out."""

    figure: EnergyFigure
    unit_label: str
    include_partial: bool
    rows: list[Row]
    #: Configurations (with the figure) in the selection; the rows may be cut to fewer.
    configurations: int = 0
    #: Values of the chosen figure left out as not finite, over every row.
    not_finite: int = 0

    @property
    def coverage_rule_text(self) -> str:
        if self.include_partial:
            return "every parallel run counted, those short of good coverage marked"
        return f"parallel runs count only with good coverage, ≥ {VERDICTS[0].min_percent:g} %"

    @property
    def left_out(self) -> list[float | None]:
        """Coverage of every parallel run left out, in the rows' order."""
        return [c for row in self.rows for c in row.parallel.left_out_coverage]

    @property
    def short_of_good(self) -> int:
        return sum(row.parallel.short_of_good for row in self.rows)

    @property
    def paired_rows(self) -> list[Row]:
        return [row for row in self.rows if row.paired]

    @property
    def sharing_figures(self) -> list[EnergyFigure]:
        """The figures of ``SHARING_FIGURES`` that some row can show."""
        present = {r.figure.key for row in self.rows for r in row.sharing}
        return [f for f in SHARING_FIGURES if f.key in present]

    @property
    def methods(self) -> dict[str, int]:
        """How many of the rows' runs (left out ones too) each method of the figure has."""
        out: dict[str, int] = {}
        for row in self.rows:
            n = row.solo.n + row.parallel.n + row.left_out
            out[row.method] = out.get(row.method, 0) + n
        return out

    @property
    def includes(self) -> str:
        return "; ".join(dict.fromkeys(row.scope.includes for row in self.rows if row.paired))

    @property
    def figure_cannot_show(self) -> str:
        """Why the chosen figure cannot show what sharing costs in some paired row ("" when
        it can in every one)."""
        why = list(dict.fromkeys(row.cannot_tell for row in self.paired_rows if row.cannot_tell))
        if not why:
            return ""
        return (
            f"{self.figure.label} here cannot show what sharing the device costs: "
            f"{'; '.join(why)}. No verdict is given on it."
        )

    @property
    def sharing_missing(self) -> str:
        """Why no energy figure of the paired rows can show what sharing costs ("" when
        one can)."""
        rows = self.paired_rows
        if not rows or any(row.sharing for row in rows):
            return ""
        why: list[str] = []
        for row in rows:
            for f in SHARING_FIGURES:
                s = scope(f, f.method_of(row.sample()))
                if s.why_not:
                    why.append(s.why_not)
        return (
            "No energy figure of these runs can show what sharing the device costs ("
            + "; ".join(dict.fromkeys(why))
            + "): only the slowdown is measured."
        )

    @property
    def cannot_show(self) -> str:
        """Everything this comparison cannot show, and how to measure it ("" when it can
        show what sharing costs): the page, the report and the API say this."""
        said = [t for t in (self.sharing_missing, self.figure_cannot_show) if t]
        if not said:
            return ""
        return " ".join(said) + f" To measure it, {HOW_TO_MEASURE}."

    @property
    def configuration_list(self) -> list[dict[str, Any]]:
        """Each row's configuration once (for "add runs" to the whole table)."""
        seen: dict[str, dict[str, Any]] = {}
        for row in self.rows:
            seen.setdefault(row.key, row.hyperparameters)
        return list(seen.values())

    @property
    def suggested_runs(self) -> int:
        """Runs to add to each configuration of the table: the most a row needs."""
        return max((row.suggested_runs for row in self.rows), default=1)

    @property
    def left_out_text(self) -> str:
        """ "2 parallel runs left out: coverage 76.5 %, 59.4 %" ("" when none)."""
        return left_out_text(self.left_out)


def left_out_text(coverages: Sequence[float | None], shown: int = 8) -> str:
    if not coverages:
        return ""
    values = [f"{c:.1f} %" if c is not None else "not recorded" for c in coverages]
    more = f" and {len(values) - shown} more" if len(values) > shown else ""
    n = len(values)
    return (
        f"{n} parallel run{'s' if n != 1 else ''} left out (coverage short of good, "
        f"≥ 95 %): coverage {', '.join(values[:shown])}{more}"
    )


def _sharing(solo: RunGroup, parallel: RunGroup, counted: dict[str, list[int]]) -> list[Ratio]:
    """The parallel / solo energy ratio (joules) of each of ``SHARING_FIGURES`` that can
    show what sharing costs, measured as these runs were."""
    out = []
    sample = solo.sample()
    for f in SHARING_FIGURES:
        method = f.method_of(sample)
        if not scope(f, method).shows_sharing:
            continue
        a = _pick(parallel.figure_values(f), counted[PARALLEL])
        b = _pick(solo.figure_values(f), counted[SOLO])
        if any(v is not None for v in a) and any(v is not None for v in b):
            out.append(Ratio(f, method, stats.compare(a, b, test=False)))
    return out


def merged(groups: Iterable[RunGroup]) -> dict[tuple[Any, ...], dict[str, RunGroup]]:
    """The groups by (configuration, setup), then mode; groups that share all three (a
    configuration written 2 and 2.0, a method written "" and "unavailable") merged."""
    rows: dict[tuple[Any, ...], dict[str, RunGroup]] = {}
    for g in groups:
        modes = rows.setdefault((g.key, g.setup), {})
        if g.mode in modes:
            modes[g.mode].extend(g)
        else:
            modes[g.mode] = g
    return rows


def build(
    groups: Iterable[RunGroup],
    *,
    figure: EnergyFigure,
    unit_label: str = "J",
    include_partial: bool = False,
    configurations: int | None = None,
    limit: int | None = None,
) -> Table:
    """The comparison of ``groups`` (the chosen figure's ``values`` in each) on
    ``figure``: one row per configuration and setup, configurations measured both ways
    first, then the most measured."""
    rows: list[Row] = []
    not_finite = 0
    for (key, setup), modes in merged(groups).items():
        solo_group, parallel_group = modes.get(SOLO), modes.get(PARALLEL)
        first = solo_group or parallel_group
        assert first is not None
        solo, solo_counted = _side(solo_group, SOLO, include_partial)
        parallel, parallel_counted = _side(parallel_group, PARALLEL, include_partial)
        not_finite += solo.summary.not_finite + parallel.summary.not_finite
        method = figure.method_of(first.sample())
        row = Row(
            key=key,
            hyperparameters=first.hyperparameters,
            setup=setup,
            solo=solo,
            parallel=parallel,
            figure=figure,
            method=method,
            scope=scope(figure, method),
            imported=any(g.imported for g in modes.values()),
        )
        a = _pick(parallel_group.values, parallel_counted) if parallel_group else []
        b = _pick(solo_group.values, solo_counted) if solo_group else []
        versus = stats.compare(a, b, test=bool(solo.n and parallel.n))
        if solo.n and parallel.n:
            row.comparison = versus
        row.more = {SOLO: versus.more_for(solo.n), PARALLEL: versus.more_for(parallel.n)}
        if solo_group and parallel_group and solo.duration.n and parallel.duration.n:
            row.slowdown = stats.compare(
                _pick(parallel_group.durations, parallel_counted),
                _pick(solo_group.durations, solo_counted),
                test=False,
            )
        if solo_group and parallel_group and solo_counted and parallel_counted:
            counted = {SOLO: solo_counted, PARALLEL: parallel_counted}
            row.sharing = _sharing(solo_group, parallel_group, counted)
        rows.append(row)
    rows.sort(
        key=lambda r: (
            not r.paired,
            -(r.solo.n + r.parallel.n + r.left_out),
            r.key,
            tuple(str(v) for v in r.setup),
        )
    )
    n_configs = len({r.key for r in rows}) if configurations is None else configurations
    return Table(
        figure=figure,
        unit_label=unit_label,
        include_partial=include_partial,
        rows=rows[:limit] if limit is not None else rows,
        configurations=n_configs,
        not_finite=not_finite,
    )


# --- The document: one shape for the API, the CSV and the tests ----------------------


def _side_document(side: Side) -> dict[str, Any]:
    s = side.summary
    doc: dict[str, Any] = {
        "n": s.n,
        "median": s.median,
        "ci95_low": s.low,
        "ci95_high": s.high,
        "ci_coverage": s.coverage,
        "min": s.min,
        "max": s.max,
        # Too few runs for an interval: the values themselves.
        "values": list(s.values) if s.too_few else None,
        "values_not_finite": s.not_finite,
        "duration_median_s": side.duration.median,
    }
    if side.mode == PARALLEL:
        cov = side.coverage
        doc.update(
            {
                "coverage_median": cov.median if cov else None,
                "coverage_min": cov.min if cov else None,
                "left_out": side.left_out,
                "left_out_coverage": side.left_out_coverage,
                "included_short_of_good": side.short_of_good,
            }
        )
    return doc


def _ratio_document(c: stats.Comparison | None) -> dict[str, Any] | None:
    if c is None or c.ratio is None:
        return None
    return {"ratio": c.ratio, "ci95_low": c.ratio_low, "ci95_high": c.ratio_high}


def row_document(row: Row) -> dict[str, Any]:
    c = row.comparison
    versus = _ratio_document(c)
    if versus is not None and c is not None:
        versus.update({"p_value": c.p_value, "effect_size": c.effect_size})
    return {
        "configuration": row.hyperparameters,
        "measured_with": row.measured_with,
        "methods": {name: str(row.setup[i]) for i, name in enumerate(SETUP_FIELDS)},
        "device_settings": row.device_settings or None,
        "imported": row.imported,
        "figure_method": row.method,
        "figure_includes": row.scope.includes,
        "cannot_tell": row.cannot_tell or None,
        "solo": _side_document(row.solo),
        "parallel": _side_document(row.parallel),
        "slowdown": _ratio_document(row.slowdown),
        "energy_ratios": {
            r.figure.key: {
                "label": r.figure.label,
                "method": r.method,
                **(_ratio_document(r.comparison) or {}),
            }
            for r in row.sharing
        },
        "parallel_over_solo": versus,
        "verdict": row.verdict or None,
        "runs_needed_per_group": c.runs_needed if c else None,
        "more_runs": row.more_runs() if row.paired else None,
    }


def document(table: Table) -> dict[str, Any]:
    """The comparison as JSON-ready data (without the selection's header, which the
    reader adds: workload, counts of runs, methods)."""
    figure = table.figure
    return {
        "figure": {
            "key": figure.key,
            "label": figure.label,
            "unit": table.unit_label,
            "includes": table.includes,
            "excludes": figure.excludes,
        },
        "coverage_rule": table.coverage_rule_text,
        "include_partial": table.include_partial,
        "configurations": table.configurations,
        "parallel_runs_left_out": len(table.left_out),
        "left_out_coverage": table.left_out,
        "parallel_runs_short_of_good_included": table.short_of_good,
        "values_not_finite": table.not_finite,
        "cannot_show": table.cannot_show or None,
        "sharing_cannot_show": table.sharing_missing or None,
        "intervals": {
            "median": stats.MEDIAN_METHOD,
            "ratio": stats.RATIO_METHOD,
            "median_min_runs": stats.MIN_INTERVAL_RUNS,
            "ratio_min_runs": stats.MIN_RUNS,
            "precision": stats.PRECISION,
        },
        "rows": [row_document(row) for row in table.rows],
    }


__all__ = [
    "GROUP_BY",
    "GROUP_LABELS",
    "NOT_RECORDED",
    "PARALLEL",
    "PARTS",
    "SHARING_FIGURES",
    "SOLO",
    "Ratio",
    "Row",
    "RunGroup",
    "Side",
    "Table",
    "build",
    "document",
    "left_out_text",
    "merged",
    "row_document",
]
