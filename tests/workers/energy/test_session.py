"""The measurement session through the GPU doubles (this host has no GPU).

Replay tests use the *recorded* RTX 3080 traces in shared/traces (a real run, not
this machine); synthetic tests use formulas whose integral is known exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import astuple
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from core.contract import EnergyReport
from core.trace import decode_trace, trace_meta
from workers.energy import session
from workers.energy.doubles import ReplayGpuMeter, SyntheticGpuMeter, constant_power, sine_power
from workers.energy.estimate import EstimateCpuMeter
from workers.energy.meters import CpuMeter, CpuReading, GpuMeter, GpuSample
from workers.energy.session import WINDOW_SHORT_FLAG, Measurement, MeterSet, open_meters

TRACES = Path(__file__).resolve().parents[3] / "data" / "traces" / "rtx3080"
MRT = TRACES / "MRT-OAST_default_035_parallel"


def _run(meters: MeterSet, seconds: float, hz: float = 20.0) -> tuple[EnergyReport, bytes]:
    m = Measurement(meters=meters, hz=hz)
    m.start(foreground_pid=os.getpid())
    time.sleep(seconds)
    report, trace = m.stop()
    meters.close()
    return report, trace


def _duration(report: EnergyReport) -> float:
    value = report.summaries["duration_s"]
    assert value is not None
    return value


def _meters(*gpus: GpuMeter) -> MeterSet:
    return MeterSet(list(gpus), EstimateCpuMeter(watts_per_core=10.0))


def test_synthetic_counter_gives_the_known_integral_with_method_counter() -> None:
    power, energy = sine_power(200.0, 80.0, period_s=0.7)
    gpu = SyntheticGpuMeter(power, energy, label="sine")
    report, trace = _run(_meters(gpu), 1.2)
    duration = _duration(report)
    assert report.gpu.method == "counter"
    # The counter is read within a millisecond of each timestamp: 1 % covers a loaded host.
    assert report.gpu.value == pytest.approx(energy(duration), rel=0.01)
    assert "synthetic" in report.gpu.device
    assert any("not measured" in f for f in report.gpu.flags)
    assert report.gpu.sampling_period_s == pytest.approx(0.05)


def test_without_a_counter_the_trapezoid_over_real_timestamps_is_used() -> None:
    power, energy = sine_power(150.0, 50.0, period_s=3.0)
    report, _ = _run(_meters(SyntheticGpuMeter(power, None, label="sine")), 1.0)
    assert report.gpu.method == "integrated"
    assert report.gpu.value == pytest.approx(energy(_duration(report)), rel=0.01)


def test_a_window_shorter_than_the_counter_update_period_is_flagged_and_integrated() -> None:
    gpu = constant_power(100.0, counter_period_s=5.0)
    report, _ = _run(_meters(gpu), 0.3)
    assert report.gpu.method == "integrated"
    assert any(WINDOW_SHORT_FLAG in f for f in report.gpu.flags)
    assert report.gpu.value == pytest.approx(100.0 * _duration(report), rel=0.01)


def test_the_replayed_rtx3080_trace_is_integrated_and_labelled_as_a_replay() -> None:
    # Recorded trace: a real RTX 3080 run (shared/traces), replayed 20x fast.
    gpu = ReplayGpuMeter(MRT, speed=20.0)
    report, trace = _run(_meters(gpu), 1.0)
    duration = _duration(report)
    power_at = cast(Callable[[float], float], gpu.power_at)  # the recording has no gaps
    # Reference: the recorded curve (linearly interpolated) integrated finely.
    steps = 4000
    dt = duration / steps
    ref = sum((power_at(i * dt) + power_at((i + 1) * dt)) * dt / 2 for i in range(steps))
    assert report.gpu.method == "integrated"
    assert report.gpu.value == pytest.approx(ref, rel=0.02)
    assert "replay of recorded RTX 3080 trace" in report.gpu.device
    assert "not this machine" in report.gpu.device
    recorded = [
        float(line.split(",")[1]) for line in (MRT / "gpu_power.csv").read_text().split()[1:]
    ]
    low, high = report.summaries["gpu_power_min_w"], report.summaries["gpu_power_max_w"]
    assert low is not None and high is not None
    assert min(recorded) <= low <= high <= max(recorded)
    assert report.summaries["gpu_temp_max_c"] is not None
    assert report.summaries["gpu_memory_max_mib"] is None  # not recorded: not invented
    assert trace_meta(trace)["gpus"][0]["device"] == gpu.device


def test_it_flags_a_gpu_that_starts_hot() -> None:
    report, _ = _run(_meters(constant_power(100.0, temp_c=84.0)), 0.2)
    assert any(f.startswith("started hot: GPU 0 at 84") for f in report.gpu.flags)


def test_several_gpus_are_summed_and_named_in_the_provenance() -> None:
    a = constant_power(100.0, index=0)
    b = SyntheticGpuMeter(lambda t: 50.0, None, index=1, label="constant 50 W, no counter")
    report, trace = _run(_meters(a, b), 0.5)
    duration = _duration(report)
    assert report.gpu.value == pytest.approx(150.0 * duration, rel=0.01)
    assert report.gpu.method == "integrated"  # one of them had no counter
    assert "GPU 0" in report.gpu.device and "GPU 1" in report.gpu.device
    assert any(f.startswith("GPU 0:") and "(counter)" in f for f in report.gpu.flags)
    assert any(f.startswith("GPU 1:") and "(integrated)" in f for f in report.gpu.flags)
    assert report.summaries["gpu_power_avg_w"] == pytest.approx(150.0)
    decoded = decode_trace(trace)
    assert set(decoded["gpu1_power_w"]) == {50.0}
    assert set(decoded["power_w"]) == {150.0}


@pytest.fixture
def other_group() -> Iterator[int]:
    """A real process in its own session: a stranger to the foreground group."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    yield proc.pid
    proc.kill()
    proc.wait()


