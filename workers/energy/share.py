"""The foreground's share of one GPU's energy, from NVML's per-process samples.

A per-process sample (pid, SM utilisation %, stamp) describes that process over the
driver's sample period ending at its own stamp (:data:`PROC_SAMPLE_PERIOD_S`); a
driver returns each process's newest sample, so one read is a snapshot, each process
at its own moment. The sampler's ticks (their energy split into the part above the
idle baseline and the idle part) are attributed by the samples that overlap them:

- the part of a tick that samples cover: the energy above idle by the foreground's
  share of the covered utilisation; the idle energy by :data:`IDLE_RULE`;
- the part no sample covers is nobody's zero: at the end it gets the average shares of
  the covered parts, and the report says how long that was.

A process absent from a read only covers nothing; it is never a share of 0 for the
whole interval between reads. Ticks wait :data:`SETTLE_S` (on the samples' own clock)
for samples that come late.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

#: The driver's per-process sample period: what one sample covers, before its stamp.
#: nvidia-smi documents its utilisation sample period as between 1 s and 1/6 s; the
#: shorter one is taken, so a sample never stands for time it did not see.
PROC_SAMPLE_PERIOD_S = 1 / 6
#: A tick is attributed once samples up to this much later have been read.
SETTLE_S = 5.0

SHARE_POLICY = (
    "estimate, not a measurement: the GPU energy above the idle baseline is split by "
    "the foreground's share of per-process SM utilisation (NVML), each sample applied "
    "to the period it covers"
)
IDLE_RULE = (
    "idle rule: the idle baseline's energy goes wholly to the foreground while only it "
    "is active on the GPU, half while it and other processes are, none while only "
    "others are or nothing is"
)

#: Whose a process on the GPU is: the foreground's group, another group of the same
#: experiment (its background), or none of the experiment's.
Owner = Literal["foreground", "experiment", "other"]


@dataclass
class ShareResult:
    """One GPU's split, for the report."""

    fg_j: float
    ticks_j: float
    covered_s: float
    uncovered_s: float
    proc_samples: int
    late_samples: int
    #: pid -> (owner, SM-seconds: utilisation x the period each sample covers)
    processes: dict[int, tuple[Owner, float]] = field(default_factory=dict)

    @property
    def sm_seconds(self) -> float:
        return sum(sm for _owner, sm in self.processes.values())


class GpuShare:
    """Ticks and per-process samples of one GPU in; the foreground's joules out."""

    def __init__(
        self,
        idle_w: float,
        classify: Callable[[int], Owner],
        period_s: float = PROC_SAMPLE_PERIOD_S,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.idle_w = idle_w
        self.classify = classify
        self.period_s = period_s
        self.settle_s = settle_s
        #: (start, end, energy above idle, idle energy), wall clock, in order
        self._ticks: collections.deque[tuple[float, float, float, float]] = collections.deque()
        #: samples ordered by their end: ends, and (start, end, util, is foreground)
        self._ends: list[float] = []
        self._samples: list[tuple[float, float, float, bool]] = []
        self._settled_until = float("-inf")
        self.fg_j = 0.0
        self.ticks_j = 0.0
        self._cov_above = self._cov_fg_above = self._cov_idle = self._cov_fg_idle = 0.0
        self._unc_above = self._unc_idle = 0.0
        self.covered_s = self.uncovered_s = 0.0
        self.proc_samples = 0
        self.late_samples = 0
        self.processes: dict[int, tuple[Owner, float]] = {}

    def add_tick(self, end: float, span: float, energy_j: float) -> None:
        """A tick of ``span`` seconds ending at ``end`` (wall clock) that took ``energy_j``."""
        idle_j = min(energy_j, self.idle_w * span) if energy_j > 0 else 0.0
        self.ticks_j += energy_j
        self._ticks.append((end - span, end, energy_j - idle_j, idle_j))

    def add_samples(self, batch: tuple[tuple[int, float, int], ...]) -> None:
        """(pid, SM %, stamp in µs on the wall clock) as NVML returned them."""
        for pid, util, stamp in batch:
            owner = self.classify(pid)
            end = stamp / 1_000_000
            start = end - self.period_s
            self.proc_samples += 1
            _known, sm = self.processes.get(pid, (owner, 0.0))
            self.processes[pid] = (owner, sm + util / 100.0 * self.period_s)
            if end <= self._settled_until:
                self.late_samples += 1  # its ticks are already attributed
                continue
            i = bisect.bisect_right(self._ends, end)
            self._ends.insert(i, end)
            self._samples.insert(i, (start, end, util, owner == "foreground"))

    def settle(self, now: float) -> None:
        """Attribute the ticks that ended ``settle_s`` before ``now`` (wall clock, the
        stamp of the latest reading: not the time of this call)."""
        self._settle_until(now - self.settle_s)

    def _settle_until(self, until: float) -> None:
        ticks = self._ticks
        while ticks and ticks[0][1] <= until:
            tick = ticks.popleft()
            self._attribute(*tick)
            self._settled_until = tick[1]
        # A sample that ends before the next tick starts can cover nothing more.
        horizon = ticks[0][0] if ticks else self._settled_until
        drop = bisect.bisect_right(self._ends, horizon)
        if drop:
            del self._ends[:drop]
            del self._samples[:drop]

    def _attribute(self, start: float, end: float, above_j: float, idle_j: float) -> None:
        span = end - start
        if span <= 0:
            return
        fg_w = other_w = 0.0
        covered: list[tuple[float, float]] = []
        samples = self._samples
        for i in range(bisect.bisect_right(self._ends, start), len(samples)):
            s_start, s_end, util, is_fg = samples[i]
            if s_start >= end:
                break  # every later sample starts later still (one period for all)
            lo, hi = max(start, s_start), min(end, s_end)
            if hi <= lo:
                continue
            covered.append((lo, hi))
            if is_fg:
                fg_w += util * (hi - lo)
            else:
                other_w += util * (hi - lo)
        length = _union_length(covered)
        fraction = min(1.0, length / span)
        if fraction > 0:
            total = fg_w + other_w
            above_share = fg_w / total if total > 0 else 0.0
            idle_share = (1.0 if other_w <= 0 else 0.5) if fg_w > 0 else 0.0
            cov_above, cov_idle = above_j * fraction, idle_j * fraction
            self.fg_j += cov_above * above_share + cov_idle * idle_share
            self._cov_above += cov_above
            self._cov_fg_above += cov_above * above_share
            self._cov_idle += cov_idle
            self._cov_fg_idle += cov_idle * idle_share
            self.covered_s += span * fraction
        self._unc_above += above_j * (1 - fraction)
        self._unc_idle += idle_j * (1 - fraction)
        self.uncovered_s += span * (1 - fraction)

    def finish(self) -> ShareResult:
        """Every tick attributed; the uncovered parts at the covered parts' average."""
        self._settle_until(float("inf"))
        fg_j = self.fg_j
        if self.covered_s > 0:
            if self._cov_above > 0:
                fg_j += self._unc_above * self._cov_fg_above / self._cov_above
            if self._cov_idle > 0:
                fg_j += self._unc_idle * self._cov_fg_idle / self._cov_idle
        return ShareResult(
            fg_j=fg_j,
            ticks_j=self.ticks_j,
            covered_s=self.covered_s,
            uncovered_s=self.uncovered_s,
            proc_samples=self.proc_samples,
            late_samples=self.late_samples,
            processes=dict(self.processes),
        )


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total = 0.0
    end = float("-inf")
    for lo, hi in sorted(intervals):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total
