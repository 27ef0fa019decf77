"""What ``submit --wait`` prints when the experiment ends: a table of its runs, then
what sharing costs for its configurations and parallel against solo on the best energy
figure its runs have: the same ``experiments.comparison`` rows as its report and as
Compare (reads only, like ``selectors``).
"""

from __future__ import annotations

from typing import Any

from core.runlabel import label_of
from experiments import comparison, figures, selectors, stats
from experiments.comparison import Table
from experiments.figures import EnergyFigure
from experiments.models import Experiment, Run
from experiments.templatetags.wattlab import joules, method_short, number, percent, seconds

#: A figure that could not be measured (None), said in words: never "0 J".
NOT_MEASURED = "not measured"


def energy_cell(value: float | None, method: str) -> str:
    """An energy figure with its method; never 0 J for "could not measure"."""
    if value is None:
        return NOT_MEASURED
    return f"{joules(value)} ({method_short(method)})"


def varying(runs: list[Run]) -> tuple[list[str], dict[str, Any]]:
    """The hyperparameters that differ between the runs, and the ones all share."""
    names = sorted({k for r in runs for k in (r.hyperparameters or {})})
    vary = [n for n in names if len({repr((r.hyperparameters or {}).get(n)) for r in runs}) > 1]
    first = runs[0].hyperparameters or {} if runs else {}
    fixed = {n: first.get(n) for n in names if n not in vary}
    return vary, fixed


def run_rows(experiment: Experiment) -> tuple[list[list[str]], list[str], dict[str, Any]]:
    """One row per run (every attempt): run, its varying hyperparameters, status,
    duration, GPU and CPU energy with their methods, coverage and verdict, metrics."""
    runs = list(
        Run.objects.filter(experiment=experiment).order_by(
            "config_index", "repeat_index", "attempt"
        )
    )
    vary, fixed = varying(runs)
    rows = []
    for r in runs:
        hp = r.hyperparameters or {}
        if r.coverage_percent is not None:
            coverage = f"{percent(r.coverage_percent)} {r.coverage_verdict}".strip()
        else:
            coverage = "solo" if experiment.mode == Experiment.Mode.SOLO else "—"
        rows.append(
            [
                label_of(r),
                ", ".join(f"{k}={number(hp.get(k))}" for k in vary) or "defaults",
                r.status,
                seconds(r.duration_s),
                energy_cell(r.gpu_energy_j, r.gpu_method),
                energy_cell(r.cpu_energy_j, r.cpu_method),
                coverage,
                ", ".join(f"{k}={number(v)}" for k, v in (r.metrics or {}).items()) or "—",
            ]
        )
    return rows, vary, fixed


def best_figure(experiment: Experiment) -> EnergyFigure:
    """The figure the comparison is made on: the best one this experiment's finished
    runs have (GPU on a GPU host, CPU on a laptop), as the compare page chooses."""
    done = Run.objects.filter(experiment=experiment, status=Run.Status.SUCCEEDED)
    counts = {
        f.key: done.filter(**{f"{p}__isnull": False for p in f.parts}).count()
        for f in figures.FIGURES
    }
    return figures.best(counts)


def versus(experiment: Experiment, figure: EnergyFigure) -> Table:
    """The experiment's configurations, parallel against solo, from every finished run
    of them in either mode: the same rows as its report and as Compare."""
    return selectors.configurations_table(
        workload=experiment.foreground_workload,
        figure=figure,
        hyperparameters=selectors.experiment_configurations(experiment),
    )


def interval(low: float | None, high: float | None, fmt: Any = joules) -> str:
    if low is None or high is None:
        return ""
    return f" [{fmt(low)}, {fmt(high)}]"


def _ratio(c: stats.Comparison | None) -> str:
    if c is None or c.ratio is None:
        return "—"
    if c.ratio_low is None or c.ratio_high is None:
        return f"×{c.ratio:.3f} (too few runs for a 95 % interval)"
    return f"×{c.ratio:.3f} [×{c.ratio_low:.3f}, ×{c.ratio_high:.3f}]"


def _label(row: comparison.Row, vary: list[str], table: Table) -> str:
    """The row's configuration, and how it was measured where another row of the same
    configuration was measured otherwise (another method or GPU settings)."""
    label = ", ".join(f"{k}={number(row.hyperparameters.get(k))}" for k in vary) or "defaults"
    if sum(1 for r in table.rows if r.key == row.key) > 1:
        label += f" ({row.measured_with})"
    return label


def sharing_header(table: Table) -> list[str]:
    """The columns of ``sharing_rows``: what sharing costs, as Compare's headline."""
    return [
        "configuration",
        "runs solo / parallel",
        "parallel coverage (median, lowest)",
        "slowdown (duration)",
        *(f"{f.label}, parallel / solo" for f in table.sharing_figures),
    ]


def sharing_rows(table: Table, vary: list[str]) -> list[list[str]]:
    rows = []
    for r in table.rows:
        cov = r.parallel.coverage
        coverage = f"{percent(cov.median)}, {percent(cov.min)}" if cov and cov.n else "—"
        if r.left_out:
            coverage += f" ({r.left_out} left out)"
        by_key = r.sharing_by_key
        rows.append(
            [
                _label(r, vary, table),
                f"{r.solo.n} / {r.parallel.n}",
                coverage,
                _ratio(r.slowdown),
                *(
                    _ratio(by_key[f.key].comparison) if f.key in by_key else "—"
                    for f in table.sharing_figures
                ),
            ]
        )
    return rows


def versus_rows(table: Table, vary: list[str]) -> list[list[str]]:
    """Parallel against solo on the table's figure, one line per row with a verdict."""
    rows = []
    for r in table.rows:
        solo, par = r.solo.summary, r.parallel.summary
        rows.append(
            [
                _label(r, vary, table),
                f"{joules(solo.median)}{interval(solo.low, solo.high)} n={solo.n}",
                f"{joules(par.median)}{interval(par.low, par.high)} n={par.n}",
                _ratio(r.comparison),
                stats.format_p(r.comparison.p_value) if r.comparison else "—",
                r.verdict or ("no parallel run counted yet" if solo.n else "no solo run yet"),
            ]
        )
    return rows
