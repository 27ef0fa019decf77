"""Measure one run: open the meters, sample them on one thread, report energy.

    meters = open_meters([0])
    m = Measurement(meters=meters, hz=10.0)
    m.start(foreground_pid=pid, foreground_pgid=pgid)
    ...                                  # m.trace_bytes() for the live chart
    report, trace = m.stop()
    meters.close()

Choice of meter (the report says which, and why the better ones were not used):
GPU: NVML when ``pynvml`` loads and finds the device, else "unavailable"; the env
variable ``WATTLAB_METER_DOUBLE`` (a recorded-trace directory or ``synthetic:WATTS``)
selects a labelled double instead. CPU: RAPL, else ``perf stat``, else an estimate.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.contract import EnergyMethod, EnergyReport, Figure
from core.trace import LiveTrace, encode_trace, gpu_key
from workers.energy import nvml
from workers.energy.doubles import DOUBLE_ENV, from_spec
from workers.energy.estimate import POLL_PERIOD_S, EstimateCpuMeter
from workers.energy.integrate import summary, trapezoid_j
from workers.energy.meters import CpuMeter, CpuReading, GpuMeter, GpuSample, MeterUnavailable
from workers.energy.perf import PerfCpuMeter
from workers.energy.rapl import DEFAULT_POWERCAP_ROOT, RaplCpuMeter
from workers.energy.sampler import Sampler

#: A run that starts with the GPU at or above this temperature is flagged: a hot GPU
#: draws more (leakage) and may throttle sooner, so its figures are not comparable
#: with a cold start.
HOT_START_C = 70.0
WINDOW_SHORT_FLAG = "window shorter than the counter update period"


@dataclass
class MeterSet:
    """The meters of this host for one run. ``close()`` releases NVML."""

    gpus: list[GpuMeter]
    cpu: CpuMeter
    #: GPU index (or -1 for "all") -> why it cannot be measured.
    gpu_unavailable: dict[int, str] = field(default_factory=dict)
    #: Why better CPU meters were not used, e.g. {"rapl": "...", "perf": "..."}.
    cpu_fallback_reasons: dict[str, str] = field(default_factory=dict)
    _nvml_open: bool = False

    def close(self) -> None:
        for gpu in self.gpus:
            gpu.close()
        if self._nvml_open:
            nvml.shutdown()
            self._nvml_open = False


def _open_cpu(powercap_root: Path, try_perf: bool) -> tuple[CpuMeter, dict[str, str]]:
    reasons: dict[str, str] = {}
    try:
        return RaplCpuMeter(powercap_root), reasons
    except MeterUnavailable as exc:
        reasons["rapl"] = str(exc)
    if try_perf:
        try:
            return PerfCpuMeter(), reasons
        except MeterUnavailable as exc:
            reasons["perf"] = str(exc)
    else:
        reasons["perf"] = "not tried"
    return EstimateCpuMeter(powercap_root=powercap_root), reasons


def open_meters(
    gpu_indices: list[int],
    *,
    powercap_root: Path | str = DEFAULT_POWERCAP_ROOT,
    double: str | None = None,
    try_perf: bool = True,
) -> MeterSet:
    """Meters for the GPUs ``gpu_indices`` (empty: every GPU NVML finds) and the CPU.

    ``double`` (default: ``$WATTLAB_METER_DOUBLE``) replaces NVML by a labelled double.
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
    indices = gpu_indices or [g["index"] for g in _nvml_indices()]
    if not indices:
        unavailable[-1] = "NVML found no GPU on this host"
    for index in indices:
        try:
            gpus.append(nvml.NvmlGpuMeter(index))
        except MeterUnavailable as exc:
            unavailable[index] = str(exc)
    return MeterSet(gpus, cpu, unavailable, cpu_reasons, _nvml_open=True)


def _nvml_indices() -> list[dict[str, Any]]:
    import pynvml  # only reached after nvml.init() succeeded

    return [{"index": i} for i in range(int(pynvml.nvmlDeviceGetCount()))]


def describe_meters(powercap_root: Path | str = DEFAULT_POWERCAP_ROOT) -> dict[str, Any]:
    """Which meters this host offers and why the others are not available."""
    gpus = nvml.list_gpus()
    gpu_reason = ""
    if not gpus:
        try:
            nvml.init()
            nvml.shutdown()
            gpu_reason = "NVML found no GPU on this host"
        except MeterUnavailable as exc:
            gpu_reason = str(exc)
    cpu, reasons = _open_cpu(Path(powercap_root), try_perf=True)
    double = os.environ.get(DOUBLE_ENV, "")
    return {
        "gpu": {
            "method": "nvml" if gpus else "unavailable",
            "energy": "counter"
            if gpus and all(g["energy_counter"] for g in gpus)
            else ("integrated" if gpus else "unavailable"),
            "gpus": gpus,
            "reason": gpu_reason,
            "double": double or None,
        },
        "cpu": {"method": cpu.method, "device": cpu.device, "not_used": reasons},
    }