def test_per_process_utilisation_splits_the_energy_above_idle_as_an_estimate(
    other_group: int,
) -> None:
    me = os.getpid()

    def proc_util(t: float) -> tuple[tuple[int, float], ...]:
        return ((me, 60.0), (other_group, 20.0))

    gpu = constant_power(200.0, proc_util=proc_util)
    meters = _meters(gpu)
    meters.idle_w[0] = 80.0
    report, _ = _run(meters, 0.6)
    assert report.gpu.value is not None
    share = report.gpu_foreground
    assert share.method == "estimate"
    # 75 % of the 120 W above idle, half of the 80 W idle (both active): 130 of 200 W.
    # (The counter is read a little after each tick's timestamp: 2 % covers a loaded host.)
    assert share.value == pytest.approx(report.gpu.value * 130 / 200, rel=0.02)


def test_no_split_is_reported_when_the_meter_gives_no_process_samples() -> None:
    meters = _meters(constant_power(200.0, proc_util=lambda t: ()))
    meters.idle_w[0] = 50.0
    report, _ = _run(meters, 0.3)
    assert report.gpu_foreground.value is None
    assert report.gpu_foreground.method == "unavailable"
    assert any("no per-process sample" in f for f in report.gpu_foreground.flags)


def test_without_an_idle_baseline_there_is_no_share(other_group: int) -> None:
    gpu = constant_power(200.0, proc_util=lambda t: ((os.getpid(), 50.0),))
    report, _ = _run(_meters(gpu), 0.3)
    assert report.gpu_foreground.value is None
    assert any("no idle baseline" in f for f in report.gpu_foreground.flags)


def test_a_counter_that_goes_backwards_falls_back_to_integration() -> None:
    """Item 5: a GPU reset or driver reload restarts NVML's counter."""

    def energy(t: float) -> float:
        return 100.0 * t - (1e6 if t > 0.25 else 0.0)

    gpu = SyntheticGpuMeter(lambda _t: 100.0, energy, label="counter reset")
    report, _ = _run(_meters(gpu), 0.5)
    assert report.gpu.method == "integrated"
    assert report.gpu.value == pytest.approx(100.0 * _duration(report), rel=0.01)
    assert any("went backwards" in f for f in report.gpu.flags)


def test_in_parallel_mode_the_gpu_figure_says_it_includes_the_background() -> None:
    """Item 8."""
    m = Measurement(meters=_meters(constant_power(100.0)), hz=20.0, shared_with_background=True)
    m.start(foreground_pid=os.getpid())
    report, _ = m.stop()
    assert any(f.startswith("whole GPU: includes the background") for f in report.gpu.flags)
    solo = Measurement(meters=_meters(constant_power(100.0)), hz=20.0)
    solo.start(foreground_pid=os.getpid())
    assert not any("background" in f for f in solo.stop()[0].gpu.flags)


def test_the_live_trace_grows_while_the_run_goes_on() -> None:
    meters = _meters(constant_power(120.0))
    m = Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=os.getpid())
    time.sleep(0.3)
    early = decode_trace(m.trace_bytes())
    time.sleep(0.3)
    report, trace = m.stop()
    final = decode_trace(trace)
    assert 2 <= len(early["t"]) < len(final["t"])
    assert final["t"][0] == 0.0
    assert final["t"][-1] == pytest.approx(_duration(report), abs=0.001)
    assert set(final["power_w"]) == {120.0}


