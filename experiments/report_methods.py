"""What a paper's appendix needs besides the numbers, written from the records only: the
hardware (GPU model and UUID, driver, CPU model, host) and a methods paragraph (meters,
sampling periods, estimates, n per group, interval method and test, coverage rule).

Nothing is invented: a value the records lack reads "not recorded". The texts of the
rules are the modules' own (``stats.MEDIAN_METHOD``, ``stats.RATIO_METHOD``,
``stats.TEST_METHOD``, ``core.coverage.verdict_rule``), never restated here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core.contract import METHOD_INFO
from core.coverage import verdict_rule
from experiments import stats
from experiments.comparison import Table
from experiments.figures import EnergyFigure
from experiments.models import Experiment, Host, Run

NOT_RECORDED = "not recorded"
#: The GPU methods that read NVML (its energy counter, or its power samples integrated).
_NVML = frozenset({"counter", "integrated"})


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


def _distinct(values: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(str(v).strip() for v in values if v not in (None, "")))


def _or_not_recorded(values: Sequence[str]) -> str:
    return ", ".join(values) if values else NOT_RECORDED


def _run_gpus(runs: Sequence[Run]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for run in runs:
        state = run.device_state if isinstance(run.device_state, dict) else {}
        out += [g for g in state.get("gpus") or [] if isinstance(g, dict)]
    return out


def _host_gpus(host: Host | None, uuids: list[str], index: int | None) -> list[dict[str, Any]]:
    """The host's GPUs the runs were metered on: by UUID, else by the experiment's GPU
    index. None where neither names one (the host may have several)."""
    gpus = [g for g in (host.gpus if host is not None else []) or [] if isinstance(g, dict)]
    by_uuid = [g for g in gpus if g.get("uuid") in uuids]
    if by_uuid:
        return by_uuid
    if index is not None:
        return [g for g in gpus if g.get("index") == index]
    return []


def _meter(host: Host | None, part: str, key: str) -> str:
    meters = host.meters if host is not None and isinstance(host.meters, dict) else {}
    section = meters.get(part)
    value = section.get(key) if isinstance(section, dict) else None
    return str(value) if value not in (None, "") else ""


def hardware(experiment: Experiment, runs: Sequence[Run]) -> list[Fact]:
    """The hardware the finished runs were measured on, from the runs' own records
    (device state, GPU UUIDs, Slurm node) and the host's record."""
    host = experiment.host
    run_gpus = _run_gpus(runs)
    uuids = _distinct([*(g.get("uuid") for g in run_gpus), *_split(r.gpu_uuid for r in runs)])
    host_gpus = _host_gpus(host, uuids, experiment.gpu_index)
    models = _distinct(g.get("name") for g in run_gpus) or _distinct(
        g.get("name") for g in host_gpus
    )
    if not uuids:
        uuids = _distinct(g.get("uuid") for g in host_gpus)
    hosts = _distinct([host.hostname if host is not None else None])
    nodes = _distinct((r.slurm or {}).get("node") for r in runs if isinstance(r.slurm, dict))
    settings = _distinct(r.device_settings_key for r in runs)
    facts = [
        Fact("GPU model", _or_not_recorded(models)),
        Fact("GPU UUID", _or_not_recorded(uuids)),
        Fact("GPU driver", _meter(host, "gpu", "driver") or NOT_RECORDED),
        Fact("GPU settings", _or_not_recorded(settings)),
        Fact("CPU model", _meter(host, "cpu", "model") or NOT_RECORDED),
        Fact(
            "CPU count",
            str(host.cpu_count) if host is not None and host.cpu_count else NOT_RECORDED,
        ),
        Fact("Host", _or_not_recorded(hosts)),
    ]
    if nodes:
        facts.append(Fact("Slurm node", ", ".join(nodes)))
    return facts


def _split(values: Iterable[str]) -> list[str]:
    return [part for v in values for part in (v or "").split(",") if part.strip()]


def _label(method: str) -> str:
    info = METHOD_INFO.get(method)
    return info.label if info is not None else (method or NOT_RECORDED)


