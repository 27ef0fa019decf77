"""Measure one run: open the meters, sample them on one thread, report energy.

    meters = open_meters([0])
    meters.probe_idle(2.0)               # the GPUs' idle power, before anything starts
    m = Measurement(meters=meters, hz=10.0)
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
"""

from __future__ import annotations

import collections
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
    METHOD_INFO,
    EnergyMethod,
    EnergyReport,
    Figure,
)
from core.trace import LiveTrace, encode_trace, gpu_key
from workers.energy import nvml
from workers.energy.doubles import DOUBLE_ENV, from_spec
from workers.energy.estimate import POLL_PERIOD_S
from workers.energy.integrate import summary, trapezoid_j
from workers.energy.meters import CpuMeter, CpuReading, GpuMeter, GpuSample, MeterUnavailable
from workers.energy.rapl import DEFAULT_POWERCAP_ROOT
from workers.energy.sampler import Sampler
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
SHARE_POLICY = (
    "estimate, not a measurement: the GPU energy above the idle baseline is split by "
    "the foreground's share of per-process SM utilisation (NVML), each share applied "
    "to the ticks its samples cover"
)
IDLE_RULE = (
    "idle rule: the idle baseline's energy goes wholly to the foreground while only it "
    "is active on the GPU, half while it and other processes are, none while only "
    "others are or nothing is"
)


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

    def close(self) -> None:
        for gpu in self.gpus:
            gpu.close()

    @property
    def uuids(self) -> list[str]:
        return [g.uuid for g in self.gpus if g.uuid]

    def cuda_env(self) -> dict[str, str]:
        """What pins a training to the metered GPUs (by UUID); {} for doubles."""
        return nvml.cuda_pin(self.uuids)

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
        return MeterSet([from_spec(spec, i) for i in indices], cpu, {}, cpu_reasons)
    try:
        nvml.init()
    except MeterUnavailable as exc:
        return MeterSet([], cpu, {-1: str(exc)}, cpu_reasons)
    gpus: list[GpuMeter] = []
    unavailable: dict[int, str] = {}
    listed = nvml.list_gpus()  # only the GPUs an inherited CUDA_VISIBLE_DEVICES allows
    allowed = {g["index"] for g in listed}
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
    return MeterSet(gpus, cpu, unavailable, cpu_reasons, gpu_notes=[note] if note else [])


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
        },
        "cpu": {"method": cpu.method, "device": cpu.device, "not_used": reasons},
    }


@dataclass
class _Split:
    """The foreground share of one GPU, built tick by tick."""

    #: Ticks waiting for the per-process samples that cover them:
    #: (wall-clock end in s, duration, energy above idle, idle energy).
    pending: collections.deque[tuple[float, float, float, float]] = field(
        default_factory=collections.deque
    )
    fg_j: float = 0.0
    ticks_j: float = 0.0
    #: (share of the energy above idle, share of the idle energy) last applied.
    last: tuple[float, float] | None = None
    extrapolated_s: float = 0.0
    proc_samples: int = 0
    supported: bool = True


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
    split: _Split = field(default_factory=_Split)
    #: The meter set's idle baseline for this GPU (0 W: none), taken at start().
    idle_w: float = 0.0
    #: Samples already in the split and error counts (see ACCOUNT_EVERY).
    accounted: int = 0


