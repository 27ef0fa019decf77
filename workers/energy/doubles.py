"""GPU meter doubles for hosts without an NVIDIA GPU (tests, demos, this dev box).

Both sit behind the same :class:`~workers.energy.meters.GpuMeter` interface as the
real NVML meter and say what they are in ``device`` and ``flags``, so a figure they
produce can never pass for a measurement of this machine:

- :class:`ReplayGpuMeter` replays a *recorded* trace of a real RTX 3080 run
  (``<repo>/data/traces/rtx3080/<run>/gpu_*.csv``) against the monotonic clock.
- :class:`SyntheticGpuMeter` produces power from a formula whose integral is known,
  optionally with an energy counter, to check the arithmetic exactly.
"""

from __future__ import annotations

import bisect
import csv
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers.energy.meters import GpuSample, MeterUnavailable

DOUBLE_ENV = "WATTLAB_METER_DOUBLE"

Clock = Callable[[], float]


def recorded_traces_dir() -> Path:
    """``<repo>/data/traces``: the recorded real-GPU traces that ship with Wattlab."""
    return Path(__file__).resolve().parents[2] / "data" / "traces"


def _read_columns(path: Path) -> tuple[list[float], list[list[float | None]]]:
    times: list[float] = []
    columns: list[list[float | None]] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        columns = [[] for _ in header[1:]]
        for row in reader:
            if not row:
                continue
            times.append(float(row[0]))
            for col, raw in zip(columns, row[1:], strict=False):
                try:
                    col.append(float(raw))
                except ValueError:
                    col.append(None)  # "N/A" in nvidia-smi output
    return times, columns


class ReplayGpuMeter:
    """Replays a recorded ``gpu_power.csv`` (+ utilisation, temperature) in real time.

    The recording has one-second timestamps and no energy counter, so this double
    exercises the integration path. ``speed`` > 1 replays faster (tests).
    """

    has_energy_counter = False
    uuid: str | None = None  # not a real device: nothing to pin a training to

    def __init__(
        self, trace_dir: Path, index: int = 0, speed: float = 1.0, clock: Clock = time.monotonic
    ) -> None:
        power_csv = trace_dir / "gpu_power.csv"
        if not power_csv.is_file():
            raise MeterUnavailable(f"replay trace {power_csv} does not exist")
        self.index = index
        self._clock = clock
        self._speed = speed
        times, (power,) = _read_columns(power_csv)
        if len(times) < 2:
            raise MeterUnavailable(f"replay trace {power_csv} has fewer than two samples")
        self._t = [t - times[0] for t in times]
        self._power = power
        self._util = self._aligned(trace_dir / "gpu_utilization.csv", times[0])
        self._temp = self._aligned(trace_dir / "gpu_temperature.csv", times[0])
        self.device = f"replay of recorded RTX 3080 trace {trace_dir.name} (not this machine)"
        self.flags = [
            f"GPU figures replayed from a recorded trace ({trace_dir.name}), not measured"
        ]
        self._t0: float | None = None

    def _aligned(self, path: Path, t0: float) -> tuple[list[float], list[float | None]] | None:
        if not path.is_file():
            return None
        times, columns = _read_columns(path)
        return [t - t0 for t in times], columns[0]

    @property
    def duration_s(self) -> float:
        return self._t[-1] / self._speed

    def power_at(self, elapsed_s: float) -> float | None:
        """Linear interpolation of the recording at ``elapsed_s`` (in replay time)."""
        x = elapsed_s * self._speed
        if x >= self._t[-1]:
            return self._power[-1]
        i = max(bisect.bisect_right(self._t, x) - 1, 0)
        p0, p1 = self._power[i], self._power[i + 1]
        if p0 is None or p1 is None:
            return p0 if p1 is None else p1
        frac = (x - self._t[i]) / (self._t[i + 1] - self._t[i])
        return p0 + (p1 - p0) * frac

    @staticmethod
    def _held(series: tuple[list[float], list[float | None]] | None, x: float) -> float | None:
        if series is None:
            return None
        times, values = series
        i = max(bisect.bisect_right(times, x) - 1, 0)
        return values[min(i, len(values) - 1)]

    def read(self) -> GpuSample:
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        elapsed = now - self._t0
        x = elapsed * self._speed
        return GpuSample(
            power_w=self.power_at(elapsed),
            util_pct=self._held(self._util, x),
            temp_c=self._held(self._temp, x),
        )

    def close(self) -> None:
        """Nothing to release."""


