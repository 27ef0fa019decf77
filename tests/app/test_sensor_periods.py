"""The sensor update periods a GPU worker observes at start (issue 19, 2.6): recorded on
the Host row, kept when another worker of the host registers, carried by the plan."""

from __future__ import annotations

from typing import Any

import pytest

from core.contract import SensorPeriods
from experiments import services
from experiments.engine_store import plan_for
from experiments.expfile import parse_experiment_text
from experiments.models import Host
from tests.workers.conftest import fake_nvml
from workers import tasks

pytestmark = pytest.mark.django_db

GPU = {"index": 0, "name": "NVIDIA Fake 100", "uuid": "GPU-fake-uuid-0", "energy_counter": True}


def test_a_gpu_worker_records_its_gpu_s_update_periods_when_it_starts(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.WATTLAB_HOSTNAME = "gpuhost"
    fake = fake_nvml(monkeypatch)
    fake.devices[0].energy_mj = None
    fake.devices[0].counter_period_s = 0.1
    monkeypatch.setenv(tasks.GPU_INDEX_ENV, "0")
    tasks.register_host()
    periods = Host.objects.get(hostname="gpuhost").gpus[0]["sensor_periods"]
    assert periods["counter_s"] == pytest.approx(0.1, abs=0.03)
    assert periods["observed_s"] == 1.0 and periods["reads"] > 100
    # The control worker registers the host too, and observes nothing: the periods stay.
    monkeypatch.setenv(tasks.GPU_INDEX_ENV, "")
    tasks.register_host()
    assert Host.objects.get(hostname="gpuhost").gpus[0]["sensor_periods"] == periods


def test_the_plan_carries_the_periods_of_its_gpu(digits_workload: Any) -> None:
    host = services.host_register(hostname="h1", gpus=[GPU])
    services.host_gpu_sensors(
        hostname="h1", index=0, periods=SensorPeriods(0.1, 0.025, 1.0, 400).to_dict()
    )
    spec = parse_experiment_text("name: s\nforeground: {workload: digits-mlp}\n")
    experiment = services.experiment_submit(owner=None, spec=spec)
    host.refresh_from_db()
    claimed = services.experiment_claim(experiment_id=experiment.id, host=host, gpu_index=0)
    assert claimed is not None
    plan = plan_for(claimed, gpu_index=0, python="python3")
    assert plan.sensor_periods == {0: SensorPeriods(0.1, 0.025, 1.0, 400)}
    assert plan_for(claimed, gpu_index=None, python="python3").sensor_periods == {}
