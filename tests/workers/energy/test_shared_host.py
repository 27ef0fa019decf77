"""Wrong numbers a real shared GPU host would give (issue 19, part 2), each through the
fake NVML library or a fake powercap tree, with real processes on the "GPU": the
foreground, the experiment's background and a stranger, told apart by the tokens in
their environment as the engine tells them apart."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.contract import ENV_GROUP, ENV_MARKER, EnergyReport, SensorPeriods
from tests.fakes.nvml import FakeDevice, FakeNvmlLibrary, process_sample
from workers.energy import nvml
from workers.energy.estimate import EstimateCpuMeter
from workers.energy.meters import CpuMeter
from workers.energy.rapl import RaplCpuMeter
from workers.energy.sensors import observe_update_periods
from workers.energy.session import Measurement, MeterSet, open_meters


@dataclass
class Tenants:
    code: str
    token: str
    fg: int
    bg: int
    stranger: int


def _sleeper(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, **env},
        start_new_session=True,
    )


@pytest.fixture
def tenants() -> Iterator[Tenants]:
    code, token = f"exp-{uuid.uuid4()}", f"fg-{uuid.uuid4().hex[:8]}"
    procs = [
        _sleeper({ENV_MARKER: code, ENV_GROUP: token}),
        _sleeper({ENV_MARKER: code, ENV_GROUP: "background-group"}),
        _sleeper({}),
    ]
    yield Tenants(code, token, *(p.pid for p in procs))
    for p in procs:
        p.kill()
        p.wait()


@contextmanager
def feeding(
    device: FakeDevice, utils: dict[int, float], hidden_s: dict[int, float] | None = None
) -> Iterator[None]:
    """NVML's per-process samples every 50 ms while the block runs: each pid at its
    utilisation, stamped now; a pid of ``hidden_s`` only returned that much later."""
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.05):
            now = time.time()
            for pid, util in utils.items():
                sample = process_sample(pid, int(now * 1_000_000), util)
                if hidden_s and pid in hidden_s:
                    device.hidden_until[(pid, int(sample.timeStamp))] = now + hidden_s[pid]
                device.proc_samples.append(sample)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _nvml_meters(fake: FakeNvmlLibrary, gpus: list[int] | None = None) -> MeterSet:
    for device in fake.devices:
        device.energy_mj = None  # the counter grows at 250.5 W
    meters = open_meters(gpus if gpus is not None else [0], double="", try_perf=False)
    for gpu in meters.gpus:
        meters.idle_w[gpu.index] = 0.0
    return meters


def _measure(
    meters: MeterSet, seconds: float, tenants: Tenants | None, **options: object
) -> EnergyReport:
    m = Measurement(meters=meters, hz=20.0, **options)  # type: ignore[arg-type]
    if tenants is None:
        m.start(foreground_pid=os.getpid())
    else:
        m.start(foreground_pid=tenants.fg, foreground_group=tenants.token)
    time.sleep(seconds)
    report, _trace = m.stop()
    meters.close()
    return report


# ---- 2.3 other tenants on the GPU ---------------------------------------------------


def test_a_stranger_on_the_gpu_of_a_solo_run_is_flagged_with_its_share(
    fake: FakeNvmlLibrary, tenants: Tenants
) -> None:
    meters = _nvml_meters(fake)
    with feeding(fake.devices[0], {tenants.fg: 40, tenants.stranger: 60}):
        report = _measure(meters, 0.8, tenants, experiment=tenants.code)
    flags = [f for f in report.gpu.flags if "not of this experiment" in f]
    assert len(flags) == 1, report.gpu.flags
    assert f"pid {tenants.stranger}: 60 %" in flags[0]
    assert "1 process(es)" in flags[0] and "its figure includes them" in flags[0]


def test_in_parallel_mode_the_background_is_no_stranger_but_a_stranger_is(
    fake: FakeNvmlLibrary, tenants: Tenants
) -> None:
    meters = _nvml_meters(fake)
    utils = {tenants.fg: 40, tenants.bg: 30, tenants.stranger: 30}
    with feeding(fake.devices[0], utils):
        report = _measure(
            meters, 0.8, tenants, experiment=tenants.code, shared_with_background=True
        )
    flags = [f for f in report.gpu.flags if "not of this experiment" in f]
    assert len(flags) == 1 and f"pid {tenants.stranger}: 30 %" in flags[0]
    assert f"pid {tenants.bg}" not in flags[0]
    # the background is the experiment's: no part of the foreground's share either
    assert report.gpu_foreground.value is not None and report.gpu.value is not None
    assert report.gpu_foreground.value == pytest.approx(0.4 * report.gpu.value, rel=0.1)


# ---- 2.4 per-process samples with their own stamps ----------------------------------


def test_a_foreground_sample_that_comes_after_another_process_s_newer_one_counts(
    fake: FakeNvmlLibrary, tenants: Tenants
) -> None:
    """The driver returns each process's newest sample, each at its own stamp: the
    foreground's arrive 0.2 s after the background's newer ones. Taking "newer than the
    newest stamp seen" as the filter lost every one of them, and the share with them."""
    meters = _nvml_meters(fake)
    utils = {tenants.fg: 50, tenants.bg: 50}
    with feeding(fake.devices[0], utils, hidden_s={tenants.fg: 0.2}):
        report = _measure(meters, 2.0, tenants, experiment=tenants.code)
    assert report.gpu.value is not None
    assert report.gpu_foreground.method == "estimate", report.gpu_foreground.flags
    share = (report.gpu_foreground.value or 0.0) / report.gpu.value
    # Half of it; a little less, as the last 0.2 s have only the background's samples.
    assert 0.35 <= share <= 0.55


