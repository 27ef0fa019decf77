"""What ``submit --wait`` prints when the experiment ends: a table of its runs and, where
the history has the same configurations in the other mode, parallel against solo.

Reads only (like ``selectors``); the statistics are ``experiments.stats``, the same as
the compare page's, on the best energy figure this experiment's runs have.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from core.runlabel import label_of
from experiments import figures, stats
from experiments.figures import EnergyFigure
from experiments.models import Experiment, Run
from experiments.mutation import config_key
from experiments.templatetags.wattlab import joules, method_short, number, percent, seconds

#: A figure that could not be measured (None), said in words: never "0 J".
NOT_MEASURED = "not measured"


@dataclass
class Versus:
    """Parallel against solo for one configuration of the experiment."""

    hyperparameters: dict[str, Any]
    comparison: stats.Comparison


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


def versus(experiment: Experiment, figure: EnergyFigure) -> list[Versus]:
    """For each configuration of the experiment with finished runs in both modes in
    the workload's history (this experiment's runs included): parallel against solo."""
    mine = list(
        Run.objects.filter(experiment=experiment, status=Run.Status.SUCCEEDED)
        .order_by("config_index")
        .values_list("hyperparameters", flat=True)
    )
    wanted: dict[str, dict[str, Any]] = {}
    for hp in mine:
        wanted.setdefault(config_key(hp or {}), hp or {})
    if not wanted:
        return []
    same = Q()
    for hp in wanted.values():
        same |= Q(hyperparameters=hp)
    present = {f"{p}__isnull": False for p in figure.parts}
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"solo": [], "parallel": []})
    for hp, mode, *parts in (
        Run.objects.filter(same, **present)
        .filter(
            experiment__foreground_workload_id=experiment.foreground_workload_id,
            status=Run.Status.SUCCEEDED,
        )
        .values_list("hyperparameters", "experiment__mode", *figure.parts)
    ):
        key = config_key(hp or {})
        if key in wanted:
            groups[key][mode].append(sum(float(p) for p in parts))
    out = []
    for key, hp in wanted.items():
        g = groups.get(key)
        if g and g["solo"] and g["parallel"]:
            out.append(Versus(hp, stats.compare(g["parallel"], g["solo"])))
    return out


def interval(low: float | None, high: float | None, fmt: Any = joules) -> str:
    if low is None or high is None:
        return ""
    return f" [{fmt(low)}, {fmt(high)}]"


def versus_rows(items: list[Versus], vary: list[str]) -> list[list[str]]:
    rows = []
    for v in items:
        c = v.comparison
        ratio = "—"
        if c.ratio is not None:
            ratio = f"×{c.ratio:.3f}" + interval(c.ratio_low, c.ratio_high, lambda x: f"{x:.3f}")
        rows.append(
            [
                ", ".join(f"{k}={number(v.hyperparameters.get(k))}" for k in vary) or "defaults",
                f"{joules(c.b.median)}{interval(c.b.low, c.b.high)} n={c.b.n}",
                f"{joules(c.a.median)}{interval(c.a.low, c.a.high)} n={c.a.n}",
                ratio,
                "—" if c.p_value is None else f"{c.p_value:.2g}",
                c.verdict("parallel", "solo"),
            ]
        )
    return rows