class Measurement:
    """Samples the meters on one thread from :meth:`start` to :meth:`stop`.

    ``shared_with_background``: a background training shares the GPU (parallel mode),
    so the GPU figure is the whole device's and says so.
    """

    def __init__(
        self,
        meters: MeterSet,
        hz: float = 10.0,
        *,
        hot_start_c: float = HOT_START_C,
        shared_with_background: bool = False,
        join_timeout_s: float = SAMPLER_JOIN_S,
    ):
        self.meters = meters
        self.hz = hz
        self.hot_start_c = hot_start_c
        self.shared_with_background = shared_with_background
        self.join_timeout_s = join_timeout_s
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
        self._t0 = 0.0
        self._wall0 = 0.0
        self._started_at: dt.datetime | None = None
        self._fg_token: bytes | None = None
        self._fg_pids: dict[int, bool] = {}
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
            self._fg_pids[foreground_pid] = True
        # The CPU meter's setup (a process-tree scan) comes before t0, so that the
        # first GPU reading is taken at t = 0 and not some milliseconds later.
        for series in self._series:
            series.idle_w = self.meters.idle_w.get(series.meter.index, 0.0)
        self.meters.cpu.start(foreground_pid)
        self._started_at = dt.datetime.now(dt.UTC)
        self._t0 = time.monotonic()
        self._wall0 = time.time()
        self._tick(self._t0)  # the sample at t = 0: the counters' starting values
        self._sampler.start(self._t0)

    def _is_foreground(self, pid: int) -> bool:
        """By the group token in the process's environment, not by pgid: a child that
        called setsid keeps the token. A pid we cannot read (another pid namespace,
        another user) is not attributed, and counted."""
        known = self._fg_pids.get(pid)
        if known is not None:
            return known
        entries = read_environ(pid)
        if entries is None:
            self._unreadable.add(pid)
            mine = False
        else:
            mine = self._fg_token is not None and self._fg_token in entries
        self._fg_pids[pid] = mine
        return mine

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
        split = s.split
        proc = sample.proc_util
        if not i:
            # The t = 0 reading: its process samples describe the time before the run
            # (a meter kept open between runs), so they set no share.
            split.supported = proc is not None
            return
        if proc is None:
            split.supported = False
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
        if de is not None:
            span = now - prev_t
            idle_j = min(de, s.idle_w * span) if de > 0 else 0.0
            split.ticks_j += de
            split.pending.append((self._wall0 + (now - self._t0), span, de - idle_j, idle_j))
        if proc:
            self._apply_share(split, proc)

    def _apply_share(self, split: _Split, batch: tuple[tuple[int, float, int], ...]) -> None:
        """One batch of per-process samples sets the share of the ticks it covers: the
        waiting ticks that ended before its newest sample."""
        split.proc_samples += len(batch)
        total = fg = 0.0
        for pid, util, _stamp in batch:
            total += util
            if self._is_foreground(pid):
                fg += util
                self._fg_seen.add(pid)
        rest = total - fg
        above = fg / total if total > 0 else 0.0
        idle = 1.0 if fg > 0 and rest <= 0 else (0.5 if fg > 0 else 0.0)
        split.last = (above, idle)
        covered_until = max(stamp for _pid, _util, stamp in batch) / 1_000_000
        while split.pending and split.pending[0][0] <= covered_until:
            _end, _span, above_j, idle_j = split.pending.popleft()
            split.fg_j += above_j * above + idle_j * idle

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
        report = self._report(cpu)
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
                return (counters[-1][1] - counters[0][1]) / 1000.0, "counter", flags
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
        return integral, "integrated", flags

    def _report(self, cpu_reading: CpuReading) -> EnergyReport:
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
        gpu = self._gpu_figure(period)
        gpu_fg = self._foreground_figure(gpu, period)
        self._gpu_summaries(summaries)

        # ---- CPU and DRAM
        cpu_meter = self.meters.cpu
        info = METHOD_INFO[cpu_meter.method]
        reasons = [f"{k} not used: {v}" for k, v in self.meters.cpu_fallback_reasons.items()]
        cpu_period = {"sampler": period, "poll": POLL_PERIOD_S}.get(info.cpu_sampling)
        cpu_flags = list(cpu_reading.flags) + reasons
        if self._cpu_poll_error:
            cpu_flags.append(f"CPU meter poll failed at least once: {self._cpu_poll_error}")
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
            gpu_uuid=",".join(self.meters.uuids),
            summaries=summaries,
            flags=flags,
        )

    def _gpu_figure(self, period: float) -> Figure:
        gpu_flags: list[str] = list(self.meters.gpu_notes)
        values: list[float] = []
        methods: list[EnergyMethod] = []
        for s in self._series:
            gpu_flags.extend(s.meter.flags)
            value, method, extra = self._gpu_energy(s)
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
            if value is not None:
                values.append(value)
                methods.append(method)
                if len(self._series) > 1:
                    gpu_flags.append(f"GPU {s.meter.index}: {value:.1f} J ({method})")
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

    def _foreground_figure(self, gpu: Figure, period: float) -> Figure:
        """The foreground's part of the GPU figure: an estimate, or unavailable with the
        reason (never 0 J for "could not tell")."""
        flags: list[str] = []

        def unavailable(reason: str) -> Figure:
            return Figure(None, "unavailable", device=gpu.device, flags=flags + [reason])

        if gpu.value is None or not self._series:
            return unavailable("no foreground share: the GPU figure is unavailable")
        for s in self._series:
            if not s.split.supported:
                return unavailable(
                    "no foreground share: the GPU meter does not report per-process utilisation"
                )
        if not any(s.split.proc_samples for s in self._series):
            return unavailable("no foreground share: NVML gave no per-process sample")
        if not self._fg_seen:
            seen = sorted(p for p, mine in self._fg_pids.items() if not mine)
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
        extrapolated = 0.0
        for s in self._series:
            split = s.split
            while split.pending:
                _end, span, above_j, idle_j = split.pending.popleft()
                if split.last is not None:
                    split.fg_j += above_j * split.last[0] + idle_j * split.last[1]
                    extrapolated += span
        if extrapolated > 0:
            flags.append(
                f"the last {extrapolated:.1f} s had no per-process sample yet: "
                "given the previous share"
            )
        # Each series' split is of its own tick energies; scale to the reported figure
        # so counter and integrated GPUs add up to the same total.
        split_j = sum(s.split.fg_j for s in self._series)
        ticks = sum(s.split.ticks_j for s in self._series)
        value = gpu.value * split_j / ticks if ticks > 0 else 0.0
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
