"""The energy figures a comparison can be made on. One entry per figure: a new figure
(say, a second GPU) joins the comparison pages, the CSV and the report by adding one
``EnergyFigure`` to ``FIGURES``.

A figure is the sum of one or more Run columns; it exists for a run only where every
part exists (a total with a missing part is no total), which SQL's NULL arithmetic
gives for free.
"""

from __future__ import annotations

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
    ),
    EnergyFigure(
        "cpu",
        "CPU energy (package)",
        ("cpu_energy_j",),
        ("cpu_method",),
        help="the CPU package (RAPL, perf or the labelled estimate)",
    ),
    EnergyFigure("dram", "DRAM energy", ("dram_energy_j",), ("dram_method",)),
    EnergyFigure(
        "total",
        "Total energy (GPU + CPU + DRAM)",
        ("gpu_energy_j", "cpu_energy_j", "dram_energy_j"),
        ("gpu_method", "cpu_method", "dram_method"),
        help="only for runs where all three parts were measured",
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
