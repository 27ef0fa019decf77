"""CPU energy *estimate* from the foreground process tree's CPU time (last resort).

Used only where neither RAPL nor perf can be read. It is not a measurement: joules =
CPU-seconds of the foreground tree x an assumed power per busy core, and the report
says so (method ``estimate``, the assumed watts and where they come from in the
flags: the packages' power limit from powercap / physical cores, else a table by CPU
model family, else a generic figure). Unlike RAPL it covers
the foreground only, so the background is not in it; DRAM is not estimated.
"""

from __future__ import annotations

import collections
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from workers.energy.meters import CpuMethod, CpuReading
from workers.energy.rapl import DEFAULT_POWERCAP_ROOT, package_power_limits_w

WATTS_ENV = "WATTLAB_CPU_WATTS_PER_CORE"
CPUINFO = Path("/proc/cpuinfo")

#: Watts per busy core by CPU model family: the top SKU's TDP / its physical cores
#: (vendor data sheets). Used only where powercap gives no package power limit.
#: First match wins, so the specific generations come before the bare family names.
FAMILY_TABLE: Final[tuple[tuple[str, str, float], ...]] = (
    (r"EPYC\s+9\d\d5", "AMD EPYC 9005 (Turin): 9755, 500 W / 128 cores", 500 / 128),
    (r"EPYC\s+9\d\d4", "AMD EPYC 9004 (Genoa): 9654, 360 W / 96 cores", 360 / 96),
    (r"EPYC\s+7\d\d3", "AMD EPYC 7003 (Milan): 7763, 280 W / 64 cores", 280 / 64),
    (r"EPYC\s+7\d\d2", "AMD EPYC 7002 (Rome): 7742, 225 W / 64 cores", 225 / 64),
    (r"EPYC\s+7\d\d1", "AMD EPYC 7001 (Naples): 7601, 180 W / 32 cores", 180 / 32),
    (r"EPYC", "AMD EPYC, generation unknown: Milan's 280 W / 64 cores", 280 / 64),
    (r"Xeon.*\b\d5\d\d", "Intel Xeon 5th gen (Emerald Rapids): 8592+, 350 W / 64 cores", 350 / 64),
    (r"Xeon.*\b\d4\d\d", "Intel Xeon 4th gen (Sapphire Rapids): 8480+, 350 W / 56 cores", 350 / 56),
    (r"Xeon.*\b\d3\d\d", "Intel Xeon 3rd gen (Ice Lake): 8380, 270 W / 40 cores", 270 / 40),
    (r"Xeon.*\b\d2\d\d", "Intel Xeon 2nd gen (Cascade Lake): 8280, 205 W / 28 cores", 205 / 28),
    (r"Xeon.*\b\d1\d\d", "Intel Xeon 1st gen (Skylake-SP): 8180, 205 W / 28 cores", 205 / 28),
    (r"Xeon", "Intel Xeon, generation unknown: Ice Lake's 270 W / 40 cores", 270 / 40),
)
#: Neither powercap nor the table knows the CPU: a middle of the table's server range
#: (3.5-7.3 W), not the 10 W once assumed (1.6-2.7x too high for current servers).
GENERIC_WATTS_PER_CORE: Final = 5.0

#: Finding the tree reads every /proc/<pid>/stat (psutil's children(recursive=True):
#: 6-16 ms with 140 processes on the loaded dev box; our own pass, _descendants, about
#: a third of that, 1.4 ms against 4.6 ms for 114 processes): do it 2 s into
#: the run (dataloader workers start early), then ever less often, up to every
#: TREE_REFRESH_MAX_S. A member found late loses nothing (its CPU time is cumulative)
#: and one that exits first is in its parent's children_* once reaped; only the live
#: CPU power line catches up later. CPU times of known members are cheap.
TREE_REFRESH_FIRST_S = 2.0
TREE_REFRESH_MAX_S = 60.0
POLL_PERIOD_S = 1.0


@dataclass(frozen=True)
class WattsPerCore:
    """The assumed power of one busy core and where the number comes from."""

    watts: float
    #: "env", "caller", "powercap", "table" or "default".
    source: str
    detail: str

    def flag(self) -> str:
        return f"watts per core from {self.source}: {self.detail}"