def test_the_live_trace_sends_only_new_samples_and_the_final_trace_has_them_all() -> None:
    meters = _meters(constant_power(120.0))
    m = Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=os.getpid())
    sent: list[bytes] = []
    for _ in range(3):
        time.sleep(0.25)
        sent.append(m.trace_bytes())
    report, trace = m.stop()
    streams = [s[8 + int.from_bytes(s[4:8], "big") :] for s in sent]
    for earlier, later in zip(streams, streams[1:], strict=False):
        assert later.startswith(earlier)  # nothing already sent was encoded again
    live = decode_trace(sent[-1])
    final = decode_trace(trace)
    assert final["t"][: len(live["t"])] == live["t"]
    assert len(final["t"]) == report.summaries["samples"]
    assert m.trace_bytes() == trace  # after the stop: the final trace


def test_the_double_is_chosen_by_environment_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WATTLAB_METER_DOUBLE", "synthetic:90")
    meters = open_meters([0], powercap_root=tmp_path / "none", try_perf=False)
    report, _ = _run(meters, 0.3)
    assert report.gpu.value == pytest.approx(90.0 * _duration(report), rel=0.01)
    assert "synthetic" in report.gpu.device


def test_a_bad_double_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTLAB_METER_DOUBLE", "synthetic:lots")
    with pytest.raises(ValueError, match="WATTLAB_METER_DOUBLE"):
        open_meters([0])


def test_unreadable_cpu_meters_fall_back_to_a_labelled_estimate(tmp_path: Path) -> None:
    meters = open_meters([], powercap_root=tmp_path / "missing", double="synthetic:10")
    assert meters.cpu.method in ("estimate", "perf")
    if meters.cpu.method != "estimate":
        pytest.skip("this host's perf counts energy")
    report, _ = _run(meters, 0.2)
    assert report.cpu.method == "estimate"
    assert any("W per busy core" in f for f in report.cpu.flags)
    assert any("rapl not used" in f and "missing" in f for f in report.cpu.flags)
    assert report.dram.value is None and report.dram.method == "unavailable"


def test_start_and_stop_are_one_shot() -> None:
    m = Measurement(meters=_meters(constant_power(1.0)), hz=20.0)
    with pytest.raises(RuntimeError):
        m.stop()
    m.start(foreground_pid=os.getpid())
    m.stop()
    with pytest.raises(RuntimeError):
        m.stop()


class FlakyGpu:
    """A GPU double whose second read fails (a driver hiccup)."""

    index = 0
    device = "synthetic GPU 0: flaky (not a measurement)"
    uuid = None
    has_energy_counter = False
    flags: list[str] = []

    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> GpuSample:
        self.reads += 1
        if self.reads == 2:
            raise OSError("driver hiccup")
        return GpuSample(power_w=100.0, proc_util=())

    def close(self) -> None: ...


def test_a_failed_gpu_read_is_a_gap_in_the_trace_and_a_flag() -> None:
    report, trace = _run(_meters(FlakyGpu()), 0.4)
    assert report.gpu.value == pytest.approx(100.0 * _duration(report), rel=0.01)
    assert any("1 failed read(s)" in f and "driver hiccup" in f for f in report.gpu.flags)
    assert decode_trace(trace)["power_w"][1] is None


def test_rapl_through_a_measurement_reports_the_whole_machine(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    meters = open_meters([0], powercap_root=root, double="synthetic:50")
    m = Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=os.getpid())
    time.sleep(0.3)
    (zone / "energy_uj").write_text("8000000\n")  # +7 J
    time.sleep(0.3)
    report, trace = m.stop()
    meters.close()
    assert report.cpu.method == "rapl"
    assert report.cpu.value == pytest.approx(7.0)
    assert "whole machine: includes the background" in report.cpu.flags
    assert report.dram.method == "unavailable" and report.dram.value is None
    cpu_power = [p for p in decode_trace(trace)["cpu_power_w"] if p]
    assert len(cpu_power) == 1 and cpu_power[0] > 7.0  # 7 J within one tick of 50 ms