@dataclass
class _GpuSeries:
    meter: GpuMeter
    samples: list[GpuSample] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    read_errors: int = 0
    last_error: str = ""
    # Foreground split (per-process utilisation).
    share: float | None = None
    pending_j: float = 0.0
    fg_j: float = 0.0
    ticks_j: float = 0.0
    proc_samples: int = 0
    fg_seen: bool = False
    proc_supported: bool = True


class Measurement:
    """Samples the meters on one thread from :meth:`start` to :meth:`stop`."""

    def __init__(self, meters: MeterSet, hz: float = 10.0, *, hot_start_c: float = HOT_START_C):
        self.meters = meters
        self.hz = hz
        self.hot_start_c = hot_start_c
        self._lock = threading.Lock()
        self._series = [_GpuSeries(g) for g in meters.gpus]
        self._t: list[float] = []
        self._cpu_power: list[float | None] = []
        #: (monotonic time, joules) of the CPU meter's latest reading, and the power
        #: between it and the one before.
        self._cpu_last: tuple[float, float] | None = None
        self._cpu_held: float | None = None
        self._sampler = Sampler(self._tick, hz)
        self._t0 = 0.0
        self._started_at: dt.datetime | None = None
        self._fg_pgid: int | None = None
        self._fg_pids: dict[int, bool] = {}
        self._stopped = False
        self._cpu_poll_error = ""
        self._live: LiveTrace | None = None
        self._final_trace = b""

    # -- sampling (sampler thread, and once in start/stop) --------------------------

    def start(self, foreground_pid: int | None = None, foreground_pgid: int | None = None) -> None:
        if self._started_at is not None:
            raise RuntimeError("a Measurement is started once")
        self._fg_pgid = foreground_pgid
        if foreground_pid is not None:
            self._fg_pids[foreground_pid] = True
        # The CPU meter's setup (a process-tree scan) comes before t0, so that the
        # first GPU reading is taken at t = 0 and not some milliseconds later.
        self.meters.cpu.start(foreground_pid)
        self._started_at = dt.datetime.now(dt.UTC)
        self._t0 = time.monotonic()
        self._tick(self._t0)  # the sample at t = 0: the counters' starting values
        self._sampler.start(self._t0)

    def _is_foreground(self, pid: int) -> bool:
        known = self._fg_pids.get(pid)
        if known is not None:
            return known
        try:
            mine = self._fg_pgid is not None and os.getpgid(pid) == self._fg_pgid
        except (ProcessLookupError, PermissionError):
            mine = False  # gone before we looked: only a pid we saw earlier counts
        self._fg_pids[pid] = mine
        return mine

    def _tick(self, scheduled: float) -> None:
        # Stamp the samples with the moment the GPUs are read, not the deadline the
        # sampler woke for: energy is integrated over the real reading times.
        now = max(time.monotonic(), scheduled)
        readings: list[GpuSample] = []
        for series in self._series:
            try:
                readings.append(series.meter.read())
            except Exception as exc:  # noqa: BLE001 - a failed read is a gap, not a crash
                series.read_errors += 1
                series.last_error = f"{type(exc).__name__}: {exc}"
                # A gap in every quantity; proc_util () = "no sample", not "unsupported".
                readings.append(GpuSample(proc_util=()))
        try:
            self.meters.cpu.poll()
        except Exception as exc:  # noqa: BLE001 - one missed poll must not end sampling
            self._cpu_poll_error = f"{type(exc).__name__}: {exc}"
        cpu_power = self._cpu_power_since_last()
        with self._lock:
            self._t.append(now - self._t0)
            self._cpu_power.append(cpu_power)
            for series, sample in zip(self._series, readings, strict=True):
                self._attribute(series, sample, now)
                series.samples.append(sample)
                series.times.append(now)

    def _cpu_power_since_last(self) -> float | None:
        """The CPU meter's average power between its two latest readings (RAPL: every
        tick; the estimate: every second, held in between so the line is a step of
        the estimate's own resolution). None before the second reading, and for perf,
        which reports only when it stops."""
        meter = self.meters.cpu
        at = meter.updated_at
        if at is None:
            return None
        if self._cpu_last is not None and at <= self._cpu_last[0]:
            return self._cpu_held  # no fresh reading since the previous tick
        total = meter.total()
        if total.package_j is None:
            return None
        joules = total.package_j + (total.dram_j or 0.0)
        previous, self._cpu_last = self._cpu_last, (at, joules)
        if previous is not None:
            self._cpu_held = (joules - previous[1]) / (at - previous[0])
        return self._cpu_held

    def _attribute(self, s: _GpuSeries, sample: GpuSample, now: float) -> None:
        """Split this tick's device energy by the foreground's share of SM utilisation."""
        if not s.samples:
            # The t = 0 reading: its process samples describe the time before the run
            # (a meter kept open between runs), so they set no share.
            s.proc_supported = sample.proc_util is not None
            return
        if sample.proc_util is None:
            s.proc_supported = False
        elif sample.proc_util:
            s.proc_samples += len(sample.proc_util)
            total = sum(u for _, u in sample.proc_util)
            fg = sum(u for pid, u in sample.proc_util if self._is_foreground(pid))
            s.fg_seen = s.fg_seen or fg > 0
            if total > 0:  # an idle GPU says nothing about who is using it
                s.share = fg / total
        prev, prev_t = s.samples[-1], s.times[-1]
        de: float | None = None
        if prev.energy_mj is not None and sample.energy_mj is not None:
            de = (sample.energy_mj - prev.energy_mj) / 1000.0
        elif prev.power_w is not None and sample.power_w is not None:
            de = (now - prev_t) * (prev.power_w + sample.power_w) / 2.0
        if de is None:
            return
        s.ticks_j += de
        if s.share is None:
            s.pending_j += de  # attributed once the first share is known
        else:
            s.fg_j += (de + s.pending_j) * s.share
            s.pending_j = 0.0

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
        self._sampler.stop()
        self._tick(time.monotonic())  # the closing sample: counters' final values
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
            if (
                len(changes) >= 2
                and counters[0][0] == s.times[0]
                and counters[-1][0] == s.times[-1]
            ):
                return (counters[-1][1] - counters[0][1]) / 1000.0, "counter", flags
            if len(changes) < 2:
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
        gpu_flags: list[str] = []
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
        if values:
            if self.meters.gpu_unavailable:
                gpu_flags.append("partial: the sum leaves out GPU(s) that could not be measured")
            gpu = Figure(
                value=sum(values),
                method="counter" if all(m == "counter" for m in methods) else "integrated",
                device="; ".join(s.meter.device for s in self._series),
                sampling_period_s=period,
                flags=gpu_flags,
            )
        else:
            gpu = Figure(
                value=None,
                method="unavailable",
                device="; ".join(s.meter.device for s in self._series),
                sampling_period_s=period if self._series else None,
                flags=gpu_flags,
            )
        gpu_fg = self._foreground_j(gpu, flags)
        self._gpu_summaries(summaries)

        # ---- CPU and DRAM
        cpu_meter = self.meters.cpu
        reasons = [f"{k} not used: {v}" for k, v in self.meters.cpu_fallback_reasons.items()]
        cpu_period = {"rapl": period, "estimate": POLL_PERIOD_S}.get(cpu_meter.method)
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
                "estimate does not cover DRAM"
                if cpu_meter.method == "estimate"
                else f"{cpu_meter.method} reported no DRAM energy"
            )
        dram = Figure(
            value=cpu_reading.dram_j,
            method=cpu_meter.method if cpu_reading.dram_j is not None else "unavailable",
            device=cpu_meter.device,
            sampling_period_s=cpu_period,
            flags=dram_flags,
        )
        if isinstance(cpu_meter, EstimateCpuMeter):
            summaries["cpu_time_s"] = cpu_meter.cpu_seconds
        return EnergyReport(
            gpu=gpu, cpu=cpu, dram=dram, gpu_foreground_j=gpu_fg, summaries=summaries, flags=flags
        )

    def _foreground_j(self, gpu: Figure, flags: list[str]) -> float | None:
        if gpu.value is None or not self._series:
            return None
        if not all(s.proc_supported for s in self._series):
            flags.append(
                "no foreground/background split: "
                "the GPU meter does not report per-process utilisation"
            )
            return None
        if not any(s.proc_samples for s in self._series):
            flags.append("no foreground/background split: NVML gave no per-process sample")
            return None
        if not any(s.fg_seen for s in self._series):
            flags.append(
                "no foreground process seen in NVML's per-process samples (pid namespace?)"
            )
        # Each series' split is of its own tick energies; scale to the reported figure
        # so counter and integrated GPUs add up to the same total.
        split = sum(s.fg_j for s in self._series)
        ticks = sum(s.ticks_j for s in self._series)
        if ticks <= 0:
            return 0.0
        return gpu.value * split / ticks

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
