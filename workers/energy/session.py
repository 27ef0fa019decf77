"""Measure one run: open the meters, sample them on one thread, report energy.

    meters = open_meters([0])
    meters.probe_idle(2.0)               # the GPUs' idle power, before anything starts
    m = Measurement(meters=meters, hz=10.0, experiment=code)
    m.start(foreground_pid=pid, foreground_group=token)
    ...                                  # m.trace_bytes() for the live chart
    report, trace = m.stop()
    meters.close()

Choice of meter (the report says which, and why the better ones were not used):
GPU: NVML when ``pynvml`` loads and finds the device (only those an inherited
``CUDA_VISIBLE_DEVICES`` allows), else "unavailable"; the env variable
``WATTLAB_METER_DOUBLE`` (a recorded-trace directory or ``synthetic:WATTS``) selects a
labelled double instead. CPU: the registry's CPU meters in order
(``core.contract.METHODS``: RAPL, else ``perf stat``, else an estimate).

What each figure includes on a shared host is in ``docs/benchmarks/energy.md``; the
foreground's split of the GPU is :mod:`workers.energy.share`, the host-wide CPU
figure's context :mod:`workers.energy.host`, the GPUs' settings
:mod:`workers.energy.device_state`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.contract import (
    CPU_METHODS,
    ENV_GROUP,
    ENV_MARKER,
    METHOD_INFO,
    EnergyMethod,
    EnergyReport,
    Figure,
    SensorPeriods,
)
from core.trace import LiveTrace, encode_trace, gpu_key
from workers.energy import nvml
from workers.energy.device_state import CHANGED, gpu_record, settings_key
from workers.energy.doubles import DOUBLE_ENV, from_spec
from workers.energy.estimate import POLL_PERIOD_S, EstimateCpuMeter, cpu_model
from workers.energy.host import HOST_SCAN_S, HostReport, HostWatch
from workers.energy.integrate import summary, trapezoid_j
from workers.energy.meters import (
    CpuMeter,
    CpuReading,
    GpuMeter,
    GpuSample,
    GpuState,
    MeterUnavailable,
)
from workers.energy.rapl import DEFAULT_POWERCAP_ROOT
from workers.energy.sampler import Sampler
from workers.energy.sensors import FEW_PERIODS
from workers.energy.share import IDLE_RULE, SHARE_POLICY, GpuShare, Owner, ShareResult
from workers.procgroup import read_environ

#: A run that starts with the GPU at or above this temperature is flagged: a hot GPU
#: draws more (leakage) and may throttle sooner, so its figures are not comparable
#: with a cold start.
HOT_START_C = 70.0
WINDOW_SHORT_FLAG = "window shorter than the counter update period"
#: How long a stop waits for the sampler thread; past it a meter call is hung.
SAMPLER_JOIN_S = 5.0
#: The GPU samples go into the foreground split in batches of this many ticks (and at
#: once when one brings per-process samples, whose pids are looked up while they
#: live): the same arithmetic in the same order, one call per batch instead of one
#: per tick. Only the report reads the split.
ACCOUNT_EVERY = 10
#: Above this utilisation during the idle probe, the GPU was not idle.
IDLE_BUSY_PCT = 5.0
#: Re-exported: the foreground split's policy lives in workers.energy.share.
__all__ = ["IDLE_RULE", "SHARE_POLICY", "Measurement", "MeterSet", "describe_meters", "open_meters"]


@dataclass
class MeterSet:
    """The meters of this host for one run. NVML stays open for the process."""

    gpus: list[GpuMeter]
    cpu: CpuMeter
    #: GPU index (or -1 for "all") -> why it cannot be measured.
    gpu_unavailable: dict[int, str] = field(default_factory=dict)
    #: Why better CPU meters were not used, e.g. {"rapl": "...", "perf": "..."}.
    cpu_fallback_reasons: dict[str, str] = field(default_factory=dict)
    #: GPU index -> idle power (W), the baseline of the foreground share.
    idle_w: dict[int, float] = field(default_factory=dict)
    #: GPU index -> how the baseline was obtained, or why there is none.
    idle_note: dict[int, str] = field(default_factory=dict)
    #: Caveats on which GPUs were chosen (an inherited CUDA_VISIBLE_DEVICES).
    gpu_notes: list[str] = field(default_factory=list)
    #: GPU index -> UUID of every GPU asked for that NVML lists, metered or refused
    #: (MIG): the training is pinned to its GPUs whether or not they can be metered.
    pins: dict[int, str] = field(default_factory=dict)
    #: The GPUs are doubles (``WATTLAB_METER_DOUBLE``): nothing real to pin to.
    double: bool = False
    #: GPU index -> its sensors' update periods, observed by the worker at start.
    sensor_periods: dict[int, SensorPeriods] = field(default_factory=dict)

    def close(self) -> None:
        for gpu in self.gpus:
            gpu.close()

    @property
    def uuids(self) -> list[str]:
        return [g.uuid for g in self.gpus if g.uuid]

    def cuda_env(self) -> dict[str, str]:
        """What pins a training to its GPUs (by UUID, metered or not); {} for doubles."""
        if self.pins:
            return nvml.cuda_pin([self.pins[i] for i in sorted(self.pins)])
        return nvml.cuda_pin(self.uuids)

    def unpinned(self, indices: list[int]) -> list[int]:
        """The GPUs of ``indices`` a training could not be pinned to (NVML does not
        list them): it would run wherever CUDA puts it, another worker's GPU perhaps."""
        if self.double:
            return []
        return [i for i in indices if i not in self.pins]

    def probe_idle(self, seconds: float, hz: float = 10.0) -> None:
        """Measure each GPU's idle power now (before anything of the experiment runs):
        the median power over ``seconds``. A GPU busy meanwhile gets no baseline."""
        if seconds <= 0 or not self.gpus:
            return
        power: dict[int, list[float]] = {g.index: [] for g in self.gpus}
        busy: dict[int, float] = {g.index: 0.0 for g in self.gpus}
        deadline = time.monotonic() + seconds
        while True:
            for gpu in self.gpus:
                try:
                    sample = gpu.read()
                except Exception:  # noqa: BLE001 - a failed read is one reading fewer
                    continue
                if sample.power_w is not None:
                    power[gpu.index].append(sample.power_w)
                busy[gpu.index] = max(busy[gpu.index], sample.util_pct or 0.0)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(1.0 / hz, left))
        for index, readings in power.items():
            if busy[index] > IDLE_BUSY_PCT:
                self.idle_note[index] = (
                    f"GPU {index} was {busy[index]:g} % busy during the idle probe "
                    "(another tenant?): no idle baseline"
                )
            elif len(readings) < 3:
                self.idle_note[index] = f"GPU {index}: too few power readings for an idle baseline"
            else:
                self.idle_w[index] = statistics.median(readings)
                self.idle_note[index] = (
                    f"idle baseline GPU {index}: {self.idle_w[index]:.1f} W (median of "
                    f"{len(readings)} readings over {seconds:g} s before the experiment started)"
                )


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _open_cpu(powercap_root: Path, try_perf: bool) -> tuple[CpuMeter, dict[str, str]]:
    """The first CPU meter of the registry that works on this host."""
    reasons: dict[str, str] = {}
    options: dict[str, Any] = {"root": powercap_root, "powercap_root": powercap_root}
    for info in CPU_METHODS:
        if info.name == "perf" and not try_perf:
            reasons["perf"] = "not tried"
            continue
        cls = _load(info.cpu_meter)
        wanted = inspect.signature(cls).parameters
        try:
            meter: CpuMeter = cls(**{k: v for k, v in options.items() if k in wanted})
        except MeterUnavailable as exc:
            reasons[info.name] = str(exc)
            continue
        return meter, reasons
    raise MeterUnavailable("no CPU meter works on this host: " + "; ".join(reasons.values()))


