"""What else ran on the host during a window, for a host-wide CPU figure.

RAPL (and ``perf stat -a``) measure every package of the host: its idle power, the
background training, and the experiments of the host's other GPU workers (one worker
per GPU). As a normal user RAPL is unreadable (root-only since CVE-2020-8694) and the
CPU figure is an estimate of the foreground alone: the figure means something else
with other privileges. So a host-wide figure says how many other experiments ran on
the host in its window, and the foreground's part of it is estimated beside it by
the foreground process tree's share of the host's busy CPU time (``/proc/stat``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.contract import ENV_MARKER

PROC = Path("/proc")
#: The /proc scan for other experiments' processes reads every process's environment
#: (milliseconds on a busy host): at the window's start, its end and this often between.
HOST_SCAN_S = 30.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_MARKER = ENV_MARKER.encode() + b"="


def other_experiments(ours: str | None, proc: Path = PROC) -> set[str]:
    """Codes of the Wattlab experiments (``WATTLAB_EXPERIMENT`` in a process's
    environment) running on this host now, ours left out. Processes whose environment
    cannot be read (another user's, as a normal user) are not seen."""
    found: set[str] = set()
    mine = (ours or "").encode()
    try:
        names = os.listdir(proc)
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(proc / name / "environ", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        at = raw.find(_MARKER)
        if at < 0 or (at > 0 and raw[at - 1] != 0):
            continue
        end = raw.find(b"\0", at)
        code = raw[at + len(_MARKER) : end if end >= 0 else None]
        if code and code != mine:
            found.add(code.decode(errors="replace"))
    return found


def busy_cpu_seconds(stat: Path = PROC / "stat") -> float | None:
    """CPU-seconds the host's CPUs have been busy since boot (user, nice, system, irq,
    softirq, steal of the ``cpu`` line); None when unreadable."""
    try:
        with open(stat, "rb") as fh:
            line = fh.readline().split()
    except OSError:
        return None
    if not line or line[0] != b"cpu" or len(line) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in line[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


@dataclass
class HostReport:
    others: set[str] = field(default_factory=set)
    busy_cpu_s: float | None = None
    scans: int = 0


class HostWatch:
    """Other experiments seen and the host's busy CPU time over one window."""

    def __init__(self, experiment: str | None, proc: Path = PROC) -> None:
        self.experiment = experiment
        self.proc = proc
        self.report = HostReport()
        self._busy0: float | None = None
        self._last_scan = 0.0

    def _scan(self) -> None:
        self.report.others |= other_experiments(self.experiment, self.proc)
        self.report.scans += 1
        self._last_scan = time.monotonic()

    def start(self) -> None:
        self._busy0 = busy_cpu_seconds(self.proc / "stat")
        self._scan()

    def poll(self) -> None:
        """Cheap unless a scan is due (sampler thread)."""
        if time.monotonic() - self._last_scan >= HOST_SCAN_S:
            self._scan()

    def stop(self) -> HostReport:
        self._scan()
        busy1 = busy_cpu_seconds(self.proc / "stat")
        if self._busy0 is not None and busy1 is not None:
            self.report.busy_cpu_s = max(0.0, busy1 - self._busy0)
        return self.report
