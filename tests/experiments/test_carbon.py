"""Carbon and cost arithmetic, units spelled out in each case."""

from __future__ import annotations

import pytest

from experiments import carbon

# 350 gCO2e/kWh grid, 20 % data-centre overhead, 0.25 EUR/kWh.
F = carbon.Factors(carbon_intensity_g_per_kwh=350.0, pue=1.2, price_per_kwh=0.25, currency="EUR")


def test_one_kwh_is_3_6_megajoules():
    assert carbon.kwh(3.6e6) == 1.0
    assert carbon.kwh(7.2e5) == pytest.approx(0.2)


def test_carbon_is_charged_on_facility_energy():
    # 36 MJ = 10 kWh measured; x PUE 1.2 = 12 kWh at the meter; x 350 g/kWh = 4200 g.
    assert carbon.facility_kwh(36e6, F) == pytest.approx(12.0)
    assert carbon.kg_co2e(36e6, F) == pytest.approx(4.2)


def test_cost_is_facility_kwh_times_price():
    # 12 kWh at the meter x 0.25 EUR/kWh = 3 EUR.
    assert carbon.cost(36e6, F) == pytest.approx(3.0)


def test_pue_of_one_changes_nothing():
    one = carbon.Factors(
        carbon_intensity_g_per_kwh=500.0, pue=1.0, price_per_kwh=0.1, currency="USD"
    )
    # 1 kWh x 500 g/kWh = 0.5 kg; 1 kWh x 0.1 USD/kWh = 0.1 USD.
    assert carbon.kg_co2e(3.6e6, one) == pytest.approx(0.5)
    assert carbon.cost(3.6e6, one) == pytest.approx(0.1)


def test_an_unset_factor_is_none_never_zero():
    unset = carbon.Factors(
        carbon_intensity_g_per_kwh=None, pue=1.0, price_per_kwh=None, currency="EUR"
    )
    assert carbon.kg_co2e(3.6e6, unset) is None
    assert carbon.cost(3.6e6, unset) is None
    assert carbon.kg_co2e(3.6e6, None) is None
    assert carbon.kg_co2e(None, F) is None
    assert carbon.kwh(None) is None
    assert "carbon intensity not set" in unset.describe()
    assert "price not set" in unset.describe()


def test_convert_by_unit_name():
    assert carbon.convert(36e6, "J", F) == 36e6
    assert carbon.convert(36e6, "kWh", F) == pytest.approx(10.0)
    assert carbon.convert(36e6, "kgCO2e", F) == pytest.approx(4.2)
    assert carbon.convert(36e6, "cost", F) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="unknown unit 'W'"):
        carbon.convert(1.0, "W", F)


def test_factors_round_trip_and_describe_the_values_and_when_set():
    f = carbon.Factors(
        carbon_intensity_g_per_kwh=350.0,
        pue=1.2,
        price_per_kwh=None,
        currency="EUR",
        set_at="2026-11-30T03:00:00+00:00",
        source="admin",
        host="gpu01",
    )
    stored = f.to_dict()
    assert "price_per_kwh" not in stored  # unset: left out, not a JSON null
    assert carbon.Factors.from_dict(stored) == f
    assert carbon.Factors.from_dict({}) is None
    assert f.describe() == (
        "gpu01: 350 gCO2e/kWh, PUE 1.2, price not set, set 2026-11-30 03:00 UTC (in the admin)"
    )


def test_footprint_gives_every_unit_at_once():
    fp = carbon.Footprint.of(36e6, F)
    assert (fp.kwh, fp.kg_co2e, fp.cost, fp.currency) == pytest.approx((10.0, 4.2, 3.0, "EUR"))