# ---- 2.5 several GPUs ---------------------------------------------------------------


def test_a_gpu_without_process_samples_is_left_out_of_the_share_and_named(
    fake2: FakeNvmlLibrary, tenants: Tenants
) -> None:
    meters = _nvml_meters(fake2, gpus=[0, 1])
    with feeding(fake2.devices[0], {tenants.fg: 100}):
        report = _measure(meters, 0.8, tenants, experiment=tenants.code)
    fg = report.gpu_foreground
    assert fg.method == "estimate" and fg.value is not None and report.gpu.value is not None
    assert any(
        f.startswith("partial: the foreground share leaves out GPU 1 (no per-process sample")
        for f in fg.flags
    ), fg.flags
    # GPU 0's energy (about half the total) is the foreground's; GPU 1's is not split.
    assert fg.value == pytest.approx(report.gpu.value / 2, rel=0.1)


# ---- 2.6 part-time sensors ----------------------------------------------------------


def test_the_worker_observes_the_counter_s_update_period(fake: FakeNvmlLibrary) -> None:
    fake.devices[0].energy_mj = None
    fake.devices[0].counter_period_s = 0.1
    periods = observe_update_periods([0], seconds=0.8)
    assert periods[0].counter_s == pytest.approx(0.1, abs=0.03)
    assert periods[0].power_s is None  # a constant power never changed while watched
    assert periods[0].reads > 100


def test_a_window_of_a_few_counter_updates_is_flagged(fake: FakeNvmlLibrary) -> None:
    fake.devices[0].counter_period_s = 0.1
    meters = _nvml_meters(fake)
    meters.sensor_periods[0] = SensorPeriods(counter_s=0.1, power_s=0.05, observed_s=1.0)
    report = _measure(meters, 0.5, None)
    assert report.gpu.method == "counter"
    assert any(
        "is shorter than 10 updates of its energy counter (one every 100 ms" in f
        for f in report.gpu.flags
    ), report.gpu.flags
    long_enough = _nvml_meters(fake)
    long_enough.sensor_periods[0] = SensorPeriods(counter_s=0.1, power_s=0.05)
    report = _measure(long_enough, 1.2, None)
    assert not any("is shorter than" in f for f in report.gpu.flags)


# ---- 2.8 settings and clocks --------------------------------------------------------


def test_the_run_records_its_gpu_settings_and_a_key_to_group_by(
    fake: FakeNvmlLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nvml, "SLOW_PERIOD_S", 0.1)
    fake.devices[0].event_reasons = 0x4  # software power cap
    meters = _nvml_meters(fake)
    meters.sensor_periods[0] = SensorPeriods(counter_s=0.1, power_s=0.02)
    state = _measure(meters, 0.5, None).device_state
    assert state["settings_key"] == "NVIDIA Fake 100 · 700 W · app clocks 1980/2619 MHz"
    gpu = state["gpus"][0]
    assert gpu["uuid"] == "GPU-fake-uuid-0" and gpu["power_limit_w"] == 700.0
    assert gpu["sm_clock_mhz"] == {"min": 1980, "max": 1980, "mean": 1980}
    assert gpu["clock_event_reasons"] == {"software power cap": 1.0}
    assert gpu["sensor_periods"]["counter_s"] == 0.1
    assert state["changes"] == []


