"""The real NVML meter.

On this machine the `pynvml` module is installed but there is no libnvidia-ml, so
the "no NVML library" behaviour is exercised for real. The per-sample logic of
:class:`NvmlGpuMeter` is exercised against a stand-in for the *third-party* pynvml
module (a fake library, not our code: ``tests/fakes/nvml.py``) with NVML's structures
and documented return codes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pynvml
import pytest

from core.contract import ENV_GROUP
from tests.fakes.nvml import FakeNvmlLibrary, process_sample
from workers.energy import nvml
from workers.energy.meters import MeterUnavailable
from workers.energy.session import Measurement, MeterSet, open_meters


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
    m.start(foreground_pid=os.getpid())
    report, _trace = m.stop()
    meters.close()
    assert report.gpu.value is None
    assert report.gpu.method == "unavailable"
    assert any("libnvidia-ml" in f for f in report.gpu.flags)
    assert report.gpu_foreground.value is None
    assert report.gpu_foreground.method == "unavailable"


def _nvml_meters(gpus: list[int] | None = None, **idle: float) -> MeterSet:
    meters = open_meters(gpus if gpus is not None else [0], double="", try_perf=False)
    meters.idle_w.update({int(k.removeprefix("gpu")): v for k, v in idle.items()})
    return meters


# ---- units, and what one read returns ---------------------------------------------


def test_it_converts_nvml_units_and_keeps_unsupported_readings_as_none(
    fake: FakeNvmlLibrary,
) -> None:
    meter = nvml.NvmlGpuMeter(0)
    sample = meter.read()
    assert meter.device == "GPU 0: NVIDIA Fake 100 (GPU-fake-uuid-0)"
    assert meter.uuid == "GPU-fake-uuid-0"
    assert meter.has_energy_counter
    assert sample.energy_mj == 5_000_000
    assert sample.util_pct == 87
    assert sample.temp_c is None
    assert sample.errors == ()  # NOT_SUPPORTED is not a failure


def test_energy_and_instant_power_come_from_one_field_values_call(fake: FakeNvmlLibrary) -> None:
    """Item 6: nvmlDeviceGetPowerUsage is a 1 s average on Ampere/Hopper; the
    NVML_FI_DEV_POWER_INSTANT field is not, and comes with the energy in one call."""
    meter = nvml.NvmlGpuMeter(0)
    before = dict(fake.calls)
    sample = meter.read()
    assert sample.power_w == pytest.approx(312.0)  # the instant field, not 250.5 W
    assert sample.energy_mj == 5_000_000
    assert fake.calls["nvmlDeviceGetFieldValues"] - before.get("nvmlDeviceGetFieldValues", 0) == 1
    assert fake.calls.get("nvmlDeviceGetPowerUsage", 0) == before.get("nvmlDeviceGetPowerUsage", 0)
    assert fake.calls.get("nvmlDeviceGetTotalEnergyConsumption", 0) == before.get(
        "nvmlDeviceGetTotalEnergyConsumption", 0
    )
    assert not any("one-second average" in f for f in meter.flags)


def test_without_the_instant_power_field_the_averaged_reading_is_used_and_flagged(
    fake: FakeNvmlLibrary,
) -> None:
    fake.devices[0].instant_supported = False
    meter = nvml.NvmlGpuMeter(0)
    sample = meter.read()
    assert sample.power_w == pytest.approx(250.5)
    assert sample.energy_mj == 5_000_000  # the energy field still answered
    assert any("one-second average" in f for f in meter.flags)


def test_a_driver_without_field_values_falls_back_to_the_single_calls(
    fake: FakeNvmlLibrary,
) -> None:
    fake.devices[0].fields = False
    meter = nvml.NvmlGpuMeter(0)
    sample = meter.read()
    assert meter.has_energy_counter
    assert sample.energy_mj == 5_000_000
    assert sample.power_w == pytest.approx(250.5)


def test_utilisation_memory_and_temperature_are_read_once_a_second(fake: FakeNvmlLibrary) -> None:
    fake.devices[0].temperature_error = None
    meter = nvml.NvmlGpuMeter(0)
    samples = [meter.read() for _ in range(10)]  # well within one second
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 1
    assert fake.calls["nvmlDeviceGetTemperature"] == 1
    # Held between reads, so the 10 Hz trace has no gaps.
    assert {s.util_pct for s in samples} == {87.0}
    assert {s.temp_c for s in samples} == {45.0}


def test_memory_is_read_with_nvml_memory_v2_which_leaves_out_reserved_memory(
    fake: FakeNvmlLibrary,
) -> None:
    assert nvml.NvmlGpuMeter(0).read().mem_mib == pytest.approx(3072)  # v1 would say 3584


# ---- one failing quantity costs that quantity, not the sample ----------------------


def test_a_failing_temperature_read_keeps_energy_and_power_and_is_reported(
    fake: FakeNvmlLibrary,
) -> None:
    """Item 12."""
    fake.devices[0].temperature_error = pynvml.NVML_ERROR_UNKNOWN
    fake.devices[0].energy_mj = None
    meters = _nvml_meters()
    m = Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=os.getpid())
    time.sleep(0.3)
    report, _ = m.stop()
    assert report.gpu.method == "counter" and report.gpu.value is not None
    assert any(
        f.startswith("GPU 0: temperature unreadable in") and "Unknown Error" in f
        for f in report.gpu.flags
    )


def test_a_non_nvml_exception_in_one_quantity_does_not_lose_the_sample(
    fake: FakeNvmlLibrary,
) -> None:
    # e.g. an old pynvml whose nvmlDeviceGetMemoryInfo takes no version argument
    meter = nvml.NvmlGpuMeter(0)
    fake.devices[0].memory_exception = TypeError("unexpected keyword argument 'version'")
    sample = meter.read()
    assert sample.energy_mj == 5_000_000 and sample.power_w == pytest.approx(312.0)
    assert sample.mem_mib is None
    assert [q for q, _ in sample.errors] == ["memory"]


# ---- listing, MIG, and which devices ------------------------------------------------


def test_list_gpus_reports_memory_counter_and_mig(fake: FakeNvmlLibrary) -> None:
    assert nvml.list_gpus() == [
        {
            "index": 0,
            "name": "NVIDIA Fake 100",
            "uuid": "GPU-fake-uuid-0",
            "memory_mib": 10240,
            "energy_counter": True,
            "mig": False,
        }
    ]


def test_the_host_record_names_the_driver_and_the_cpu_model(fake: FakeNvmlLibrary) -> None:
    from workers.energy.estimate import cpu_model
    from workers.energy.session import describe_meters

    meters = describe_meters()
    assert meters["gpu"]["driver"] == "570.00-fake"
    assert meters["cpu"]["model"] == cpu_model()


def test_without_nvml_no_driver_is_named() -> None:
    assert nvml.driver_version() == ""


def test_one_unreadable_gpu_does_not_hide_the_others(fake2: FakeNvmlLibrary) -> None:
    """Item 10."""
    fake2.devices[0].broken = pynvml.NVML_ERROR_NO_PERMISSION
    gpus = nvml.list_gpus()
    assert [g["index"] for g in gpus] == [0, 1]
    assert gpus[0] == {"index": 0, "error": "Insufficient Permissions"}
    assert gpus[1]["uuid"] == "GPU-fake-uuid-1"


def test_a_gpu_with_mig_enabled_is_refused_with_the_reason(fake: FakeNvmlLibrary) -> None:
    """Item 4: with MIG the counter is the whole board, other tenants included."""
    fake.devices[0].mig = True
    assert nvml.list_gpus()[0]["mig"] is True
    meters = _nvml_meters()
    assert meters.gpus == []
    assert "MIG enabled" in meters.gpu_unavailable[0]
    m = Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=os.getpid())
    report, _ = m.stop()
    assert report.gpu.value is None and report.gpu.method == "unavailable"
    assert any("MIG enabled" in f for f in report.gpu.flags)


def test_an_inherited_cuda_visible_devices_limits_the_metered_gpus(
    fake2: FakeNvmlLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 1: a Slurm/Kubernetes restriction is honoured, not overwritten."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-uuid-1")
    assert [g["index"] for g in nvml.list_gpus()] == [1]
    everything = _nvml_meters(gpus=[])
    assert [g.index for g in everything.gpus] == [1]
    assert any("CUDA_VISIBLE_DEVICES" in n for n in everything.gpu_notes)
    refused = _nvml_meters(gpus=[0])
    assert refused.gpus == [] and "CUDA_VISIBLE_DEVICES" in refused.gpu_unavailable[0]


def test_cuda_visible_devices_is_read_as_cuda_reads_it() -> None:
    devices = [(0, "GPU-aaaa-1"), (1, "GPU-bbbb-2"), (2, "GPU-cccc-3")]
    assert nvml.visible_filter(devices, {})[0] is None
    assert nvml.visible_filter(devices, {"CUDA_VISIBLE_DEVICES": ""})[0] == set()
    assert nvml.visible_filter(devices, {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"})[0] == {1}
    allowed, note = nvml.visible_filter(devices, {"CUDA_VISIBLE_DEVICES": "2,0"})
    assert allowed == {0, 2} and "PCI-bus order" in note
    # As in CUDA, the list ends at the first invalid entry.
    assert nvml.visible_filter(devices, {"CUDA_VISIBLE_DEVICES": "1,-1,0"})[0] == {1}
    assert nvml.visible_filter(devices, {"CUDA_VISIBLE_DEVICES": "GPU-,2"})[0] == set()


def test_the_training_is_pinned_to_the_metered_gpu_by_uuid(fake2: FakeNvmlLibrary) -> None:
    meters = _nvml_meters(gpus=[1])
    assert meters.cuda_env() == {
        "CUDA_VISIBLE_DEVICES": "GPU-fake-uuid-1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    m = Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=os.getpid())
    report, _ = m.stop()
    assert report.gpu_uuid == "GPU-fake-uuid-1"


# ---- NVML opened once, never shut down under a live call ---------------------------


def test_nvml_is_opened_once_per_process_not_on_every_heartbeat(fake: FakeNvmlLibrary) -> None:
    """Item 13."""
    for _ in range(3):
        assert nvml.gpu_utilisation() == {"0": 87.0}
    nvml.list_gpus()
    meters = _nvml_meters()
    meters.close()
    assert fake.calls["nvmlInit"] == 1
    assert fake.calls.get("nvmlShutdown", 0) == 0


def test_a_forked_child_opens_nvml_for_itself(fake: FakeNvmlLibrary) -> None:
    nvml.init()
    pid = os.fork()
    if pid == 0:  # the child: NVML must be opened again here, not inherited
        try:
            nvml.init()
            os._exit(0 if fake.calls["nvmlInit"] == 2 else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent released it before the fork and opens it again when needed.
    assert fake.calls["nvmlShutdown"] == 1
    nvml.init()
    assert fake.calls["nvmlInit"] == 2


def test_a_fork_while_a_meter_is_open_leaves_nvml_open(fake: FakeNvmlLibrary) -> None:
    meters = _nvml_meters()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert fake.calls.get("nvmlShutdown", 0) == 0  # the meter's handles stay valid
    assert meters.gpus[0].read().energy_mj == 5_000_000
    meters.close()


def test_a_hung_nvml_call_skips_the_closing_sample_and_withholds_the_figure(
    fake: FakeNvmlLibrary,
) -> None:
    """Item 11."""
    fake.devices[0].energy_mj = None
    meters = _nvml_meters(gpu0=10.0)
    m = Measurement(meters=meters, hz=20.0, join_timeout_s=0.3)
    m.start(foreground_pid=os.getpid())
    gate = threading.Event()
    fake.hang = gate
    try:
        assert fake.hung.wait(5)
        reads_before_stop = fake.calls["nvmlDeviceGetFieldValues"]
        report, _ = m.stop()
        # No closing sample: stop() did not call NVML while the sampler was stuck in it.
        assert fake.calls["nvmlDeviceGetFieldValues"] == reads_before_stop
        assert report.gpu.value is None and report.gpu.method == "unavailable"
        assert any("hung" in f and "withheld" in f for f in report.gpu.flags)
        assert report.gpu_foreground.value is None
        meters.close()
        assert nvml.shutdown() is False  # refused: a call is in flight
        assert not fake.shutdown_under_a_live_call
    finally:
        gate.set()
    deadline = time.monotonic() + 5
    while fake.in_call and time.monotonic() < deadline:
        time.sleep(0.01)
    assert nvml.shutdown() is True


# ---- per-process samples and the foreground share ----------------------------------


def test_process_samples_are_returned_once_each_by_pid_and_stamp(fake: FakeNvmlLibrary) -> None:
    meter = nvml.NvmlGpuMeter(0)
    start = meter._opened_us
    fake.proc_samples.append(process_sample(10, start - 5, 99))  # older than the meter: not ours
    assert meter.read().proc_util == ()  # NVML_ERROR_NOT_FOUND = no new sample
    fake.proc_samples.extend(
        [process_sample(10, start + 20, 60), process_sample(11, start + 10, 30)]
    )
    assert sorted(meter.read().proc_util or ()) == [(10, 60.0, start + 20), (11, 30.0, start + 10)]
    assert meter.read().proc_util == ()
    # NVML is asked for the last seconds, not "since the newest stamp of any process".
    assert fake.last_seen_args[-1] < start + 10


def test_a_late_sample_of_one_process_is_not_dropped_by_another_s_newer_one(
    fake: FakeNvmlLibrary,
) -> None:
    """Issue 19, 2.4: each process's sample carries its own stamp; a driver returns
    each process's newest, which may be older than another's that came first."""
    meter = nvml.NvmlGpuMeter(0)
    start = meter._opened_us
    fake.proc_samples.append(process_sample(10, start + 500_000, 50))
    assert meter.read().proc_util == ((10, 50.0, start + 500_000),)
    fake.proc_samples.append(process_sample(11, start + 400_000, 50))  # older, arrives later
    assert meter.read().proc_util == ((11, 50.0, start + 400_000),)


def test_unsupported_process_utilisation_is_none_and_flagged(fake: FakeNvmlLibrary) -> None:
    fake.devices[0].proc = False
    meter = nvml.NvmlGpuMeter(0)
    assert meter.read().proc_util is None
    assert any("per-process" in f for f in meter.flags)


def test_a_missing_gpu_index_is_unavailable_with_the_count(fake: FakeNvmlLibrary) -> None:
    with pytest.raises(MeterUnavailable, match="NVML sees 1 GPU"):
        nvml.NvmlGpuMeter(3)


@pytest.fixture
def escaped_child() -> Iterator[tuple[int, str]]:
    """A real process of the foreground's group that left its session (setsid): a
    different pgid, the same group token in its environment."""
    token = "fgtoken" + str(os.getpid())
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        env={**os.environ, ENV_GROUP: token},
        start_new_session=True,
    )
    yield proc.pid, token
    proc.kill()
    proc.wait()


def _share_run(
    fake: FakeNvmlLibrary, token: str | None, pids: list[tuple[int, int]], idle_w: float = 0.0
) -> tuple[float, float, list[str], str]:
    fake.devices[0].energy_mj = None
    meters = _nvml_meters(gpu0=idle_w)
    m = Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=None, foreground_group=token)
    time.sleep(0.2)
    stamp = int(time.time() * 1_000_000)
    fake.proc_samples.extend(process_sample(pid, stamp + i, sm) for i, (pid, sm) in enumerate(pids))
    time.sleep(0.4)
    report, _ = m.stop()
    meters.close()
    assert report.gpu.value is not None
    share = report.gpu_foreground
    return (
        share.value if share.value is not None else -1.0,
        report.gpu.value,
        share.flags,
        share.method,
    )


def test_a_foreground_that_called_setsid_is_found_by_its_group_token(
    fake: FakeNvmlLibrary, escaped_child: tuple[int, str]
) -> None:
    """Item 2: by the token in /proc/<pid>/environ, not by pgid."""
    pid, token = escaped_child
    fg, total, flags, method = _share_run(fake, token, [(pid, 30), (1, 10)])
    assert method == "estimate"
    # All ticks before the samples' stamp are covered by them; the rest keep the share.
    assert fg == pytest.approx(0.75 * total, rel=1e-6)
    assert any("WATTLAB_GROUP" in f for f in flags)


def test_no_attributable_pid_makes_the_share_unavailable_never_zero(
    fake: FakeNvmlLibrary, escaped_child: tuple[int, str]
) -> None:
    """Item 2: pids from another pid namespace match nothing of ours."""
    pid, _token = escaped_child
    fg, _total, flags, method = _share_run(fake, "another-group", [(pid, 30), (999_999_999, 10)])
    assert fg == -1.0 and method == "unavailable"
    assert any("pid: host" in f and "unreadable" in f for f in flags)


def test_the_share_splits_only_the_energy_above_the_idle_baseline(
    fake: FakeNvmlLibrary, escaped_child: tuple[int, str]
) -> None:
    """Item 3: 312 W instant, 112 W idle: the foreground (75 % of SM time, others
    active too) gets 75 % of 200 W plus half of the 112 W idle, not 75 % of 312 W."""
    pid, token = escaped_child
    fake.devices[0].counter = False  # integrate the instant power: exactly 312 W
    fg, total, flags, method = _share_run(fake, token, [(pid, 30), (1, 10)], idle_w=112.0)
    assert method == "estimate"
    assert fg == pytest.approx(total * (0.75 * 200 + 0.5 * 112) / 312, rel=1e-6)
    assert any(f.startswith("idle rule:") for f in flags)
    assert any("estimate, not a measurement" in f for f in flags)


def test_a_measurement_through_nvml_uses_the_counter(fake: FakeNvmlLibrary) -> None:
    fake.devices[0].energy_mj = None
    meters = _nvml_meters()
    assert [g.device for g in meters.gpus] == ["GPU 0: NVIDIA Fake 100 (GPU-fake-uuid-0)"]
    m = Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=os.getpid())
    time.sleep(0.5)
    report, _ = m.stop()
    meters.close()
    duration = report.summaries["duration_s"]
    assert duration is not None and report.gpu.value is not None
    assert report.gpu.method == "counter"
    assert report.gpu.value == pytest.approx(250.5 * duration, rel=0.02)
    assert report.summaries["gpu_temp_max_c"] is None  # NOT_SUPPORTED stays unknown
    assert report.summaries["gpu_memory_max_mib"] == pytest.approx(3072)


def test_the_idle_probe_takes_the_median_power_of_an_idle_gpu(fake: FakeNvmlLibrary) -> None:
    meters = _nvml_meters()
    fake.devices[0].power_instant_mw = 61_000
    fake_util = fake.nvmlDeviceGetUtilizationRates
    fake.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=0, memory=0)  # type: ignore[method-assign]
    meters.probe_idle(0.3, hz=20.0)
    assert meters.idle_w[0] == pytest.approx(61.0)
    assert "61.0 W" in meters.idle_note[0]
    fake.nvmlDeviceGetUtilizationRates = fake_util  # type: ignore[method-assign]
    busy = _nvml_meters()
    busy.probe_idle(0.2, hz=20.0)
    assert 0 not in busy.idle_w and "busy during the idle probe" in busy.idle_note[0]


@needs_no_nvml
def test_gpu_utilisation_is_empty_without_nvml() -> None:
    assert nvml.gpu_utilisation() == {}


def test_gpu_utilisation_is_keyed_by_index_for_the_heartbeat(fake: FakeNvmlLibrary) -> None:
    assert nvml.gpu_utilisation() == {"0": 87.0}
