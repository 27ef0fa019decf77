"""A run's GPU settings and the foreground's part of a host-wide CPU figure, from the
engine's own report (a measurement on the fake NVML library and a fake powercap tree)
to the run page, the JSON export, the API and the CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import time
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.contract import CoverageReport, RunKey, RunResult, SensorPeriods
from experiments import services
from experiments.api import token_create
from experiments.models import Run
from tests.web import factories
from tests.workers.conftest import fake_nvml
from workers.energy import nvml
from workers.energy.session import Measurement, open_meters

pytestmark = pytest.mark.django_db


def _engine_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    fake = fake_nvml(monkeypatch)
    monkeypatch.setattr(nvml, "SLOW_PERIOD_S", 0.1)
    fake.devices[0].energy_mj = None
    fake.devices[0].event_reasons = 0x4  # software power cap
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    meters = open_meters([0], powercap_root=tmp_path / "powercap", double="", try_perf=False)
    meters.sensor_periods[0] = SensorPeriods(counter_s=0.1, power_s=0.02, observed_s=1.0)
    m = Measurement(meters=meters, hz=20.0, experiment="demo")
    m.start(foreground_pid=os.getpid())
    time.sleep(0.3)
    (zone / "energy_uj").write_text("9000000\n")  # +8 J, host-wide
    time.sleep(0.3)
    report, trace = m.stop()
    meters.close()
    return report, trace


def test_a_run_shows_and_exports_its_gpu_settings_and_the_cpu_foreground_part(
    monkeypatch, tmp_path, owner, member, wl, as_member
):
    energy, trace = _engine_report(monkeypatch, tmp_path)
    exp = factories.experiment(owner, wl, status="running")
    now = timezone.now()
    result = RunResult(
        key=RunKey(0, 0, 0),
        status="succeeded",
        started_at=now - dt.timedelta(seconds=1),
        ended_at=now,
        duration_s=1.0,
        exit_code=0,
        log_path=str(tmp_path / "none.log"),
        hyperparameters={},
        metrics={},
        energy=energy,
        coverage=CoverageReport(100.0, 1.0, 1.0, 0.0, 1, "good"),
        trace=trace,
    )
    services.run_finish(experiment_id=exp.id, code=str(exp.code), result=result)
    run = Run.objects.get(experiment=exp)
    key = "NVIDIA Fake 100 · 700 W · app clocks 1980/2619 MHz"
    assert run.device_settings_key == key
    assert run.cpu_method == "rapl" and run.cpu_foreground_method == "estimate"
    assert run.cpu_foreground_j is not None and 0 < run.cpu_foreground_j <= 8.0

    page = as_member.get(reverse("run_detail", args=[exp.code, "1.1.1"])).content.decode()
    assert "GPU settings" in page and key in page
    assert "software power cap 100 %" in page and "counter every 100 ms" in page
    assert "Foreground part" in page and "the figure above is host-wide" in page
    assert "CPU foreground part (estimate)" in page  # its provenance row

    doc = as_member.get(reverse("experiment_export", args=[exp.code, "json"])).json()
    first = doc["runs"][0]
    assert first["device"]["settings_key"] == key
    assert first["device"]["gpus"][0]["power_limit_w"] == 700.0
    assert first["energy"]["cpu_foreground_method"] == "estimate"
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=member)}")
    results = api.get(f"/api/experiments/{exp.code}/results").json()
    assert results["runs"][0]["device"]["settings_key"] == key

    text = as_member.get(reverse("experiment_export", args=[exp.code, "csv"])).content.decode()
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["device_settings_key"] == key and float(row["gpu_power_limit_w"]) == 700.0
    assert row["cpu_foreground_method"] == "estimate" and row["device_changes"] == ""