def test_a_power_limit_changed_during_the_window_is_flagged(
    fake: FakeNvmlLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nvml, "SLOW_PERIOD_S", 0.1)
    device = fake.devices[0]
    device.event_reasons = 0x40  # hardware thermal slowdown
    meters = _nvml_meters(fake)
    timer = threading.Timer(0.4, lambda: setattr(device, "power_limit_mw", 450_000))
    timer.start()
    report = _measure(meters, 0.9, None)
    timer.join()
    state = report.device_state
    assert state["changes"] == [
        "GPU 0: power limit changed during the run: 700 W → 450 W (read once a second)"
    ]
    assert state["settings_key"].endswith("· changed during the run")
    assert state["changes"][0] in report.gpu.flags
    assert any(
        f.startswith("GPU 0 slowed down: hardware thermal slowdown") for f in report.gpu.flags
    )


# ---- 2.1 a host-wide CPU figure -----------------------------------------------------


def _powercap(tmp_path: Path) -> Path:
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    return zone / "energy_uj"


def test_a_host_wide_cpu_figure_names_the_other_experiments_and_estimates_the_foreground(
    tmp_path: Path,
) -> None:
    """As root the CPU figure is RAPL: every package, idle power, and the experiments of
    the host's other GPU workers. It says so, and the foreground's part is beside it."""
    energy = _powercap(tmp_path)
    code, other = f"mine-{uuid.uuid4().hex[:8]}", f"othr{uuid.uuid4().hex[:8]}"
    neighbour = _sleeper({ENV_MARKER: other})
    spin = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.time() + 30\nwhile time.time() < end: pass",
        ],
        env={**os.environ, ENV_MARKER: code},
    )
    try:
        meters = MeterSet([], RaplCpuMeter(tmp_path / "powercap"))
        m = Measurement(meters=meters, hz=10.0, experiment=code)
        m.start(foreground_pid=spin.pid)
        time.sleep(1.2)
        energy.write_text("51000000\n")  # +50 J
        time.sleep(1.0)
        report, _trace = m.stop()
    finally:
        for proc in (spin, neighbour):
            proc.kill()
            proc.wait()
    cpu, fg = report.cpu, report.cpu_foreground
    assert cpu.method == "rapl" and cpu.value == pytest.approx(50.0)
    assert any(f.startswith("host-wide: every CPU package of this host") for f in cpu.flags)
    others = next(f for f in cpu.flags if "other Wattlab experiment(s) ran on this host" in f)
    assert other[:8] in others and code[:8] not in others
    assert fg.method == "estimate" and fg.value is not None
    assert 0.0 < fg.value <= cpu.value
    assert any("share of the host's busy CPU time" in f for f in fg.flags)


def test_where_the_cpu_figure_is_the_foreground_s_estimate_its_part_is_that_estimate() -> None:
    meters = MeterSet([], EstimateCpuMeter(watts_per_core=10.0))
    report = _measure(meters, 0.3, None, experiment="x")
    assert report.cpu.method == "estimate"
    assert not any(f.startswith("host-wide") for f in report.cpu.flags)
    assert report.cpu_foreground.method == "estimate"
    assert report.cpu_foreground.value == report.cpu.value


def test_the_cpu_meters_say_whether_they_are_host_wide(tmp_path: Path) -> None:
    _powercap(tmp_path)
    rapl: CpuMeter = RaplCpuMeter(tmp_path / "powercap")
    estimate: CpuMeter = EstimateCpuMeter(watts_per_core=1.0)
    assert rapl.whole_machine and not estimate.whole_machine


def test_without_a_foreground_a_host_wide_figure_has_no_foreground_part_not_0_j(
    tmp_path: Path,
) -> None:
    _powercap(tmp_path)
    meters = MeterSet([], RaplCpuMeter(tmp_path / "powercap"))
    m = Measurement(meters=meters, hz=20.0)
    m.start()
    time.sleep(0.2)
    report, _trace = m.stop()
    assert report.cpu.method == "rapl"
    assert report.cpu_foreground.value is None and report.cpu_foreground.method == "unavailable"
    assert report.cpu_foreground.flags == ["no foreground part: no foreground process to follow"]
