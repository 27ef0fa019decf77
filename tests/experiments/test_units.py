"""The one unit-scaling rule (experiments.units): which unit at which size, what the
title carries, and the boundaries where the unit changes."""

from __future__ import annotations

import math

import pytest

from experiments import units


@pytest.mark.parametrize(
    ("joules", "text"),
    [
        (0.0, "0 J"),
        (1.2e-5, "1.2e-05 J"),
        (0.5, "0.5 J"),
        (999.4, "999 J"),
        (999.99, "1 kJ"),  # shown as it rounds: never "1000 J"
        (1000.0, "1 kJ"),
        (12345.678, "12.3 kJ"),
        (359_000.0, "359 kJ"),
        (359_999.0, "100 Wh"),
        (360_000.0, "100 Wh"),
        (3_590_000.0, "997 Wh"),
        (3_599_000.0, "1 kWh"),
        (3_600_000.0, "1 kWh"),
        (7_200_000.0, "2 kWh"),
        (3.6e9, "1000 kWh"),
    ],
)
def test_energy_takes_the_unit_its_size_calls_for(joules, text):
    assert units.energy(joules).text == text


def test_a_tiny_energy_never_reads_as_a_fraction_of_a_kwh():
    scaled = units.energy(43.2)  # 0.000012 kWh
    assert scaled.text == "43.2 J" and "kWh" not in scaled.text


def test_the_exact_value_keeps_full_resolution_without_float_noise():
    assert units.energy(46.025000000000006).exact == "46.025 J"
    assert units.energy(12345.678).exact == "12345.678 J"
    assert units.energy(7_200_000.5).exact == "7200000.5 J"


@pytest.mark.parametrize(
    ("kg", "text", "exact"),
    [
        (1.2e-5, "0.012 gCO2e", "1.2e-05 kgCO2e"),
        (0.2, "200 gCO2e", "0.2 kgCO2e"),
        (0.9995, "1 kgCO2e", "0.9995 kgCO2e"),
        (1.0, "1 kgCO2e", "1 kgCO2e"),
        (1234.5, "1234 kgCO2e", "1234.5 kgCO2e"),
    ],
)
def test_carbon_in_grams_below_a_kilogram(kg, text, exact):
    scaled = units.carbon(kg)
    assert (scaled.text, scaled.exact) == (text, exact)


def test_a_value_that_is_not_finite_is_said_not_scaled():
    assert units.energy(math.inf).text == "not finite"
    assert units.carbon(math.nan).text == "not finite"


def test_the_page_filter_puts_the_exact_value_in_a_title():
    from experiments.templatetags.wattlab import carbon_exact, energy_exact, joules

    assert energy_exact(12345.678) == '<span class="q" title="12345.678 J">12.3 kJ</span>'
    assert carbon_exact(0.2) == '<span class="q" title="0.2 kgCO2e">200 gCO2e</span>'
    assert joules(None) == "—" and energy_exact(None) == "—"
