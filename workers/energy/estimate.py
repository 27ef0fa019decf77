"""CPU energy *estimate* from the foreground process tree's CPU time (last resort).

Used only where neither RAPL nor perf can be read. It is not a measurement: joules =
CPU-seconds of the foreground tree x an assumed power per busy core, and the report
says so (method ``estimate``, the assumed watts in the flags). Unlike RAPL it covers
the foreground only, so the background is not in it; DRAM is not estimated.
"""

from __future__ import annotations

import os
import time

import psutil

from workers.energy.meters import CpuMethod, CpuReading

#: Assumed average power of one fully busy core. A server core at full load draws
#: roughly 5-15 W (package TDP / cores); 10 W is the middle of that range.
DEFAULT_WATTS_PER_CORE = 10.0
WATTS_ENV = "WATTLAB_CPU_WATTS_PER_CORE"

#: psutil's children(recursive=True) scans all of /proc: do it rarely. CPU times of
#: known members are cheap (one /proc/<pid>/stat read each).
TREE_REFRESH_S = 5.0
POLL_PERIOD_S = 1.0


def watts_per_core_from_env() -> float:
    raw = os.environ.get(WATTS_ENV, "")
    if not raw:
        return DEFAULT_WATTS_PER_CORE
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{WATTS_ENV} must be a number of watts, got {raw!r}") from exc
    if not 0 < value < 1000:
        raise ValueError(f"{WATTS_ENV} must be between 0 and 1000 watts, got {raw!r}")
    return value


def _tree_cpu_seconds(p: psutil.Process) -> float:
    # children_* hold the CPU time of descendants already waited for, so a process
    # that exits moves its time into its parent's children_* and is never lost.
    t = p.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


class EstimateCpuMeter:
    method: CpuMethod = "estimate"
    whole_machine = False

    def __init__(self, watts_per_core: float | None = None) -> None:
        self.watts_per_core = (
            watts_per_core if watts_per_core is not None else (watts_per_core_from_env())
        )
        self.device = "estimate from the foreground process tree's CPU time"
        self._leader: psutil.Process | None = None
        self._members: list[psutil.Process] = []
        self._baseline = 0.0
        self._cpu_s = 0.0
        self._last_poll = 0.0
        self._last_tree = 0.0

    def start(self, foreground_pid: int | None) -> None:
        self._cpu_s = 0.0
        self._baseline = 0.0
        self._leader = None
        self._members = []
        if foreground_pid is None:
            return
        try:
            self._leader = psutil.Process(foreground_pid)
            # Time the leader spent before the run started is not the run's.
            self._baseline = _tree_cpu_seconds(self._leader)
        except psutil.Error:
            self._leader = None
        self._refresh_tree(time.monotonic())
        self._sum()

    def _refresh_tree(self, now: float) -> None:
        self._last_tree = now
        if self._leader is None:
            return
        try:
            self._members = [self._leader, *self._leader.children(recursive=True)]
        except psutil.Error:
            self._members = [self._leader]

    def _sum(self) -> None:
        total = 0.0
        for p in self._members:
            try:
                total += _tree_cpu_seconds(p)
            except psutil.Error:
                continue  # exited: its time is now in its parent's children_* (if reaped)
        # Monotone: between a member's exit and its reaping its time is nowhere.
        self._cpu_s = max(self._cpu_s, total - self._baseline)

    def poll(self) -> None:
        now = time.monotonic()
        if now - self._last_poll < POLL_PERIOD_S:
            return
        self._last_poll = now
        if now - self._last_tree >= TREE_REFRESH_S:
            self._refresh_tree(now)
        self._sum()

    @property
    def cpu_seconds(self) -> float:
        return self._cpu_s

    def total(self) -> CpuReading:
        if self._leader is None:
            return CpuReading(None, None, ["no foreground process to estimate from"])
        return CpuReading(
            self._cpu_s * self.watts_per_core,
            None,
            [
                f"estimate: {self.watts_per_core:g} W per busy core x "
                f"{self._cpu_s:.1f} CPU-seconds of the foreground process tree (not measured)",
                "foreground only: the background is not included",
                f"CPU time read every {POLL_PERIOD_S:g} s: up to that much before the "
                "foreground's exit can be missed",
            ],
        )

    def stop(self) -> CpuReading:
        self._refresh_tree(time.monotonic())
        self._sum()
        return self.total()
