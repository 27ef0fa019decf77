"""Energy figures of runs as kWh, kgCO2e and cost, with the factors each used: the run's
own (kept when it finished) or, on request, its host's factors of today."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from experiments import carbon
from experiments.figures import FIGURES, EnergyFigure
from experiments.models import Host, Run, host_factors


@dataclass
class FigureTotal:
    figure: EnergyFigure
    runs: int = 0
    lacking: int = 0
    joules: float = 0.0
    kwh: float = 0.0
    kg_co2e: float | None = None
    cost: float | None = None
    #: Runs whose energy had no carbon intensity / price to convert with.
    no_intensity: int = 0
    no_price: int = 0


@dataclass
class Footprints:
    today: bool
    totals: list[FigureTotal]
    #: Each distinct set of factors used, described (usually one per host).
    factors_used: list[str] = field(default_factory=list)
    currencies: list[str] = field(default_factory=list)
    runs_without_factors: int = 0

    @property
    def currency(self) -> str:
        return self.currencies[0] if len(self.currencies) == 1 else ""


def factors_for(run: Run, *, today: bool, host: Host | None = None) -> carbon.Factors | None:
    if today:
        return host_factors(host)
    return run.stored_factors


def footprints(runs: Iterable[Run], *, today: bool, host: Host | None = None) -> Footprints:
    """Totals per figure over ``runs``, each run converted with its own factors (or with
    ``host``'s factors of today when ``today``). Costs in different currencies are not
    added: the total cost is given only when every run used one currency."""
    runs = list(runs)
    totals = {f.key: FigureTotal(f) for f in FIGURES}
    used: dict[str, None] = {}
    currencies: dict[str, None] = {}
    missing = 0
    for run in runs:
        factors = factors_for(run, today=today, host=host)
        if factors is None:
            missing += 1
        else:
            used[factors.describe()] = None
        for f in FIGURES:
            t = totals[f.key]
            j = f.value(run)
            if j is None:
                t.lacking += 1
                continue
            fp = carbon.Footprint.of(j, factors)
            t.runs += 1
            t.joules += j
            t.kwh += fp.kwh or 0.0
            if fp.kg_co2e is None:
                t.no_intensity += 1
            else:
                t.kg_co2e = (t.kg_co2e or 0.0) + fp.kg_co2e
            if fp.cost is None:
                t.no_price += 1
            else:
                t.cost = (t.cost or 0.0) + fp.cost
                currencies[fp.currency] = None
    result = Footprints(
        today=today,
        totals=[totals[f.key] for f in FIGURES],
        factors_used=list(used),
        currencies=list(currencies),
        runs_without_factors=missing,
    )
    if len(result.currencies) > 1:
        for t in result.totals:
            t.cost = None  # no sum across currencies
    return result