def watts_per_core_from_env() -> float | None:
    raw = os.environ.get(WATTS_ENV, "")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{WATTS_ENV} must be a number of watts, got {raw!r}") from exc
    if not 0 < value < 1000:
        raise ValueError(f"{WATTS_ENV} must be between 0 and 1000 watts, got {raw!r}")
    return value


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The first ``model name`` in /proc/cpuinfo ("" where there is none, e.g. on ARM)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return ""


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def resolve_watts_per_core(
    *,
    powercap_root: Path = DEFAULT_POWERCAP_ROOT,
    cpuinfo: Path = CPUINFO,
    cores: int | None = None,
) -> WattsPerCore:
    """$WATTLAB_CPU_WATTS_PER_CORE, else the packages' power limit / cores, else the
    model-family table, else a generic default; the result says which."""
    env = watts_per_core_from_env()
    if env is not None:
        return WattsPerCore(env, "env", f"{WATTS_ENV}={env:g}")
    n = cores if cores is not None else physical_cores()
    limits = package_power_limits_w(powercap_root)
    if limits:
        total = sum(limits)
        return WattsPerCore(
            total / n,
            "powercap",
            f"package power limit {total:g} W (constraint_0_power_limit_uw, "
            f"{len(limits)} package(s)) / {n} cores",
        )
    model = cpu_model(cpuinfo)
    for pattern, family, watts in FAMILY_TABLE:
        if re.search(pattern, model):
            return WattsPerCore(watts, "table", f"{model!r} read as {family}")
    return WattsPerCore(
        GENERIC_WATTS_PER_CORE,
        "default",
        f"no package power limit in powercap and CPU model {model or 'unknown'!r} "
        "is not in the table: generic server figure",
    )


PROC = Path("/proc")
#: psutil's CLOCK_TICKS: /proc/<pid>/stat counts CPU time in these.
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
#: /proc/<pid>/stat is one line of ~52 numbers and a name of at most 16 bytes.
STAT_READ = 4096


def _stat_fields(data: bytes) -> list[bytes]:
    """The fields after ``(comm)``: [0] state, [1] ppid, [11:15] utime, stime,
    cutime, cstime (clock ticks), [19] starttime. The name may hold spaces and ')'."""
    return data[data.rfind(b")") + 2 :].split()


def _cpu_seconds(fields: list[bytes]) -> float:
    # psutil's cpu_times() arithmetic, term by term, so the sum is the same float.
    # children_* hold the CPU time of descendants already waited for, so a process
    # that exits moves its time into its parent's children_* and is never lost.
    return float(
        float(fields[11]) / CLOCK_TICKS
        + float(fields[12]) / CLOCK_TICKS
        + float(fields[13]) / CLOCK_TICKS
        + float(fields[14]) / CLOCK_TICKS
    )


