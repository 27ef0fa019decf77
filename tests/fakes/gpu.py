"""A synthetic GPU that real processes load: the ground truth behind the fake NVML.

It lives in a folder that the loading processes and the fake NVML library share:

    lock              held (flock) while a kernel runs: one kernel at a time, as a GPU
                      time-slices the contexts of several processes
    proc-<pid>.log    made when a process opens its "context"; one line per kernel it
                      ran, ``<start> <end>`` on the host's monotonic clock (seconds)

A process loads it with :class:`GpuLoad` (``kernel(0.02)`` = 20 ms of the GPU); the fake
NVML reads it with :class:`SyntheticGpu`, which models what a driver reports:

- power: ``idle_w`` plus ``busy_w - idle_w`` while a kernel runs; the energy counter is
  its exact integral, updated every ``counter_period_s``; the instantaneous power is the
  mean of the last ``power_period_s``; ``nvmlDeviceGetPowerUsage`` a one-second mean;
- per-process utilisation as NVML reports it: the driver samples every process every
  ``proc_period_s`` (each process at its own phase) and keeps, per process, its newest
  sample with a non-zero utilisation, stamped with the end of the period it covers.

Kernels are logged when they end, so everything is read ``lag_s`` behind the present
(longer than any kernel): a reading never misses a kernel still under way.
"""

from __future__ import annotations

import bisect
import fcntl
import math
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

LOCK = "lock"
PREFIX = "proc-"