def open_meters(
    gpu_indices: list[int],
    *,
    powercap_root: Path | str = DEFAULT_POWERCAP_ROOT,
    double: str | None = None,
    try_perf: bool = True,
) -> MeterSet:
    """Meters for the GPUs ``gpu_indices`` (empty: every GPU this process may use) and
    the CPU. ``double`` (default: ``$WATTLAB_METER_DOUBLE``) replaces NVML by a double.
    """
    cpu, cpu_reasons = _open_cpu(Path(powercap_root), try_perf)
    spec = double if double is not None else os.environ.get(DOUBLE_ENV, "")
    if spec:
        indices = gpu_indices or [0]
        return MeterSet([from_spec(spec, i) for i in indices], cpu, {}, cpu_reasons, double=True)
    try:
        nvml.init()
    except MeterUnavailable as exc:
        return MeterSet([], cpu, {-1: str(exc)}, cpu_reasons)
    gpus: list[GpuMeter] = []
    unavailable: dict[int, str] = {}
    listed = nvml.list_gpus()  # only the GPUs an inherited CUDA_VISIBLE_DEVICES allows
    allowed = {g["index"] for g in listed}
    pins = {g["index"]: g["uuid"] for g in listed if g.get("uuid")}
    _all, note = nvml.visible_filter([(g["index"], g.get("uuid", "")) for g in listed])
    indices = gpu_indices or sorted(allowed)
    if not indices:
        unavailable[-1] = note or "NVML found no GPU on this host"
    for index in indices:
        if index not in allowed:
            unavailable[index] = note or f"NVML does not list GPU {index}"
            continue
        try:
            gpus.append(nvml.NvmlGpuMeter(index))
        except MeterUnavailable as exc:
            unavailable[index] = str(exc)
    return MeterSet(
        gpus,
        cpu,
        unavailable,
        cpu_reasons,
        gpu_notes=[note] if note else [],
        pins={i: pins[i] for i in indices if i in pins},
    )


