"""The small interfaces every meter implements, real or double.

A GPU meter is read once per sampler tick and returns one :class:`GpuSample`. A CPU
meter keeps its own running total (RAPL and perf are counters; the estimate adds up
CPU time) and is polled on the sampler thread so a counter that wraps is read often
enough to notice.

Every meter states what it is (``device``) and any caveat (``flags``) so that a
double can never be mistaken for a measurement of this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from core.contract import EnergyMethod

#: A CPU meter's method: one of the registry's (``core.contract.METHODS``).
CpuMethod = EnergyMethod


class MeterUnavailable(RuntimeError):
    """A meter cannot be used on this host; the message says why (shown to users)."""


@dataclass(frozen=True, slots=True)
class GpuState:
    """A GPU's settings and clocks at one moment (read once a second): what makes two
    runs comparable or not. ``None`` = the device did not report it."""

    #: The power limit the driver enforces (W).
    power_limit_w: float | None = None
    #: Current clocks (MHz): they move with load, temperature and the limit.
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    #: Application clocks (MHz): a setting (``nvidia-smi -ac``), not a reading.
    app_sm_clock_mhz: float | None = None
    app_mem_clock_mhz: float | None = None
    #: NVML's clocks event ("throttle") reasons, a bitmask (``nvmlClocksEventReason*``).
    event_reasons: int | None = None


# slots: a day at 10 Hz is ~860k of them. Not frozen: a frozen dataclass sets each
# field through object.__setattr__, which made building one the largest part of a
# tick's own bookkeeping (11 us of CPU per sample on the loaded dev box, 2.8 us against
# 0.9 us in a tight loop). Nothing assigns to a sample once it is built.
@dataclass(slots=True)
class GpuSample:
    """One reading of one GPU, read-only by convention. ``None`` = the device did not
    report that quantity."""

    power_w: float | None = None
    #: NVML's total energy counter in millijoules since the driver loaded (Volta+).
    energy_mj: int | None = None
    util_pct: float | None = None
    mem_mib: float | None = None
    temp_c: float | None = None
    #: Per-process SM utilisation samples NVML produced since the previous read:
    #: (pid, sm_util_percent, timestamp_us) triples, the timestamp on the wall clock
    #: (microseconds since the epoch) at the end of the interval the sample covers;
    #: None when NVML does not report them.
    proc_util: tuple[tuple[int, float, int], ...] | None = None
    #: Quantities this read could not get: (quantity, why). The rest of the sample
    #: stands; the report counts them.
    errors: tuple[tuple[str, str], ...] = ()
    #: Settings and clocks, on the reads that asked for them (about once a second).
    state: GpuState | None = None


class GpuMeter(Protocol):
    index: int
    #: What was measured, e.g. "GPU 0: NVIDIA A100 (GPU-1234...)" or
    #: "replay of recorded RTX 3080 trace (not this machine)".
    device: str
    #: NVML's UUID ("GPU-..."): what the training is pinned to; None for a double.
    uuid: str | None
    has_energy_counter: bool
    flags: list[str]

    def read(self) -> GpuSample: ...

    def close(self) -> None: ...


@dataclass
class CpuReading:
    """Energy since :meth:`CpuMeter.start`, in joules; None = zone not measured."""

    package_j: float | None
    dram_j: float | None
    flags: list[str] = field(default_factory=list)


class CpuMeter(Protocol):
    method: CpuMethod
    device: str
    #: True when the meter sees the whole machine (RAPL, perf), background included.
    whole_machine: bool
    #: Monotonic time of the reading that :meth:`total` reflects; None while the
    #: meter has no running figure (perf reports at the end). The power plotted over
    #: time is the change of the total between two such readings.
    updated_at: float | None

    def start(self, foreground_pid: int | None) -> None: ...

    def poll(self) -> None:
        """Called on the sampler thread; cheap; keeps counters from wrapping unseen."""
        ...

    def total(self) -> CpuReading:
        """Energy so far (thread-safe enough: called from the sampler thread only)."""
        ...

    def stop(self) -> CpuReading: ...


#: Optional on a CPU meter: ``poll_period_s`` and ``last_poll_at`` (monotonic), when
#: :meth:`CpuMeter.poll` does nothing until ``poll_period_s`` after ``last_poll_at``:
#: the sampler then skips the call until it is due.
#:
#: Optional on a CPU meter: ``running_j() -> float | None``, the package + DRAM joules
#: that :meth:`CpuMeter.total` would give (None where it gives no package figure),
#: without building the reading and its flags. The live power line asks for it at
#: every fresh reading (every tick for RAPL); a meter without it is asked total().
