"""The real NVML meter.

On this machine the `pynvml` module is installed but there is no libnvidia-ml, so
the "no NVML library" behaviour is exercised for real. The per-sample logic of
:class:`NvmlGpuMeter` is exercised against a stand-in for the *third-party* pynvml
module (a fake library, not our code) with NVML's documented return codes.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pynvml
import pytest

from workers.energy import nvml
from workers.energy.meters import MeterUnavailable
from workers.energy.session import Measurement, open_meters


def _nvml_works() -> bool:
    try:
        nvml.init()
    except MeterUnavailable:
        return False
    nvml.shutdown()
    return True


needs_no_nvml = pytest.mark.skipif(_nvml_works(), reason="this host has a working NVML")


@needs_no_nvml
def test_init_without_the_nvml_library_says_why() -> None:
    with pytest.raises(MeterUnavailable, match="libnvidia-ml"):
        nvml.init()


@needs_no_nvml
def test_list_gpus_is_empty_without_nvml() -> None:
    assert nvml.list_gpus() == []


@needs_no_nvml
def test_a_run_without_nvml_reports_the_gpu_as_unavailable_not_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WATTLAB_METER_DOUBLE", raising=False)
    meters = open_meters([0])
    assert meters.gpus == []
    m = Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=os.getpid(), foreground_pgid=os.getpgid(0))
    report, _trace = m.stop()
    meters.close()
    assert report.gpu.value is None
    assert report.gpu.method == "unavailable"
    assert any("libnvidia-ml" in f for f in report.gpu.flags)
    assert report.gpu_foreground_j is None


class FakeNvmlLibrary:
    """Stands in for the pynvml module: NVML's calls, units and error codes."""

    NVMLError = pynvml.NVMLError
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NOT_FOUND = pynvml.NVML_ERROR_NOT_FOUND
    NVML_ERROR_LIBRARY_NOT_FOUND = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(self, counter: bool = True, proc: bool = True) -> None:
        self.counter = counter
        self.proc = proc
        self.energy_mj: int | None = 5_000_000  # None: grows at 250.5 W from now on
        self._born = time.monotonic()
        self.proc_samples: list[SimpleNamespace] = []
        self.last_seen_args: list[int] = []

    def _err(self, code: int) -> pynvml.NVMLError:
        return pynvml.NVMLError(code)

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"handle{index}"

    def nvmlDeviceGetName(self, h: str) -> bytes:
        return b"NVIDIA Fake 100"  # old pynvml releases return bytes

    def nvmlDeviceGetUUID(self, h: str) -> str:
        return "GPU-fake-uuid"

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:
        if not self.counter:
            raise self._err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if self.energy_mj is None:
            return 5_000_000 + int((time.monotonic() - self._born) * 250_500)
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        return 250_500  # milliwatts

    def nvmlDeviceGetUtilizationRates(self, h: str) -> SimpleNamespace:
        return SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetMemoryInfo(self, h: str) -> SimpleNamespace:
        return SimpleNamespace(total=10 * 1024**3, used=3 * 1024**3, free=7 * 1024**3)

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        raise self._err(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetProcessUtilization(self, h: str, last_seen: int) -> list[SimpleNamespace]:
        self.last_seen_args.append(last_seen)
        if not self.proc:
            raise self._err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        newer = [s for s in self.proc_samples if s.timeStamp > last_seen]
        if not newer:
            raise self._err(pynvml.NVML_ERROR_NOT_FOUND)
        return newer


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvmlLibrary:
    lib = FakeNvmlLibrary()
    monkeypatch.setattr(nvml, "_pynvml", lib)
    monkeypatch.setattr(nvml, "PROC_UTIL_PERIOD_S", 0.0)
    return lib


def _sample(pid: int, stamp: int, sm: int) -> SimpleNamespace:
    return SimpleNamespace(pid=pid, timeStamp=stamp, smUtil=sm, memUtil=0, encUtil=0, decUtil=0)


def test_it_converts_nvml_units_and_keeps_unsupported_readings_as_none(
    fake: FakeNvmlLibrary,
) -> None:
    meter = nvml.NvmlGpuMeter(0)
    sample = meter.read()
    assert meter.device == "GPU 0: NVIDIA Fake 100 (GPU-fake-uuid)"
    assert meter.has_energy_counter
    assert sample.energy_mj == 5_000_000
    assert sample.power_w == pytest.approx(250.5)
    assert sample.mem_mib == pytest.approx(3072)
    assert sample.util_pct == 87
    assert sample.temp_c is None


def test_a_gpu_without_the_energy_counter_is_marked_for_integration(fake: FakeNvmlLibrary) -> None:
    fake.counter = False
    meter = nvml.NvmlGpuMeter(0)
    assert not meter.has_energy_counter
    assert meter.read().energy_mj is None


def test_process_samples_are_returned_once_using_last_seen_timestamp(fake: FakeNvmlLibrary) -> None:
    meter = nvml.NvmlGpuMeter(0)
    start = fake_start = meter._last_seen_us
    fake.proc_samples = [_sample(10, start - 5, 99)]  # older than the meter: not ours
    assert meter.read().proc_util == ()  # NVML_ERROR_NOT_FOUND = no new sample
    fake.proc_samples += [_sample(10, start + 20, 60), _sample(11, start + 10, 30)]
    assert sorted(meter.read().proc_util or ()) == [(10, 60.0), (11, 30.0)]
    assert meter.read().proc_util == ()
    assert fake.last_seen_args[-1] == fake_start + 20


def test_unsupported_process_utilisation_is_none_and_flagged(fake: FakeNvmlLibrary) -> None:
    fake.proc = False
    meter = nvml.NvmlGpuMeter(0)
    assert meter.read().proc_util is None
    assert any("per-process" in f for f in meter.flags)


def test_a_missing_gpu_index_is_unavailable_with_the_count(fake: FakeNvmlLibrary) -> None:
    with pytest.raises(MeterUnavailable, match="NVML sees 1 GPU"):
        nvml.NvmlGpuMeter(3)


def test_list_gpus_reports_memory_and_counter_support(fake: FakeNvmlLibrary) -> None:
    assert nvml.list_gpus() == [
        {
            "index": 0,
            "name": "NVIDIA Fake 100",
            "uuid": "GPU-fake-uuid",
            "memory_mib": 10240,
            "energy_counter": True,
        }
    ]


def test_a_measurement_through_nvml_uses_the_counter_and_splits_by_process(
    fake: FakeNvmlLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATTLAB_METER_DOUBLE", raising=False)
    fake.energy_mj = None
    meters = open_meters([0], double="", try_perf=False)
    assert [g.device for g in meters.gpus] == ["GPU 0: NVIDIA Fake 100 (GPU-fake-uuid)"]
    m = Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=os.getpid(), foreground_pgid=os.getpgid(0))
    stamp = int(time.time() * 1_000_000) + 1
    # pid 1 (init) is in no group of ours: the "background" share.
    fake.proc_samples = [_sample(os.getpid(), stamp, 30), _sample(1, stamp + 1, 10)]
    time.sleep(0.5)
    report, _ = m.stop()
    meters.close()
    duration = report.summaries["duration_s"]
    assert duration is not None and report.gpu.value is not None
    assert report.gpu.method == "counter"
    assert report.gpu.value == pytest.approx(250.5 * duration, rel=0.02)
    assert report.gpu_foreground_j == pytest.approx(0.75 * report.gpu.value, rel=1e-6)
    assert report.summaries["gpu_temp_max_c"] is None  # NOT_SUPPORTED stays unknown
    assert report.summaries["gpu_memory_max_mib"] == pytest.approx(3072)


@needs_no_nvml
def test_gpu_utilisation_is_empty_without_nvml() -> None:
    assert nvml.gpu_utilisation() == {}


def test_gpu_utilisation_is_keyed_by_index_for_the_heartbeat(fake: FakeNvmlLibrary) -> None:
    assert nvml.gpu_utilisation() == {"0": 87.0}