def describe_meters(powercap_root: Path | str = DEFAULT_POWERCAP_ROOT) -> dict[str, Any]:
    """Which meters this host offers and why the others are not available."""
    gpus = nvml.list_gpus()
    gpu_reason = ""
    if not gpus:
        try:
            nvml.init()
            gpu_reason = "NVML found no GPU on this host"
        except MeterUnavailable as exc:
            gpu_reason = str(exc)
    cpu, reasons = _open_cpu(Path(powercap_root), try_perf=True)
    double = os.environ.get(DOUBLE_ENV, "")
    return {
        "gpu": {
            "method": "nvml" if gpus else "unavailable",
            "energy": "counter"
            if gpus and all(g.get("energy_counter") for g in gpus)
            else ("integrated" if gpus else "unavailable"),
            "gpus": gpus,
            "reason": gpu_reason,
            "double": double or None,
            "driver": nvml.driver_version() if gpus else "",
        },
        "cpu": {
            "method": cpu.method,
            "device": cpu.device,
            "not_used": reasons,
            # The model as the kernel names it ("" on a CPU that does not, e.g. ARM).
            "model": cpu_model(),
        },
    }


@dataclass
class _GpuSeries:
    meter: GpuMeter
    samples: list[GpuSample] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    read_errors: int = 0
    last_error: str = ""
    #: quantity -> (failed reads, last error), from GpuSample.errors.
    quantity_errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    counter_backwards: bool = False
    #: The foreground's split of this GPU (made at start(), with the idle baseline).
    share: GpuShare | None = None
    #: NVML reports per-process utilisation on this GPU.
    proc_supported: bool = True
    #: The meter set's idle baseline for this GPU (0 W: none), taken at start().
    idle_w: float = 0.0
    #: Settings and clocks read during the window (about once a second).
    states: list[GpuState] = field(default_factory=list)
    #: Samples already in the split and error counts (see ACCOUNT_EVERY).
    accounted: int = 0
    #: The GPU figure's value and method, once the report has it.
    value: float | None = None


