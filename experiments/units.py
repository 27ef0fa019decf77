"""Quantities in a unit a person reads at a glance, and their exact value. Pure: no
Django. The one rule for every page, the report and its exports:

- energy (stored in joules): J below 1 kJ, kJ below 100 Wh (360 kJ), Wh below 1 kWh,
  kWh from there on, so a training of seconds reads in J and a week of a cluster in
  kWh, and no figure reads "0.000012 kWh";
- carbon (computed in kgCO2e): gCO2e below 1 kg, kgCO2e from there on.

The shown text keeps ``SHOWN_DIGITS`` significant digits (every digit left of the
point above that); ``Scaled.exact`` is the value at full resolution in its base unit (J
or kgCO2e) for a ``title`` on hover and for the exports, to ``EXACT_DIGITS`` significant
digits: binary floats carry noise past the 15th ("46.025000000000006") and no meter
here resolves 12.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

J_PER_WH = 3600.0
SHOWN_DIGITS = 3
EXACT_DIGITS = 12

#: (unit, its size in the base unit, shown from this many base units): largest first.
ENERGY_STEPS: tuple[tuple[str, float, float], ...] = (
    ("kWh", 1000 * J_PER_WH, 1000 * J_PER_WH),
    ("Wh", J_PER_WH, 100 * J_PER_WH),
    ("kJ", 1e3, 1e3),
    ("J", 1.0, 0.0),
)
CARBON_STEPS: tuple[tuple[str, float, float], ...] = (
    ("kgCO2e", 1.0, 1.0),
    ("gCO2e", 1e-3, 0.0),
)


@dataclass(frozen=True)
class Scaled:
    #: The value in ``unit``.
    value: float
    unit: str
    #: "12.3 kJ".
    text: str
    #: "12345.678 J": the full value in the base unit.
    exact: str

    def __str__(self) -> str:
        return self.text


def significant(value: float, digits: int = SHOWN_DIGITS) -> str:
    """``digits`` significant digits, never an exponent from 0.001 to the integers
    (1234.5 -> "1235", 12.345 -> "12.3", 0.00123 -> "0.00123")."""
    if not math.isfinite(value):
        return "not finite"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= digits - 1:
        return f"{value:.0f}"
    if magnitude >= -3:
        decimals = digits - 1 - magnitude
        text = f"{value:.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{value:.{digits}g}"


def exact(value: float, unit: str) -> str:
    """The value at full resolution with its unit ("46.025 J")."""
    if not math.isfinite(value):
        return f"not finite ({value}) {unit}"
    return f"{value:.{EXACT_DIGITS}g} {unit}"


def _scale(value: float, steps: tuple[tuple[str, float, float], ...], base: str) -> Scaled:
    v = float(value)
    if not math.isfinite(v):
        return Scaled(v, base, "not finite", exact(v, base))
    # The unit is chosen on the value as shown: 999.99 J shows as 1 kJ, not "1000 J".
    rounded = abs(float(f"{v:.{SHOWN_DIGITS}g}"))
    unit, size, _ = next(s for s in steps if rounded >= s[2])
    shown = v / size
    return Scaled(shown, unit, f"{significant(shown)} {unit}", exact(v, base))


def energy(joules: float) -> Scaled:
    """Joules in J, kJ, Wh or kWh (the module's rule); exact in J."""
    return _scale(joules, ENERGY_STEPS, "J")


def carbon(kg_co2e: float) -> Scaled:
    """kgCO2e in gCO2e or kgCO2e; exact in kgCO2e."""
    # Exact in kg: as computed (experiments.carbon) and as the exports' columns say.
    return _scale(kg_co2e, CARBON_STEPS, "kgCO2e")