class SyntheticGpuMeter:
    """Power from a formula of elapsed seconds; the energy counter (if any) is its
    exact integral, advanced only every ``counter_period_s`` like NVML's counter.

    ``proc_util(t)`` gives (pid, sm_util) pairs, stamped with the wall clock when read,
    as NVML stamps its per-process samples.
    """

    uuid: str | None = None  # not a real device: nothing to pin a training to

    def __init__(
        self,
        power: Callable[[float], float],
        energy: Callable[[float], float] | None = None,
        *,
        index: int = 0,
        label: str = "synthetic",
        counter_period_s: float = 0.0,
        util_pct: float | None = 50.0,
        mem_mib: float | None = 1024.0,
        temp_c: float | Callable[[float], float] | None = 50.0,
        proc_util: Callable[[float], tuple[tuple[int, float], ...] | None] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.index = index
        self._power = power
        self._energy = energy
        self.has_energy_counter = energy is not None
        self._period = counter_period_s
        self._util = util_pct
        self._mem = mem_mib
        self._temp = temp_c
        self._proc_util = proc_util
        self._clock = clock
        self._t0: float | None = None
        self.device = f"synthetic GPU {index}: {label} (not a measurement)"
        self.flags = [f"GPU figures from a synthetic trace ({label}), not measured"]

    def read(self) -> GpuSample:
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        x = now - self._t0
        energy_mj: int | None = None
        if self._energy is not None:
            # A counter that updates every period reads the integral at the last update.
            tick = math.floor(x / self._period) * self._period if self._period > 0 else x
            energy_mj = round(1_000_000_000 + self._energy(tick) * 1000.0)
        temp = self._temp(x) if callable(self._temp) else self._temp
        proc: tuple[tuple[int, float, int], ...] | None = None
        if self._proc_util is not None:
            pairs = self._proc_util(x)
            stamp = int(time.time() * 1_000_000)
            proc = None if pairs is None else tuple((p, u, stamp) for p, u in pairs)
        return GpuSample(
            power_w=self._power(x),
            energy_mj=energy_mj,
            util_pct=self._util,
            mem_mib=self._mem,
            temp_c=temp,
            proc_util=proc,
        )

    def close(self) -> None:
        """Nothing to release."""


def constant_power(watts: float, **kwargs: Any) -> SyntheticGpuMeter:
    """A GPU drawing ``watts`` constantly, with an energy counter (integral = W x s)."""
    return SyntheticGpuMeter(
        lambda _t: watts,
        lambda t: watts * t,
        label=f"constant {watts:g} W",
        **kwargs,
    )


def sine_power(
    base_w: float, amplitude_w: float, period_s: float
) -> tuple[Callable[[float], float], Callable[[float], float]]:
    """``base + amplitude * sin(2 pi t / period)`` and its exact integral from 0."""
    omega = 2 * math.pi / period_s

    def power(t: float) -> float:
        return base_w + amplitude_w * math.sin(omega * t)

    def energy(t: float) -> float:
        return base_w * t + amplitude_w * (1 - math.cos(omega * t)) / omega

    return power, energy


def from_spec(spec: str, index: int) -> ReplayGpuMeter | SyntheticGpuMeter:
    """The double named by ``WATTLAB_METER_DOUBLE``: a trace directory or ``synthetic:W``."""
    if spec.startswith("synthetic:"):
        raw = spec.removeprefix("synthetic:")
        try:
            watts = float(raw)
        except ValueError as exc:
            raise ValueError(
                f"{DOUBLE_ENV}=synthetic:WATTS needs a number of watts, got {raw!r}"
            ) from exc
        return constant_power(watts, index=index)
    path = Path(spec)
    if not path.is_absolute() and not path.is_dir():
        # A relative path names a folder under the repository (``data/traces/...``)
        # wherever the worker was started from.
        path = recorded_traces_dir().parent.parent / spec
    if not path.is_dir():
        raise ValueError(f"{DOUBLE_ENV} must be a trace directory or synthetic:WATTS, got {spec!r}")
    return ReplayGpuMeter(path, index=index)