class Measurement:
    """Samples the meters on one thread from :meth:`start` to :meth:`stop`.

    ``shared_with_background``: a background training shares the GPU (parallel mode),
    so the GPU figure is the whole device's and says so. ``experiment``: the code the
    engine puts in every process of the experiment (``WATTLAB_EXPERIMENT``): a process
    on the GPU without it is another tenant's, and is flagged.
    """

    def __init__(
        self,
        meters: MeterSet,
        hz: float = 10.0,
        *,
        hot_start_c: float = HOT_START_C,
        shared_with_background: bool = False,
        join_timeout_s: float = SAMPLER_JOIN_S,
        experiment: str | None = None,
    ):
        self.meters = meters
        self.hz = hz
        self.hot_start_c = hot_start_c
        self.shared_with_background = shared_with_background
        self.join_timeout_s = join_timeout_s
        self.experiment = experiment
        self._lock = threading.Lock()
        self._series = [_GpuSeries(g) for g in meters.gpus]
        self._t: list[float] = []
        self._cpu_power: list[float | None] = []
        #: (monotonic time, joules) of the CPU meter's latest reading, and the power
        #: between it and the one before.
        self._cpu_last: tuple[float, float] | None = None
        self._cpu_held: float | None = None
        self._sampler = Sampler(self._tick, hz)
        self._cpu = meters.cpu
        # A meter that reads only every so often (the estimate: once a second) is not
        # called on the ticks in between: each call is CPU time the tick spends.
        self._cpu_poll_period: float | None = getattr(meters.cpu, "poll_period_s", None)
        self._cpu_joules = getattr(meters.cpu, "running_j", None) or self._cpu_joules_from_total
        # A host-wide CPU figure (RAPL, perf) gets its context: the other experiments
        # on the host, and the foreground's CPU time for its estimated part.
        self._host: HostWatch | None = None
        self._fg_time: EstimateCpuMeter | None = None
        if getattr(meters.cpu, "whole_machine", False):
            self._host = HostWatch(experiment)
            self._fg_time = EstimateCpuMeter(watts_per_core=1.0)
        self._t0 = 0.0
        self._wall0 = 0.0
        self._started_at: dt.datetime | None = None
        self._fg_token: bytes | None = None
        self._marker = f"{ENV_MARKER}={experiment}".encode() if experiment else None
        self._fg_pids: dict[int, Owner] = {}
        self._fg_seen: set[int] = set()
        self._unreadable: set[int] = set()
        self._stopped = False
        self._closed = False  # no tick is recorded after this (a hung one returning late)
        self._hung = False
        self._cpu_poll_error = ""
        self._live: LiveTrace | None = None
        self._final_trace = b""

    # -- sampling (sampler thread, and once in start/stop) --------------------------

    def start(self, foreground_pid: int | None = None, foreground_group: str | None = None) -> None:
        """``foreground_group``: the token the engine puts in every process of the
        foreground's group (``WATTLAB_GROUP``); how its GPU processes are recognised."""
        if self._started_at is not None:
            raise RuntimeError("a Measurement is started once")
        if foreground_group:
            self._fg_token = f"{ENV_GROUP}={foreground_group}".encode()
        if foreground_pid is not None:
            self._fg_pids[foreground_pid] = "foreground"
        # The CPU meter's setup (a process-tree scan) comes before t0, so that the
        # first GPU reading is taken at t = 0 and not some milliseconds later.
        for series in self._series:
            series.idle_w = self.meters.idle_w.get(series.meter.index, 0.0)
            series.share = GpuShare(series.idle_w, self._owner)
        self.meters.cpu.start(foreground_pid)
        if self._host is not None and self._fg_time is not None:
            self._host.start()
            self._fg_time.start(foreground_pid)
        self._started_at = dt.datetime.now(dt.UTC)
        self._t0 = time.monotonic()
        self._wall0 = time.time()
        self._tick(self._t0)  # the sample at t = 0: the counters' starting values
        self._sampler.start(self._t0)

    def _owner(self, pid: int) -> Owner:
        """Whose a GPU process is, by the tokens in its environment, not by pgid: a
        child that called setsid keeps them. A pid we cannot read (another pid
        namespace, another user) is not the experiment's, and is counted."""
        known = self._fg_pids.get(pid)
        if known is not None:
            return known
        entries = read_environ(pid)
        owner: Owner = "other"
        if entries is None:
            self._unreadable.add(pid)
        elif self._fg_token is not None and self._fg_token in entries:
            owner = "foreground"
        elif self._marker is not None and self._marker in entries:
            owner = "experiment"
        self._fg_pids[pid] = owner
        return owner

    def _tick(self, scheduled: float) -> None:
        # Stamp the samples with the moment the GPUs are read, not the deadline the
        # sampler woke for: energy is integrated over the real reading times.
        now = time.monotonic()
        if now < scheduled:
            now = scheduled
        readings: list[GpuSample] = []
        for series in self._series:
            try:
                readings.append(series.meter.read())
            except Exception as exc:  # noqa: BLE001 - a failed read is a gap, not a crash
                series.read_errors += 1
                series.last_error = f"{type(exc).__name__}: {exc}"
                # A gap in every quantity; proc_util () = "no sample", not "unsupported".
                readings.append(GpuSample(proc_util=()))
        if self._closed:
            return  # a read that hung past stop(): the run is already reported
        cpu = self._cpu
        period = self._cpu_poll_period
        if period is None or time.monotonic() - cpu.last_poll_at >= period:  # type: ignore[attr-defined]
            try:
                cpu.poll()
            except Exception as exc:  # noqa: BLE001 - one missed poll must not end sampling
                self._cpu_poll_error = f"{type(exc).__name__}: {exc}"
        fg_time = self._fg_time
        if fg_time is not None and time.monotonic() - fg_time.last_poll_at >= POLL_PERIOD_S:
            try:
                fg_time.poll()
                if self._host is not None:
                    self._host.poll()
            except Exception as exc:  # noqa: BLE001 - context only: never ends sampling
                self._cpu_poll_error = f"{type(exc).__name__}: {exc}"
        # The CPU meter's average power between its two latest readings (RAPL: every
        # tick; the estimate: every second, held in between so the line is a step of
        # the estimate's own resolution). None before the second reading, and for
        # perf, which reports only when it stops. Inline: it runs every tick.
        at, last = cpu.updated_at, self._cpu_last
        if at is None:
            cpu_power = None
        elif last is not None and at <= last[0]:
            cpu_power = self._cpu_held  # no fresh reading since the previous tick
        else:
            joules = self._cpu_joules()
            if joules is None:
                cpu_power = None
            else:
                self._cpu_last = (at, joules)
                if last is not None:
                    self._cpu_held = (joules - last[1]) / (at - last[0])
                cpu_power = self._cpu_held
        with self._lock:
            if self._closed:
                return
            self._t.append(now - self._t0)
            self._cpu_power.append(cpu_power)
            flush = len(self._t) % ACCOUNT_EVERY == 0
            for series, sample in zip(self._series, readings, strict=True):
                series.samples.append(sample)
                series.times.append(now)
                if flush or sample.proc_util:
                    self._account_new(series)

    def _cpu_joules_from_total(self) -> float | None:
        """For a CPU meter without ``running_j``: the same figure from its reading."""
        total = self._cpu.total()
        if total.package_j is None:
            return None
        return total.package_j + (total.dram_j or 0.0)

    def _account_new(self, s: _GpuSeries) -> None:
        """The samples not yet accounted, in order (caller holds the lock)."""
        samples, times = s.samples, s.times
        for i in range(s.accounted, len(samples)):
            self._account(s, samples[i], times[i], i)
        s.accounted = len(samples)

    def _account(self, s: _GpuSeries, sample: GpuSample, now: float, i: int) -> None:
        """Sample ``i``'s energy into the foreground split; failed quantities counted."""
        if sample.errors:
            for quantity, why in sample.errors:
                count, _ = s.quantity_errors.get(quantity, (0, ""))
                s.quantity_errors[quantity] = (count + 1, why)
        if sample.state is not None:
            s.states.append(sample.state)
        proc = sample.proc_util
        if not i:
            # The t = 0 reading: its process samples describe the time before the run
            # (a meter kept open between runs), so they set no share.
            s.proc_supported = proc is not None
            return
        if proc is None:
            s.proc_supported = False
        share = s.share
        assert share is not None
        prev, prev_t = s.samples[i - 1], s.times[i - 1]
        de: float | None = None
        e0, e1 = prev.energy_mj, sample.energy_mj
        if e0 is not None and e1 is not None:
            if e1 >= e0:
                de = (e1 - e0) / 1000.0
            else:
                s.counter_backwards = True  # a GPU reset or driver reload
        if de is None:
            p0, p1 = prev.power_w, sample.power_w
            if p0 is not None and p1 is not None:
                de = (now - prev_t) * (p0 + p1) / 2.0
        wall = self._wall0 + (now - self._t0)
        if de is not None:
            share.add_tick(wall, now - prev_t, de)
        if proc:
            share.add_samples(proc)
            self._fg_seen.update(p for p, _u, _s in proc if self._owner(p) == "foreground")
        # On the readings' own clock, so that when the split is filled (every tick or
        # in batches) never changes what it gives.
        share.settle(wall)

    # -- results ---------------------------------------------------------------------

    def _channels(self, first: int) -> dict[str, list[float | None]]:
        """Samples ``first`` onwards of every channel (caller holds the lock). The set
        of channels is fixed from the start, so a live trace can grow chunk by chunk."""
        channels: dict[str, list[float | None]] = {"t": list[float | None](self._t[first:])}
        for s in self._series:
            i, rows = s.meter.index, s.samples[first:]
            channels[gpu_key(i, "power_w")] = [x.power_w for x in rows]
            channels[gpu_key(i, "util_pct")] = [x.util_pct for x in rows]
            channels[gpu_key(i, "mem_mib")] = [x.mem_mib for x in rows]
            channels[gpu_key(i, "temp_c")] = [x.temp_c for x in rows]
        if self.meters.cpu.method != "perf":  # perf reports only when it stops
            channels["cpu_power_w"] = self._cpu_power[first:]
        return channels

    def _meta(self) -> dict[str, Any]:
        return {
            "hz": self.hz,
            "started_at": self._started_at.isoformat() if self._started_at else None,
            "gpus": [{"index": s.meter.index, "device": s.meter.device} for s in self._series],
            "cpu": self.meters.cpu.device,
            # What ``cpu_power_w`` is: "rapl" (package + DRAM, whole machine) or
            # "estimate" (the foreground's CPU time x watts per core, not measured).
            "cpu_method": self.meters.cpu.method,
        }

    def trace_bytes(self) -> bytes:
        """The trace so far for the live chart (call from one thread at a time; the
        sampler may run meanwhile). Encodes only the samples since the last call."""
        if self._final_trace:
            return self._final_trace
        with self._lock:
            if self._live is None:
                self._live = LiveTrace(list(self._channels(len(self._t))), self._meta())
            channels = self._channels(self._live.count)
        return self._live.append(channels)

    def stop(self) -> tuple[EnergyReport, bytes]:
        if self._started_at is None:
            raise RuntimeError("stop() before start()")
        if self._stopped:
            raise RuntimeError("a Measurement is stopped once")
        self._stopped = True
        self._sampler.stop(self.join_timeout_s)
        if self._sampler.running:
            # A meter call hung: reading the closing sample would hang this thread too
            # (or race the sampler's). Skip it; the GPU figure is withheld.
            self._hung = True
        else:
            self._tick(time.monotonic())  # the closing sample: counters' final values
        with self._lock:
            self._closed = True
            for series in self._series:
                self._account_new(series)
        cpu = self.meters.cpu.stop()
        host: HostReport | None = None
        fg_cpu_s: float | None = None
        if self._host is not None and self._fg_time is not None:
            host = self._host.stop()
            # None without a foreground to follow: no part, rather than 0 J.
            if self._fg_time.stop().package_j is not None:
                fg_cpu_s = self._fg_time.cpu_seconds
        report = self._report(cpu, host, fg_cpu_s)
        with self._lock:
            # Once, at the end: the whole trace in the compact stored format.
            self._final_trace = encode_trace(self._channels(0), self._meta())
        return report, self._final_trace

    def _gpu_energy(self, s: _GpuSeries) -> tuple[float | None, EnergyMethod, list[str]]:
        flags: list[str] = []
        label = f"GPU {s.meter.index}"
        counters = [
            (t, x.energy_mj)
            for t, x in zip(s.times, s.samples, strict=True)
            if x.energy_mj is not None
        ]
        if s.meter.has_energy_counter and len(counters) >= 2:
            changes = [
                t for (t, e), (_, e0) in zip(counters[1:], counters, strict=False) if e != e0
            ]
            if s.counter_backwards:
                flags.append(
                    f"{label}: the energy counter went backwards (a GPU reset or driver "
                    "reload?); integrated power instead"
                )
            elif (
                len(changes) >= 2
                and counters[0][0] == s.times[0]
                and counters[-1][0] == s.times[-1]
            ):
                value = (counters[-1][1] - counters[0][1]) / 1000.0
                return value, "counter", flags + self._window_flags(s, "counter")
            elif len(changes) < 2:
                flags.append(f"{label}: {WINDOW_SHORT_FLAG}; integrated power instead")
            else:
                flags.append(
                    f"{label}: energy counter missing at the window's edge; "
                    "integrated power instead"
                )
        integral = trapezoid_j(s.times, [x.power_w for x in s.samples])
        if integral is None:
            return None, "unavailable", flags + [f"{label}: fewer than two power readings"]
        return integral, "integrated", flags + self._window_flags(s, "integrated")

    def _window_flags(self, s: _GpuSeries, method: EnergyMethod) -> list[str]:
        """A window only a few updates of the sensor its figure rests on long: one update
        more or less at each edge is a large part of it."""
        periods = self.meters.sensor_periods.get(s.meter.index)
        if periods is None or len(s.times) < 2:
            return []
        what = "energy counter" if method == "counter" else "power reading"
        period = periods.counter_s if method == "counter" else periods.power_s
        window = s.times[-1] - s.times[0]
        if period is None or period <= 0 or window >= FEW_PERIODS * period:
            return []
        return [
            f"GPU {s.meter.index}: the window ({window:.2f} s) is shorter than {FEW_PERIODS} "
            f"updates of its {what} (one every {1000 * period:.0f} ms, observed when the "
            f"worker started): its edges fall between updates, up to "
            f"±{100 * 2 * period / window:.0f} %"
        ]

    def _report(
        self, cpu_reading: CpuReading, host: HostReport | None, fg_cpu_s: float | None
    ) -> EnergyReport:
        period = 1.0 / self.hz
        flags: list[str] = []
        summaries: dict[str, float | None] = {}
        if self._sampler.error is not None:
            flags.append(f"sampler stopped early: {self._sampler.error!r}")
        if self._sampler.skipped:
            flags.append(f"{self._sampler.skipped} sampling tick(s) skipped (host overloaded)")
        duration = self._t[-1] if self._t else 0.0
        summaries["duration_s"] = duration
        summaries["samples"] = float(len(self._t))
        summaries["sampler_cpu_s"] = self._sampler.cpu_s

        # ---- GPU
        shares = {s.meter.index: s.share.finish() for s in self._series if s.share is not None}
        device_state, state_flags = self._device_state()
        gpu = self._gpu_figure(period, shares, state_flags)
        gpu_fg = self._foreground_figure(gpu, period, shares)
        self._gpu_summaries(summaries)

        # ---- CPU and DRAM
        cpu_meter = self.meters.cpu
        info = METHOD_INFO[cpu_meter.method]
        reasons = [f"{k} not used: {v}" for k, v in self.meters.cpu_fallback_reasons.items()]
        cpu_period = {"sampler": period, "poll": POLL_PERIOD_S}.get(info.cpu_sampling)
        cpu_flags = list(cpu_reading.flags) + reasons
        if self._cpu_poll_error:
            cpu_flags.append(f"CPU meter poll failed at least once: {self._cpu_poll_error}")
        if host is not None and cpu_reading.package_j is not None:
            cpu_flags.extend(self._host_flags(host))
        cpu = Figure(
            value=cpu_reading.package_j,
            method=cpu_meter.method if cpu_reading.package_j is not None else "unavailable",
            device=cpu_meter.device,
            sampling_period_s=cpu_period,
            flags=cpu_flags,
        )
        dram_flags = [f for f in cpu_reading.flags]
        if cpu_reading.dram_j is None:
            dram_flags.append(
                f"{cpu_meter.method} does not cover DRAM"
                if not info.covers_dram
                else f"{cpu_meter.method} reported no DRAM energy"
            )
        dram = Figure(
            value=cpu_reading.dram_j,
            method=cpu_meter.method if cpu_reading.dram_j is not None else "unavailable",
            device=cpu_meter.device,
            sampling_period_s=cpu_period,
            flags=dram_flags,
        )
        cpu_seconds = getattr(cpu_meter, "cpu_seconds", None)
        if cpu_seconds is not None:
            summaries["cpu_time_s"] = cpu_seconds
        return EnergyReport(
            gpu=gpu,
            cpu=cpu,
            dram=dram,
            gpu_foreground=gpu_fg,
            cpu_foreground=self._cpu_foreground(cpu, host, fg_cpu_s),
            gpu_uuid=",".join(self.meters.uuids),
            summaries=summaries,
            flags=flags,
            device_state=device_state,
        )

    def _host_flags(self, host: HostReport) -> list[str]:
        """What a host-wide CPU figure includes besides the foreground."""
        flags = [
            "host-wide: every CPU package of this host, its idle power and everything it "
            "ran in the window, not only this experiment"
        ]
        if self.shared_with_background:
            flags.append("includes this experiment's background training")
        others = sorted(host.others)
        if others:
            flags.append(
                f"{len(others)} other Wattlab experiment(s) ran on this host during the "
                f"window: {', '.join(code[:8] for code in others)}"
            )
        else:
            flags.append(
                "no other Wattlab experiment was seen on this host during the window "
                f"(looked at its start, its end and every {HOST_SCAN_S:g} s)"
            )
        return flags

    def _cpu_foreground(
        self, cpu: Figure, host: HostReport | None, fg_cpu_s: float | None
    ) -> Figure:
        """The foreground's part of the CPU figure, always an estimate (or unavailable)."""
        if cpu.value is None:
            return Figure(None, "unavailable", device=cpu.device, flags=["no CPU figure"])
        if not getattr(self.meters.cpu, "whole_machine", False):
            return Figure(
                cpu.value,
                "estimate",
                device=cpu.device,
                sampling_period_s=cpu.sampling_period_s,
                flags=["the CPU figure is itself an estimate of the foreground's process tree"],
            )
        busy = host.busy_cpu_s if host is not None else None
        if fg_cpu_s is None or not busy:
            why = (
                "no foreground process to follow"
                if fg_cpu_s is None
                else ("the host's busy CPU time could not be read")
            )
            return Figure(
                None, "unavailable", device=cpu.device, flags=[f"no foreground part: {why}"]
            )
        share = min(1.0, fg_cpu_s / busy)
        return Figure(
            cpu.value * share,
            "estimate",
            device=cpu.device,
            sampling_period_s=POLL_PERIOD_S,
            flags=[
                "estimate, not a measurement: the host-wide CPU figure x the foreground "
                "process tree's share of the host's busy CPU time (/proc/stat), the "
                "packages' idle power shared in the same proportion",
                f"foreground {fg_cpu_s:.1f} of {busy:.1f} busy CPU-seconds on the host "
                f"({100 * share:.0f} %)",
            ],
        )

    def _device_state(self) -> tuple[dict[str, Any], list[str]]:
        """The GPUs' settings and clocks over the window, and the flags they raise."""
        if not self._series:
            return {}, []
        records: list[dict[str, Any]] = []
        flags: list[str] = []
        for s in self._series:
            name = str(getattr(s.meter, "name", "") or s.meter.device)
            record, extra = gpu_record(
                s.meter.index, name, s.states, self.meters.sensor_periods.get(s.meter.index)
            )
            record["uuid"] = s.meter.uuid
            records.append(record)
            flags.extend(extra)
        changes = [f for f in flags if CHANGED in f]
        return {
            "settings_key": settings_key(records, bool(changes)),
            "gpus": records,
            "changes": changes,
        }, flags

    def _gpu_figure(
        self, period: float, shares: dict[int, ShareResult], state_flags: list[str]
    ) -> Figure:
        gpu_flags: list[str] = list(self.meters.gpu_notes)
        values: list[float] = []
        methods: list[EnergyMethod] = []
        for s in self._series:
            gpu_flags.extend(s.meter.flags)
            value, method, extra = self._gpu_energy(s)
            s.value = value
            gpu_flags.extend(extra)
            if s.read_errors:
                gpu_flags.append(
                    f"GPU {s.meter.index}: {s.read_errors} failed read(s), last: {s.last_error}"
                )
            for quantity, (count, why) in sorted(s.quantity_errors.items()):
                gpu_flags.append(
                    f"GPU {s.meter.index}: {quantity} unreadable in {count} read(s), last: {why}"
                )
            first_temp = next((x.temp_c for x in s.samples if x.temp_c is not None), None)
            if first_temp is not None and first_temp >= self.hot_start_c:
                gpu_flags.append(
                    f"started hot: GPU {s.meter.index} at {first_temp:g} °C "
                    f"(threshold {self.hot_start_c:g} °C)"
                )
            result = shares.get(s.meter.index)
            if result is not None:
                gpu_flags.extend(self._tenant_flags(s.meter.index, result))
            if value is not None:
                values.append(value)
                methods.append(method)
                if len(self._series) > 1:
                    gpu_flags.append(f"GPU {s.meter.index}: {value:.1f} J ({method})")
        gpu_flags.extend(state_flags)
        for index, reason in sorted(self.meters.gpu_unavailable.items()):
            who = "GPU" if index < 0 else f"GPU {index}"
            gpu_flags.append(f"{who} not measured: {reason}")
        if values and self.shared_with_background:
            gpu_flags.append(
                "whole GPU: includes the background training (the foreground share is "
                "an estimate of the foreground's part)"
            )
        device = "; ".join(s.meter.device for s in self._series)
        if self._hung:
            gpu_flags.append(
                f"a GPU read hung for more than {self.join_timeout_s:g} s: the closing "
                "sample was skipped and the GPU figure is withheld"
            )
            values = []
        if not values:
            return Figure(
                value=None,
                method="unavailable",
                device=device,
                sampling_period_s=period if self._series else None,
                flags=gpu_flags,
            )
        if self.meters.gpu_unavailable:
            gpu_flags.append("partial: the sum leaves out GPU(s) that could not be measured")
        return Figure(
            value=sum(values),
            method="counter" if all(m == "counter" for m in methods) else "integrated",
            device=device,
            sampling_period_s=period,
            flags=gpu_flags,
        )

    def _tenant_flags(self, index: int, result: ShareResult) -> list[str]:
        """Processes on the GPU that are none of the experiment's: the device figure
        includes them, solo or parallel, so it says who and how much."""
        total = result.sm_seconds
        strangers = {pid: sm for pid, (owner, sm) in result.processes.items() if owner == "other"}
        if not strangers or total <= 0:
            return []
        who = "not of this experiment"
        if self._marker is None:
            who = (
                "other than the foreground's (the experiment is not known: its "
                "background would be among them)"
            )
        listed = sorted(strangers.items(), key=lambda item: -item[1])
        described = ", ".join(
            f"pid {pid}{' (unreadable)' if pid in self._unreadable else ''}: "
            f"{100 * sm / total:.0f} %"
            for pid, sm in listed[:5]
        )
        more = f" and {len(listed) - 5} more" if len(listed) > 5 else ""
        return [
            f"GPU {index}: {len(strangers)} process(es) {who} used the GPU during the "
            f"window, and its figure includes them: {described}{more} of the SM time NVML "
            "sampled"
        ]

    def _foreground_figure(
        self, gpu: Figure, period: float, shares: dict[int, ShareResult]
    ) -> Figure:
        """The foreground's part of the GPU figure: an estimate, or unavailable with the
        reason (never 0 J for "could not tell"); a GPU that cannot be split is left out
        of it and named."""
        flags: list[str] = []

        def unavailable(reason: str) -> Figure:
            return Figure(None, "unavailable", device=gpu.device, flags=flags + [reason])

        if gpu.value is None or not self._series:
            return unavailable("no foreground share: the GPU figure is unavailable")
        if not any(s.proc_supported for s in self._series):
            return unavailable(
                "no foreground share: the GPU meter does not report per-process utilisation"
            )
        if not any(r.proc_samples for r in shares.values()):
            return unavailable("no foreground share: NVML gave no per-process sample")
        if not self._fg_seen:
            seen = sorted(p for p, owner in self._fg_pids.items() if owner != "foreground")
            unreadable = sorted(self._unreadable)
            return unavailable(
                "no foreground share: no process NVML reported belongs to the foreground's "
                f"group (pids {seen}"
                + (
                    f", {len(unreadable)} unreadable: another pid namespace or user?"
                    if unreadable
                    else ""
                )
                + "); the worker needs the host's pid namespace (compose: pid: host), and a "
                "foreground that never used the GPU has no process there either"
            )
        missing = [s.meter.index for s in self._series if s.meter.index not in self.meters.idle_w]
        if missing:
            notes = [self.meters.idle_note.get(i, f"GPU {i}: not probed") for i in missing]
            return unavailable("no foreground share: no idle baseline (" + "; ".join(notes) + ")")
        flags.extend([SHARE_POLICY, IDLE_RULE])
        for s in self._series:
            i = s.meter.index
            flags.append(
                self.meters.idle_note.get(i)
                or f"idle baseline GPU {i}: {self.meters.idle_w[i]:.1f} W (given)"
            )
        flags.append(
            f"foreground processes recognised by {ENV_GROUP} in /proc/<pid>/environ: "
            f"{len(self._fg_seen)} of {len(self._fg_pids)} pid(s) NVML reported"
        )
        if self._unreadable:
            flags.append(
                f"{len(self._unreadable)} pid(s) NVML reported could not be read "
                "(another pid namespace or user?): counted as not the foreground"
            )
        value = 0.0
        left_out: list[str] = []
        for s in self._series:
            i, result = s.meter.index, shares[s.meter.index]
            if not s.proc_supported:
                left_out.append(f"GPU {i} (NVML reports no per-process utilisation on it)")
                continue
            if result.covered_s <= 0 or s.value is None:
                left_out.append(f"GPU {i} (no per-process sample in the window)")
                continue
            # Each split is of its own tick energies; scaled to the GPU's figure so
            # counter and integrated GPUs add up to the same total.
            part = s.value * result.fg_j / result.ticks_j if result.ticks_j > 0 else 0.0
            value += part
            if len(self._series) > 1:
                flags.append(f"GPU {i}: foreground {part:.1f} J of {s.value:.1f} J")
            if result.uncovered_s > 0:
                flags.append(
                    f"GPU {i}: {result.uncovered_s:.1f} s of the window had no per-process "
                    f"sample covering it: given the average share of the "
                    f"{result.covered_s:.1f} s that had"
                )
            if result.late_samples:
                flags.append(
                    f"GPU {i}: {result.late_samples} per-process sample(s) came after their "
                    "time had been split, and were not used"
                )
        if len(left_out) == len(self._series):
            return unavailable("no foreground share: " + "; ".join(left_out))
        if left_out:
            flags.append(
                "partial: the foreground share leaves out " + "; ".join(left_out) + ": "
                "their energy is in the GPU figure but not split"
            )
        return Figure(value, "estimate", device=gpu.device, sampling_period_s=period, flags=flags)

    def _gpu_summaries(self, out: dict[str, float | None]) -> None:
        if not self._series:
            return
        n = len(self._t)

        def per_tick(field: str, combine: str) -> list[float | None]:
            rows: list[float | None] = []
            for k in range(n):
                vals = [getattr(s.samples[k], field) for s in self._series]
                if any(v is None for v in vals):
                    rows.append(None)
                elif combine == "sum":
                    rows.append(sum(vals))
                elif combine == "max":
                    rows.append(max(vals))
                else:
                    rows.append(statistics.fmean(vals))
            return rows

        avg, mx, mn = summary(per_tick("power_w", "sum"))
        out.update(gpu_power_avg_w=avg, gpu_power_max_w=mx, gpu_power_min_w=mn)
        avg, mx, _ = summary(per_tick("util_pct", "mean"))
        out.update(gpu_util_avg=avg, gpu_util_max=mx)
        avg, mx, _ = summary(per_tick("temp_c", "max"))
        out.update(gpu_temp_avg_c=avg, gpu_temp_max_c=mx)
        _, mx, _ = summary(per_tick("mem_mib", "sum"))
        out["gpu_memory_max_mib"] = mx
