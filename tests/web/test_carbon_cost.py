"""Carbon and cost on the pages, the exports and the admin: values used and when set,
history kept, today's factors on request."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone

from experiments import carbon
from tests.web import factories

pytestmark = pytest.mark.django_db

KEPT = carbon.Factors(
    carbon_intensity_g_per_kwh=400.0,
    pue=1.5,
    price_per_kwh=0.2,
    currency="EUR",
    set_at="2026-11-01T09:30:00+00:00",
    source="admin",
    host="gpu01",
)


def _run_with_factors(owner, wl, **kw):
    h = factories.host("gpu01")
    h.carbon_intensity_g_per_kwh = 100.0
    h.pue = 1.0
    h.electricity_price_per_kwh = 0.5
    h.currency = "EUR"
    h.factors_set_at = timezone.now()
    h.save()
    e = factories.experiment(owner, wl, status="succeeded")
    e.host = h
    e.save()
    # 7.2 MJ of GPU = 2 kWh; 3.6 MJ of CPU = 1 kWh.
    run = factories.run(
        e, 0, 0, gpu_energy_j=7.2e6, cpu_energy_j=3.6e6, factors=KEPT.to_dict(), **kw
    )
    return e, run


def test_the_run_page_shows_kwh_carbon_and_cost_with_the_factors_it_kept(as_member, owner, wl):
    e, _run = _run_with_factors(owner, wl)
    page = as_member.get(f"/experiments/{e.code}/runs/1.1.1/").content.decode()
    # GPU: 2 kWh x PUE 1.5 x 400 g/kWh = 1.2 kgCO2e; x 0.2 EUR/kWh = 0.6 EUR.
    assert "2 kWh" in page and "1.2 kgCO2e" in page and "0.6 EUR" in page
    assert "gpu01: 400 gCO2e/kWh, PUE 1.5, 0.2 EUR/kWh, set 2026-11-01 09:30 UTC" in page
    assert "Recompute with today's factors" in page


def test_today_s_factors_on_request(as_member, owner, wl):
    e, _run = _run_with_factors(owner, wl)
    page = as_member.get(f"/experiments/{e.code}/runs/1.1.1/?factors=today").content.decode()
    # GPU: 2 kWh x PUE 1.0 x 100 g/kWh = 0.2 kgCO2e (200 g); x 0.5 EUR/kWh = 1 EUR.
    assert 'title="0.2 kgCO2e">200 gCO2e' in page and "1 EUR" in page
    assert "Recomputed with today's factors" in page
    assert "gpu01: 100 gCO2e/kWh, PUE 1, 0.5 EUR/kWh" in page


def test_a_run_without_factors_says_so_and_never_shows_zero(as_member, owner, wl):
    e = factories.experiment(owner, wl, status="succeeded")
    factories.run(e, 0, 0)
    page = as_member.get(f"/experiments/{e.code}/runs/1.1.1/").content.decode()
    assert "no carbon intensity set" in page and "no price set" in page
    assert "1 run kept no factors" in page
    assert "0 kgCO2e" not in page


def test_exports_carry_the_factors_and_every_figure_in_each_unit(as_member, owner, wl):
    e, _run = _run_with_factors(owner, wl)
    text = as_member.get(f"/experiments/{e.code}/export.csv").content.decode()
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["carbon_intensity_g_per_kwh"] == "400.0" and row["pue"] == "1.5"
    assert row["currency"] == "EUR" and row["factors_set_at"] == KEPT.set_at
    assert float(row["gpu_kwh"]) == pytest.approx(2.0)
    assert float(row["gpu_kgco2e"]) == pytest.approx(1.2)
    assert float(row["gpu_cost"]) == pytest.approx(0.6)
    assert float(row["cpu_kgco2e"]) == pytest.approx(0.6)
    assert row["dram_kwh"] == "" and row["total_kwh"] == ""  # not measured: empty, not 0
    doc = as_member.get(f"/experiments/{e.code}/export.json").json()
    assert doc["runs"][0]["carbon_and_cost"]["factors"]["source"] == "admin"


def test_compare_converts_each_run_with_its_own_factors(as_member, owner, wl):
    s = factories.experiment(owner, wl, status="succeeded")
    p = factories.experiment(owner, wl, status="succeeded", mode="parallel")
    cheap = dict(KEPT.to_dict(), carbon_intensity_g_per_kwh=100.0, pue=1.0)
    factories.run(s, 0, 0, gpu_energy_j=3.6e6, factors=cheap)  # 1 kWh x 100 g = 0.1 kg
    factories.run(p, 0, 0, gpu_energy_j=3.6e6, factors=KEPT.to_dict())  # x 1.5 x 400 = 0.6
    factories.run(p, 0, 1, gpu_energy_j=3.6e6)  # kept no factors: lacks the figure in kg
    response = as_member.get("/compare/?workload=mnist&figure=gpu&unit=kgCO2e")
    data = response.context["data"]
    row = data.rows[0]
    assert row.solo.median == pytest.approx(0.1) and row.parallel.median == pytest.approx(0.6)
    assert (data.total_runs, data.lacking) == (2, 1)
    page = response.content.decode()
    assert "GPU energy (device) in kgCO2e and a carbon intensity: 2 of 3 finished runs" in page
    kwh = as_member.get("/compare/?workload=mnist&figure=gpu&unit=kWh").context["data"]
    assert kwh.total_runs == 3 and kwh.rows[0].parallel.median == pytest.approx(1.0)


def test_staff_setting_a_factor_in_the_admin_records_when(client, staff):
    h = factories.host("gpu01")
    client.force_login(staff)
    url = f"/admin/experiments/host/{h.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {k: ("" if v is None else v) for k, v in form.initial.items()}
    data.update(
        {
            "hostname": h.hostname,
            "queue": h.queue,
            "control_queue": h.control_queue,
            "gpus": "[]",
            "meters": "{}",
            "utilisation": "{}",
            "carbon_intensity_g_per_kwh": "250",
            "pue": "1.1",
            "electricity_price_per_kwh": "0.18",
            "currency": "CHF",
        }
    )
    data = {k: v for k, v in data.items() if k in form.fields}
    before = timezone.now()
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    h.refresh_from_db()
    assert h.carbon_intensity_g_per_kwh == 250.0 and h.currency == "CHF"
    assert h.factors_set_at is not None and h.factors_set_at >= before
    f = h.current_factors()
    assert (f.pue, f.price_per_kwh, f.source) == (1.1, 0.18, "admin")
