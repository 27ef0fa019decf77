"""The energy figures a comparison can be made on. One entry per figure: a new figure
(say, a second GPU) joins the comparison pages, the CSV and the report by adding one
``EnergyFigure`` to ``FIGURES``.

A figure is the sum of one or more Run columns; it exists for a run only where every
part exists (a total with a missing part is no total), which SQL's NULL arithmetic
gives for free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EnergyFigure:
    key: str
    label: str
    #: Run columns (joules) summed into the figure.
    parts: tuple[str, ...]
    #: Run columns holding each part's method, in the same order.
    method_fields: tuple[str, ...]
    #: Method of a part with no method column of its own.
    fixed_method: str = ""
    #: How to read ``fixed_method`` (Run.Method's labels describe the CPU estimate).
    fixed_method_label: str = ""
    help: str = ""
    #: What the figure leaves out, whatever its method.
    excludes: str = ""

    def sql(self, alias: str = "r") -> str:
        """The figure as a SQL expression (column names come from this module only)."""
        return "(" + " + ".join(f"{alias}.{part}" for part in self.parts) + ")"

    def value(self, run: object) -> float | None:
        total = 0.0
        for part in self.parts:
            v = getattr(run, part, None)
            if v is None:
                return None
            total += float(v)
        return total

    def method_of(self, run: object) -> str:
        if self.fixed_method:
            return self.fixed_method
        return " + ".join(str(getattr(run, f, "") or "unknown") for f in self.method_fields)


#: In order of preference (see ``best``).
FIGURES: tuple[EnergyFigure, ...] = (
    EnergyFigure(
        "gpu",
        "GPU energy (device)",
        ("gpu_energy_j",),
        ("gpu_method",),
        help="the whole GPU, background included in parallel runs",
        excludes="the CPU package, DRAM and the rest of the machine",
    ),
    EnergyFigure(
        "gpu_foreground",
        "GPU foreground share",
        ("gpu_foreground_j",),
        (),
        # The share is a split of the device figure by per-process utilisation: always
        # an estimate (Run.gpu_foreground_method is "estimate" wherever it has a value).
        fixed_method="estimate",
        fixed_method_label=(
            "estimate: the GPU energy above idle split by per-process utilisation, "
            "the idle part by a stated rule"
        ),
        help="an estimate of the foreground's part of the GPU figure (see a run's flags)",
        excludes="the background's part of the GPU, the CPU package and DRAM",
    ),
    EnergyFigure(
        "cpu",
        "CPU energy (package)",
        ("cpu_energy_j",),
        ("cpu_method",),
        help="the CPU package (RAPL, perf or the labelled estimate)",
        excludes="the GPU and DRAM",
    ),
    EnergyFigure(
        "dram",
        "DRAM energy",
        ("dram_energy_j",),
        ("dram_method",),
        excludes="the GPU and the CPU package",
    ),
    EnergyFigure(
        "total",
        "Total energy (GPU + CPU + DRAM)",
        ("gpu_energy_j", "cpu_energy_j", "dram_energy_j"),
        ("gpu_method", "cpu_method", "dram_method"),
        help="only for runs where all three parts were measured",
        excludes="the rest of the machine (disks, network, fans, power supply)",
    ),
)

BY_KEY = {f.key: f for f in FIGURES}


def get(key: str) -> EnergyFigure | None:
    return BY_KEY.get(key)


def best(counts: dict[str, int]) -> EnergyFigure:
    """The first figure in order of preference that at least half the runs have (a GPU
    host's runs open on the GPU even if a few lack it); failing that, the one most runs
    have, ties to the earlier; GPU when there are no runs."""
    most = max(counts.values(), default=0)
    for f in FIGURES:
        if most and counts.get(f.key, 0) * 2 >= most:
            return f
    return FIGURES[0]


# --- What a figure includes, and whether it can show what sharing costs --------------

#: The method columns that say how a run was measured. Runs measured differently are
#: never pooled into one median: the comparison groups runs by these
#: (``experiments.comparison``), so a RAPL run and an estimate run of the same
#: configuration are two groups.
SETUP_FIELDS = ("gpu_method", "gpu_foreground_method", "cpu_method", "dram_method")

#: Methods that measured nothing.
NOT_MEASURED = frozenset({"", "unavailable", "unknown"})
#: The CPU estimate: the foreground's own process tree's CPU time, never the package
#: (the background is not in it).
FOREGROUND_ONLY = frozenset({"estimate"})

#: How to get a figure that can show what sharing the device costs.
HOW_TO_MEASURE = (
    "run on a GPU host (NVML measures the shared GPU), or give the worker read access to "
    "RAPL (/sys/class/powercap/intel-rapl:*/energy_uj, or perf's power/energy-pkg/ "
    "events) to measure the whole CPU package"
)


@dataclass(frozen=True)
class Scope:
    """What a figure measured one way includes and leaves out, and whether it can show
    what sharing the device costs (``why_not`` says why not)."""

    includes: str
    excludes: str
    shows_sharing: bool
    why_not: str = ""


_PART_SCOPE = {
    "gpu_energy_j": (
        "the whole GPU (the foreground and, in parallel runs, the background)",
        "the GPU was not measured on this host (no NVML)",
    ),
    "gpu_foreground_j": (
        "an estimate of the foreground's part of the GPU figure (split by per-process utilisation)",
        "the GPU was not measured on this host, so it has no foreground share",
    ),
    "cpu_energy_j": (
        "the whole CPU package (every process on it, the background included)",
        "the CPU package was not measured",
    ),
    "dram_energy_j": (
        "the DRAM of the package (every process, the background included)",
        "DRAM was not measured",
    ),
}
_CPU_ESTIMATE = (
    "an estimate of the foreground's own CPU use (its process tree's CPU time)",
    "the CPU figure is an estimate of the foreground's own CPU time: the background is not in it",
)


def scope(figure: EnergyFigure, method: str) -> Scope:
    """What ``figure`` includes when measured by ``method`` (its method string, parts
    joined by " + " as ``method_of`` gives it)."""
    methods = method.split(" + ") if method else [""]
    if len(methods) != len(figure.parts):
        methods = [figure.fixed_method or method] * len(figure.parts)
    includes: list[str] = []
    missing: list[str] = []
    for part, m in zip(figure.parts, methods, strict=True):
        what, not_measured = _PART_SCOPE[part]
        if part == "cpu_energy_j" and m in FOREGROUND_ONLY:
            includes.append(_CPU_ESTIMATE[0])
            missing.append(_CPU_ESTIMATE[1])
        elif m in NOT_MEASURED:
            missing.append(not_measured)
        else:
            includes.append(what)
    return Scope(
        includes="; ".join(includes) or "nothing (not measured)",
        excludes=figure.excludes,
        shows_sharing=not missing,
        why_not="; ".join(dict.fromkeys(missing)),
    )


def setup_label(setup: Sequence[str], labels: dict[str, str] | None = None) -> str:
    """ "GPU counter, CPU RAPL" (the short names of the methods that measured)."""
    names = ("GPU", "GPU share", "CPU", "DRAM")
    labels = labels or {}
    parts = [
        f"{name} {labels.get(m, m)}"
        for name, m in zip(names, setup, strict=False)
        if m not in NOT_MEASURED and name != "GPU share"
    ]
    return ", ".join(parts) or "nothing measured"