class _Member:
    """One process of the tree with its ``/proc/<pid>/stat`` kept open: a reading is
    one ``pread`` (procfs renders the line afresh at offset 0), where psutil's
    ``cpu_times()`` opens, reads, closes and parses into a dict every time (4x the
    CPU here). The descriptor is bound to the process, not to the number: once it
    is reaped, reads fail (ESRCH) rather than read whoever reuses the pid."""

    __slots__ = ("fd", "pid", "start")

    def __init__(self, pid: int, start: bytes | None = None, proc: Path = PROC) -> None:
        self.pid = pid
        self.fd = os.open(f"{proc}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            fields = _stat_fields(os.pread(self.fd, STAT_READ, 0))
            if start is not None and fields[19] != start:
                raise ProcessLookupError(pid)  # the pid was reused since the scan
        except BaseException:
            os.close(self.fd)
            raise
        self.start = fields[19]

    def cpu_seconds(self) -> float:
        """OSError once the process is gone (reaped)."""
        return _cpu_seconds(_stat_fields(os.pread(self.fd, STAT_READ, 0)))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _descendants(leader: _Member, proc: Path = PROC) -> list[tuple[int, bytes]]:
    """(pid, starttime) of every descendant of ``leader``: what psutil's
    ``children(recursive=True)`` returns, found the same way (one pass over
    /proc/*/stat, then the tree from the parent pids, skipping a "child" older than
    the leader: a reused pid) and in the same order, at about a third of the cost
    (no Process object, no second read of each child's stat)."""
    parents: dict[int, int] = {}
    starts: dict[int, bytes] = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"{proc}/{name}/stat", os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = os.read(fd, STAT_READ)
            finally:
                os.close(fd)
        except OSError:
            continue  # exited meanwhile, or not ours to read
        fields = _stat_fields(data)
        pid = int(name)
        parents[pid] = int(fields[1])
        starts[pid] = fields[19]
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, ppid in parents.items():
        children[ppid].append(pid)
    found: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    stack = [leader.pid]
    if starts.get(leader.pid) != leader.start:
        return []  # the leader is gone (and its pid perhaps reused): no tree to follow
    leader_start = int(leader.start)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue  # pids reused during the pass can make a cycle
        seen.add(pid)
        for child in children[pid]:
            if leader_start <= int(starts[child]):
                found.append((child, starts[child]))
                stack.append(child)
    return found


class EstimateCpuMeter:
    method: CpuMethod = "estimate"
    whole_machine = False
    #: poll() reads only this often; before that it returns at once.
    poll_period_s = POLL_PERIOD_S

    def __init__(
        self,
        watts_per_core: float | None = None,
        *,
        powercap_root: Path = DEFAULT_POWERCAP_ROOT,
        cpuinfo: Path = CPUINFO,
        cores: int | None = None,
        proc: Path = PROC,
    ) -> None:
        if watts_per_core is not None:
            self.assumed = WattsPerCore(watts_per_core, "caller", f"{watts_per_core:g} W given")
        else:
            self.assumed = resolve_watts_per_core(
                powercap_root=powercap_root, cpuinfo=cpuinfo, cores=cores
            )
        self.watts_per_core = self.assumed.watts
        self.device = "estimate from the foreground process tree's CPU time"
        self._proc = proc
        self._leader: _Member | None = None
        self._members: list[_Member] = []
        self._baseline = 0.0
        self._cpu_s = 0.0
        #: Monotonic time of the last poll that read: the next one is due
        #: poll_period_s after it (a Measurement skips the call until then).
        self.last_poll_at = 0.0
        self._last_tree = 0.0
        self._tree_every = TREE_REFRESH_FIRST_S
        self.updated_at: float | None = None

    def start(self, foreground_pid: int | None) -> None:
        self._close_members()
        self._cpu_s = 0.0
        self._baseline = 0.0
        self._leader = None
        self.updated_at = None
        self._tree_every = TREE_REFRESH_FIRST_S
        if foreground_pid is None:
            return
        try:
            leader = _Member(foreground_pid, proc=self._proc)
        except OSError:
            pass  # no such process (any more): no estimate
        else:
            try:
                # Time the leader spent before the run started is not the run's.
                self._baseline = leader.cpu_seconds()
                self._leader = leader
                self._members = [leader]
            except OSError:
                leader.close()
        self._refresh_tree(time.monotonic())
        self._sum()

    def _refresh_tree(self, now: float) -> None:
        self._last_tree = now
        leader = self._leader
        if leader is None:
            return
        # Members already open stay open; the new ones are opened, the gone closed.
        kept = {(m.pid, m.start): m for m in self._members if m is not leader}
        members = [leader]
        try:
            found = _descendants(leader, self._proc)
        except OSError:
            found = []  # /proc unreadable: the leader alone, as before
        for pid, start in found:
            member = kept.pop((pid, start), None)
            if member is None:
                try:
                    member = _Member(pid, start, self._proc)
                except OSError:
                    continue  # exited since the pass
            members.append(member)
        for gone in kept.values():
            gone.close()
        self._members = members

    def _sum(self) -> None:
        total = 0.0
        for p in self._members:
            try:
                total += p.cpu_seconds()
            except (OSError, ValueError, IndexError):
                continue  # exited: its time is now in its parent's children_* (if reaped)
        # Monotone: between a member's exit and its reaping its time is nowhere.
        self._cpu_s = max(self._cpu_s, total - self._baseline)
        self.updated_at = time.monotonic()

    def _close_members(self) -> None:
        for member in self._members:
            member.close()
        if self._leader is not None:
            self._leader.close()
        self._members = []

    def poll(self) -> None:
        now = time.monotonic()
        if now - self.last_poll_at < POLL_PERIOD_S:
            return
        self.last_poll_at = now
        if now - self._last_tree >= self._tree_every:
            self._refresh_tree(now)
            self._tree_every = min(2 * self._tree_every, TREE_REFRESH_MAX_S)
        self._sum()

    def running_j(self) -> float | None:
        """The package figure so far, without building a reading (the live line)."""
        return None if self._leader is None else self._cpu_s * self.watts_per_core

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
                f"estimate: {self.watts_per_core:.3g} W per busy core x "
                f"{self._cpu_s:.1f} CPU-seconds of the foreground process tree (not measured)",
                self.assumed.flag(),
                "foreground only: the background is not included",
                f"CPU time read every {POLL_PERIOD_S:g} s: up to that much before the "
                "foreground's exit can be missed",
            ],
        )

    def stop(self) -> CpuReading:
        try:
            self._refresh_tree(time.monotonic())
            self._sum()
            return self.total()
        finally:
            self._close_members()