class GpuLoad:
    """One process's context on the synthetic GPU."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        path = self.directory / f"{PREFIX}{os.getpid()}.log"
        self._log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def kernel(self, seconds: float) -> tuple[float, float]:
        """Hold the GPU for ``seconds`` (waiting for it first, like a queued kernel);
        returns when it ran."""
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            start = time.monotonic()
            time.sleep(seconds)
            end = time.monotonic()
            # Logged before the GPU is released: the logs hold the kernels in the
            # order they ran, whoever reads them when.
            os.write(self._log, f"{start:.6f} {end:.6f}\n".encode())
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
        return start, end

    def close(self) -> None:
        os.close(self._lock)
        os.close(self._log)


@dataclass
class _Proc:
    offset: int = 0
    partial: bytes = b""
    #: (start, end) of each kernel, in order.
    kernels: list[tuple[float, float]] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    #: prefix sums of the kernels' durations
    done: list[float] = field(default_factory=lambda: [0.0])
    phase: float = 0.0
    #: the driver's newest sample of this process: (stamp, util %), and the index of
    #: the last sampling instant already looked at
    sample: tuple[float, float] | None = None
    instant: int | None = None


def _busy(
    kernels: list[tuple[float, float]], starts: list[float], done: list[float], a: float, b: float
) -> float:
    """Seconds of [a, b] that the kernels cover (they never overlap: one lock)."""
    if b <= a or not kernels:
        return 0.0
    i = max(bisect.bisect_right(starts, a) - 1, 0)
    j = bisect.bisect_left(starts, b)
    if j <= i:
        return 0.0
    total = done[j] - done[i]
    first_start, first_end = kernels[i]
    total -= min(max(a - first_start, 0.0), first_end - first_start)
    last_start, last_end = kernels[j - 1]
    total -= min(max(last_end - b, 0.0), last_end - last_start)
    return max(total, 0.0)


class SyntheticGpu:
    """What a driver would report about the load in ``directory``."""

    def __init__(
        self,
        directory: Path | str,
        *,
        idle_w: float = 70.0,
        busy_w: float = 650.0,
        counter_period_s: float = 0.1,
        power_period_s: float = 0.02,
        proc_period_s: float = 1 / 6,
        lag_s: float = 0.1,
        clock: object = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.idle_w, self.busy_w = idle_w, busy_w
        self.counter_period_s = counter_period_s
        self.power_period_s = power_period_s
        self.proc_period_s = proc_period_s
        self.lag_s = lag_s
        self._clock = clock
        self.origin = self.now()
        self._procs: dict[int, _Proc] = {}
        # every kernel of every process, for the device's power
        self._all: list[tuple[float, float]] = []
        self._all_starts: list[float] = []
        self._all_done: list[float] = [0.0]

    def now(self) -> float:
        """The present as the driver sees it: ``lag_s`` behind the clock."""
        return float(self._clock()) - self.lag_s  # type: ignore[operator]

    # -- reading the logs ---------------------------------------------------------

    def refresh(self) -> None:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        fresh: list[tuple[float, float]] = []
        for name in names:
            if not (name.startswith(PREFIX) and name.endswith(".log")):
                continue
            pid = int(name[len(PREFIX) : -len(".log")])
            proc = self._procs.get(pid)
            if proc is None:
                # Each process at its own phase of the driver's sampling, as NVML's
                # per-process stamps differ.
                phase = (zlib.crc32(str(pid).encode()) % 1000) / 1000 * self.proc_period_s
                proc = self._procs[pid] = _Proc(phase=phase)
            try:
                with open(self.directory / name, "rb") as fh:
                    fh.seek(proc.offset)
                    chunk = fh.read()
            except FileNotFoundError:
                continue
            proc.offset += len(chunk)
            *lines, proc.partial = (proc.partial + chunk).split(b"\n")
            for line in lines:
                start, end = (float(x) for x in line.split())
                proc.kernels.append((start, end))
                proc.starts.append(start)
                proc.done.append(proc.done[-1] + end - start)
                fresh.append((start, end))
        fresh.sort()
        if fresh and self._all and fresh[0][0] < self._all[-1][0]:
            # A kernel read late (its file was read before it was logged, another's
            # after a later kernel was): rebuild in order, rare.
            fresh = sorted(self._all + fresh)
            self._all, self._all_starts, self._all_done = [], [], [0.0]
        for start, end in fresh:
            self._all.append((start, end))
            self._all_starts.append(start)
            self._all_done.append(self._all_done[-1] + end - start)

    def pids(self) -> list[int]:
        """Processes holding a context now (their log exists and they live)."""
        self.refresh()
        return sorted(pid for pid in self._procs if os.path.exists(f"/proc/{pid}"))

    # -- the device ---------------------------------------------------------------

    def busy_s(self, a: float, b: float, pid: int | None = None) -> float:
        if pid is None:
            return _busy(self._all, self._all_starts, self._all_done, a, b)
        proc = self._procs.get(pid)
        if proc is None:
            return 0.0
        return _busy(proc.kernels, proc.starts, proc.done, a, b)

    def energy_j(self, at: float | None = None) -> float:
        """The counter: the exact integral since the GPU was made, as of its last update."""
        self.refresh()
        t = self.now() if at is None else at
        t = (
            self.origin
            + math.floor((t - self.origin) / self.counter_period_s) * self.counter_period_s
        )
        return self.idle_w * (t - self.origin) + (self.busy_w - self.idle_w) * self.busy_s(
            self.origin, t
        )

    def power_w(self, span_s: float, *, quantum_s: float | None = None) -> float:
        """Mean power over the last ``span_s``, as of the last update (every ``quantum_s``)."""
        self.refresh()
        quantum = self.power_period_s if quantum_s is None else quantum_s
        end = self.origin + math.floor((self.now() - self.origin) / quantum) * quantum
        start = max(end - span_s, self.origin)
        if end <= start:
            return self.idle_w
        busy = self.busy_s(start, end) / (end - start)
        return self.idle_w + (self.busy_w - self.idle_w) * busy

    def utilisation_pct(self) -> float:
        self.refresh()
        end = self.now()
        return 100.0 * self.busy_s(end - 1.0, end)

    def process_samples(self) -> dict[int, tuple[float, float]]:
        """Per process, the driver's newest sample with a non-zero utilisation:
        (stamp on the monotonic clock, SM utilisation %)."""
        self.refresh()
        now = self.now()
        period = self.proc_period_s
        out: dict[int, tuple[float, float]] = {}
        for pid, proc in self._procs.items():
            newest = math.floor((now - proc.phase) / period)
            first = newest - 60 if proc.instant is None else proc.instant + 1
            for k in range(max(first, newest - 60), newest + 1):
                end = proc.phase + k * period
                busy = self.busy_s(end - period, end, pid)
                if busy > 0:
                    proc.sample = (end, min(100.0, round(100.0 * busy / period)))
            proc.instant = newest
            if proc.sample is not None:
                out[pid] = proc.sample
        return out

    def work_of(self, pid: int, a: float, b: float) -> float:
        """Seconds of GPU ``pid`` used in [a, b]: the ground truth of a split."""
        self.refresh()
        return self.busy_s(a, b, pid)
