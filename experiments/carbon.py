"""Energy in joules as kWh, kgCO2e and money. Pure: no Django.

    kWh (measured)   = J / 3.6e6
    kWh (facility)   = kWh x PUE            (the data centre's overhead: cooling, power)
    kgCO2e           = kWh (facility) x grid intensity [gCO2e/kWh] / 1000
    cost             = kWh (facility) x price [currency/kWh]

Shown kWh is the measured one; carbon and cost are charged on the facility's kWh, as
the grid and the bill see them. A factor that was never set gives None ("not set"),
never a zero.

A run keeps the ``Factors`` of its host at the time it finished (history is not
rewritten when a factor changes); a page may recompute with today's on request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

J_PER_KWH = 3.6e6


class Unit:
    J = "J"
    KWH = "kWh"
    KGCO2E = "kgCO2e"
    COST = "cost"


UNITS = (Unit.J, Unit.KWH, Unit.KGCO2E, Unit.COST)


@dataclass(frozen=True)
class Factors:
    carbon_intensity_g_per_kwh: float | None
    pue: float
    price_per_kwh: float | None
    currency: str
    #: When these values were set (ISO 8601), and by what: "admin" or "environment".
    set_at: str = ""
    source: str = ""
    host: str = ""

    def to_dict(self) -> dict[str, Any]:
        # Unset factors are left out, not stored as null: a JSON null would still count
        # as "has the key" in a database lookup.
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Factors | None:
        if not data:
            return None

        def num(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            carbon_intensity_g_per_kwh=num("carbon_intensity_g_per_kwh"),
            pue=float(data.get("pue") or 1.0),
            price_per_kwh=num("price_per_kwh"),
            currency=str(data.get("currency") or ""),
            set_at=str(data.get("set_at") or ""),
            source=str(data.get("source") or ""),
            host=str(data.get("host") or ""),
        )

    def describe(self) -> str:
        """The values used, for a page or a report: what a reader needs to redo the sum."""
        ci = (
            f"{self.carbon_intensity_g_per_kwh:g} gCO2e/kWh"
            if self.carbon_intensity_g_per_kwh is not None
            else "carbon intensity not set"
        )
        price = (
            f"{self.price_per_kwh:g} {self.currency}/kWh"
            if self.price_per_kwh is not None
            else "price not set"
        )
        when = f", set {self.set_at[:16].replace('T', ' ')} UTC" if self.set_at else ""
        by = f" ({'in the admin' if self.source == 'admin' else 'from the environment'})"
        host = f"{self.host}: " if self.host else ""
        return f"{host}{ci}, PUE {self.pue:g}, {price}{when}{by if self.source else ''}"


def kwh(joules: float | None) -> float | None:
    return None if joules is None else joules / J_PER_KWH


def facility_kwh(joules: float | None, factors: Factors | None) -> float | None:
    if joules is None or factors is None:
        return None
    return joules / J_PER_KWH * factors.pue


def kg_co2e(joules: float | None, factors: Factors | None) -> float | None:
    e = facility_kwh(joules, factors)
    if e is None or factors is None or factors.carbon_intensity_g_per_kwh is None:
        return None
    return e * factors.carbon_intensity_g_per_kwh / 1000.0


def cost(joules: float | None, factors: Factors | None) -> float | None:
    e = facility_kwh(joules, factors)
    if e is None or factors is None or factors.price_per_kwh is None:
        return None
    return e * factors.price_per_kwh


def convert(joules: float | None, unit: str, factors: Factors | None) -> float | None:
    if unit == Unit.J:
        return joules
    if unit == Unit.KWH:
        return kwh(joules)
    if unit == Unit.KGCO2E:
        return kg_co2e(joules, factors)
    if unit == Unit.COST:
        return cost(joules, factors)
    raise ValueError(f"unknown unit {unit!r}: one of {', '.join(UNITS)}")


def unit_label(unit: str, currency: str = "") -> str:
    return {
        Unit.J: "J",
        Unit.KWH: "kWh",
        Unit.KGCO2E: "kgCO2e",
        Unit.COST: currency or "cost",
    }[unit]


@dataclass(frozen=True)
class Footprint:
    """One energy figure in every unit, with the factors used."""

    joules: float | None
    kwh: float | None
    kg_co2e: float | None
    cost: float | None
    currency: str
    factors: Factors | None

    @classmethod
    def of(cls, joules: float | None, factors: Factors | None) -> Footprint:
        return cls(
            joules=joules,
            kwh=kwh(joules),
            kg_co2e=kg_co2e(joules, factors),
            cost=cost(joules, factors),
            currency=factors.currency if factors else "",
            factors=factors,
        )