def test_the_energy_package_imports_nothing_from_django() -> None:
    code = (
        "import sys, workers.energy.session, core.trace\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'django')\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_estimate_plots_cpu_power_over_time_at_its_one_second_resolution() -> None:
    # A real child that keeps one core busy: the estimate is its CPU time x 10 W.
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        meters = MeterSet([], EstimateCpuMeter(watts_per_core=10.0))
        m = Measurement(meters=meters, hz=10.0)
        m.start(foreground_pid=spin.pid)
        time.sleep(3.5)
        report, trace = m.stop()
    finally:
        spin.kill()
        spin.wait()
    series = decode_trace(trace)
    assert trace_meta(trace)["cpu_method"] == "estimate"
    assert "power_w" not in series  # no GPU: the CPU is what the trace holds
    t, power = series["t"], series["cpu_power_w"]
    # Nothing before the estimate's second reading (a power needs two); from then on
    # every tick carries the latest one-second figure, never a 0 for "not read".
    first = next(i for i, p in enumerate(power) if p is not None)
    assert 0.8 <= t[first] <= 1.6
    assert all(p is not None for p in power[first:])
    held = power[first:]
    steps = 1 + sum(1 for a, b in zip(held, held[1:], strict=False) if a != b)
    assert 2 <= steps <= 4  # one value per second of the estimate, not one per tick
    # One busy core at 10 W per core: no step above that (a loaded host gives less).
    assert all(0.0 < p <= 10.5 for p in power[first:] if p is not None)
    assert report.cpu.method == "estimate" and report.cpu.value is not None
    assert report.cpu.value <= 10.5 * t[-1]


class ReadingOnlyCpu:
    """A CPU meter with total() but no running_j (one written before it existed):
    3 J of package and 1 J of DRAM more at every poll, a fresh reading each time."""

    method = "rapl"
    device = "test meter"
    whole_machine = True

    def __init__(self) -> None:
        self.updated_at: float | None = None
        self.polls = 0

    def start(self, foreground_pid: int | None) -> None:
        self.updated_at = time.monotonic()

    def poll(self) -> None:
        self.polls += 1
        self.updated_at = time.monotonic()

    def total(self) -> CpuReading:
        return CpuReading(3.0 * self.polls, 1.0 * self.polls)

    def stop(self) -> CpuReading:
        return self.total()


@pytest.mark.parametrize("running", [False, True])
def test_the_live_cpu_line_is_the_same_with_or_without_running_j(running: bool) -> None:
    cpu = ReadingOnlyCpu()
    if running:
        cpu.running_j = lambda: sum(x or 0.0 for x in astuple(cpu.total())[:2])  # type: ignore[attr-defined]
    m = Measurement(meters=MeterSet([], cast(CpuMeter, cpu)), hz=20.0)
    m.start()
    time.sleep(0.3)
    _report, trace = m.stop()
    power = decode_trace(trace)["cpu_power_w"]
    # 4 J per tick: a power from the second reading on (the first has none), from
    # total() where the meter has no running_j.
    assert power[0] is None
    assert len(power) > 3 and all(p is not None and p > 0.0 for p in power[1:])


class ScriptedGpu:
    """A GPU whose every read is fixed by its number: a counter that once goes
    backwards, a failing quantity every 4th read, per-process batches every 7th."""

    index = 0
    device = "scripted GPU 0 (not a measurement)"
    uuid = None
    has_energy_counter = True
    flags: list[str] = []

    def __init__(self, clock: SimpleNamespace, fg: int) -> None:
        self.clock, self.fg, self.reads = clock, fg, 0

    def read(self) -> GpuSample:
        k = self.reads = self.reads + 1
        energy = 1_000_000 + 13_000 * k - (500_000 if k > 40 else 0)
        batch: tuple[tuple[int, float, int], ...] = ()
        if k % 7 == 0:
            stamp = int(self.clock.wall * 1_000_000)
            batch = ((self.fg, 30.0 + k, stamp), (1, 20.0, stamp))
        errors = (("temperature", f"read {k}"),) if k % 4 == 0 else ()
        return GpuSample(
            power_w=100.0 + 10 * (k % 3), energy_mj=energy, proc_util=batch, errors=errors
        )

    def close(self) -> None: ...


@pytest.mark.parametrize("every", [3, 10, 1000])
def test_accounting_in_batches_gives_the_report_of_accounting_every_tick(
    monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    # Issue 8 (overhead): the split is filled every ACCOUNT_EVERY ticks, not every tick.
    # On a scripted GPU and clock the report must be the one of accounting every tick.
    def report_with(account_every: int) -> EnergyReport:
        clock = SimpleNamespace(mono=100.0, wall=1_000.0)
        clock.monotonic = lambda: clock.mono
        clock.time = lambda: clock.wall
        monkeypatch.setattr(session, "time", clock)
        monkeypatch.setattr(session, "ACCOUNT_EVERY", account_every)
        meters = MeterSet([ScriptedGpu(clock, os.getpid())], EstimateCpuMeter(10.0))
        meters.idle_w[0] = 40.0
        m = Measurement(meters=meters, hz=10.0)
        m._sampler.start = lambda start_monotonic=None: None  # type: ignore[method-assign]
        m.start(foreground_pid=os.getpid())
        for _ in range(55):
            clock.mono += 0.1
            clock.wall += 0.1
            m._tick(clock.mono)
        clock.mono += 0.05
        clock.wall += 0.05
        return m.stop()[0]

    every_tick, batched = report_with(1), report_with(every)
    assert batched.gpu == every_tick.gpu
    assert batched.gpu_foreground == every_tick.gpu_foreground
    assert every_tick.gpu_foreground.value is not None
    assert any("went backwards" in f for f in batched.gpu.flags)
    assert any("temperature unreadable in 14 read(s)" in f for f in batched.gpu.flags)