def _count(runs: Sequence[Run], field: str) -> str:
    counts: dict[str, int] = {}
    for run in runs:
        m = getattr(run, field) or "unavailable"
        counts[m] = counts.get(m, 0) + 1
    return "; ".join(
        f"{_label(m)} ({n} run{'s' if n != 1 else ''})" for m, n in sorted(counts.items())
    )


def _periods(runs: Sequence[Run], figure: str) -> list[str]:
    values: list[float] = []
    for run in runs:
        p = (run.provenance or {}).get(figure)
        if isinstance(p, dict) and isinstance(p.get("sampling_period_s"), (int, float)):
            values.append(float(p["sampling_period_s"]))
    return [f"{v:g} s" for v in sorted(set(values))]


def _estimates(runs: Sequence[Run]) -> list[str]:
    said: list[str] = []
    if any(r.gpu_foreground_j is not None for r in runs):
        said.append(
            "the GPU foreground share (the GPU energy above idle split by per-process utilisation)"
        )
    if any(r.cpu_method == "estimate" for r in runs):
        said.append("the CPU energy (from the foreground process tree's CPU time)")
    if any(r.cpu_foreground_j is not None and r.cpu_method != "estimate" for r in runs):
        said.append("the CPU foreground part (by its share of the host's busy CPU time)")
    return said


#: Groups named one by one in the paragraph; the tables list every one.
GROUPS_NAMED = 8


def _groups(table: Table) -> str:
    parts = []
    for row in table.rows[:GROUPS_NAMED]:
        hp = ", ".join(f"{k}={v}" for k, v in row.hyperparameters.items()) or "defaults"
        left = f" ({row.left_out} parallel left out)" if row.left_out else ""
        parts.append(
            f"{hp} measured with {row.measured_with}: solo n = {row.solo.n}, "
            f"parallel n = {row.parallel.n}{left}"
        )
    more = len(table.rows) - GROUPS_NAMED
    if more > 0:
        parts.append(f"and {more} more (the tables give each one's n)")
    return "; ".join(parts) if parts else "no group has a finished run with this figure"


def methods(experiment: Experiment, runs: Sequence[Run], figure: EnergyFigure, table: Table) -> str:
    """The methods paragraph: every sentence from the records or the rules' own text."""
    n = len(runs)
    gpu_periods = _periods(runs, "gpu")
    cpu_periods = _periods(runs, "cpu")
    estimates = _estimates(runs)
    sentences = [
        f"{n} finished run{'s' if n != 1 else ''} of this {experiment.mode} experiment "
        f"were measured. GPU energy: {_count(runs, 'gpu_method') or NOT_RECORDED}"
        + (", read through NVML. " if any(r.gpu_method in _NVML for r in runs) else ". ")
        + f"CPU package energy: {_count(runs, 'cpu_method') or NOT_RECORDED}. "
        f"DRAM energy: {_count(runs, 'dram_method') or NOT_RECORDED}.",
        "Sampling period: GPU "
        + (", ".join(gpu_periods) if gpu_periods else NOT_RECORDED)
        + "; CPU "
        + (", ".join(cpu_periods) if cpu_periods else NOT_RECORDED)
        + ".",
        (
            "Estimates, not measurements: " + "; ".join(estimates) + "."
            if estimates
            else "No figure of these runs is an estimate."
        ),
        f"The comparison uses {figure.label}; groups (one configuration, one mode, one way "
        f"of measuring): {_groups(table)}.",
        f"Each group's median has its {stats.MEDIAN_METHOD} from "
        f"{stats.MIN_INTERVAL_RUNS} runs; below that the values are shown instead. "
        f"Parallel over solo is the {stats.RATIO_METHOD}, from {stats.MIN_RUNS} runs a "
        f"side. p is from the {stats.TEST_METHOD}, with the {stats.EFFECT_SIZE} as "
        f"effect size; a verdict is given only from {stats.MIN_RUNS} runs a side.",
        f"Coverage (the share of a parallel run's window during which the background "
        f"was training): {verdict_rule()}; {table.coverage_rule_text}.",
    ]
    return " ".join(sentences)
