"""What the engine needs from the outside, and what it reports back.

The engine (everything in ``workers/`` but ``tasks.py``) imports no Django. ``tasks.py``
turns database rows into an :class:`ExperimentPlan` and hands the runner an object
that satisfies :class:`ExperimentStore`; the runner reports everything through it.

Times: wall-clock instants are timezone-aware UTC ``datetime`` objects taken on this
host's clock (coverage compares only times from one host); durations come from
``time.monotonic`` so a clock step never bends them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

#: How a foreground run ended, as the engine reports it. The app's ``Run.Status`` is
#: these plus the two states of a row before it ends (tests/web/test_statuses.py).
RunStatus = Literal["succeeded", "failed", "timeout", "cancelled", "error"]
Role = Literal["foreground", "background"]

# ---- The energy methods: one registry ------------------------------------------------
#
# Every figure names the method that produced it. This table is the one list of them:
# the model's choices, the pages' labels and the CPU meter fallback chain all read it.
# Adding a CPU meter = its module + one entry here (``cpu_meter``, in preference order).

EnergyMethod = Literal["counter", "integrated", "rapl", "perf", "estimate", "unavailable"]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    #: What the method is, for people (the model's choice label, tooltips).
    label: str
    #: A few characters beside a number on a page.
    short: str
    #: "module:Class" of the CPU meter producing this method; CPU meters are tried in
    #: the order of this table. "" = no CPU meter (GPU methods, the share, legacy).
    cpu_meter: str = ""
    #: How often a CPU meter is read: "sampler" (every tick), "poll" (its own poll
    #: period), "end" (one reading when the run ends).
    cpu_sampling: Literal["sampler", "poll", "end"] = "end"
    #: The CPU meter also measures DRAM.
    covers_dram: bool = True
    #: Produced by the engine (in ``EnergyMethod``); False for imported history.
    engine: bool = True
    #: The smallest step of the figure in joules, as the meter reads it (NVML's
    #: counter: mJ; powercap's energy_uj: µJ; perf stat prints joules to 0.01). Values
    #: go out at this step, without the float noise of sums and differences; where
    #: the method has no step of its own (an integral, an estimate), 1 µJ.
    resolution_j: float = 1e-6


METHODS: tuple[MethodInfo, ...] = (
    MethodInfo("counter", "NVML energy counter", "counter", resolution_j=1e-3),
    MethodInfo("integrated", "integrated power samples (trapezoid)", "integrated"),
    MethodInfo(
        "rapl",
        "RAPL powercap counter",
        "RAPL",
        cpu_meter="workers.energy.rapl:RaplCpuMeter",
        cpu_sampling="sampler",
    ),
    MethodInfo(
        "perf",
        "perf stat (RAPL events)",
        "perf",
        cpu_meter="workers.energy.perf:PerfCpuMeter",
        resolution_j=1e-2,
    ),
    MethodInfo(
        "estimate",
        "estimate, not a measurement (its flags say how)",
        "estimate",
        cpu_meter="workers.energy.estimate:EstimateCpuMeter",
        cpu_sampling="poll",
        covers_dram=False,
    ),
    MethodInfo("unavailable", "not measured", "n/a"),
    MethodInfo(
        "legacy_power_sum", "earlier profiler: 1 s power sum", "legacy 1 s sum", engine=False
    ),
    MethodInfo(
        "legacy_machine_rapl",
        "earlier profiler: whole-machine RAPL",
        "legacy machine RAPL",
        engine=False,
    ),
)
METHOD_INFO: dict[str, MethodInfo] = {m.name: m for m in METHODS}
CPU_METHODS: tuple[MethodInfo, ...] = tuple(m for m in METHODS if m.cpu_meter)

# mypy needs the engine's methods as a Literal; this keeps it and the table one list.
if set(get_args(EnergyMethod)) != {m.name for m in METHODS if m.engine}:  # pragma: no cover
    raise ImportError("EnergyMethod and METHODS disagree: edit them together")

#: Every process the engine starts carries this variable (value: the experiment
#: code), so a leftover can be found by its environment even after its pgid is gone.
ENV_MARKER = "WATTLAB_EXPERIMENT"
ENV_ROLE = "WATTLAB_ROLE"
#: A token unique to each started group, inherited by its descendants: finds what
#: escaped one group without touching the experiment's other groups.
ENV_GROUP = "WATTLAB_GROUP"


class InfrastructureError(RuntimeError):
    """A failure of the host, not of the training (retried up to max_retries)."""


class StoreUnavailable(RuntimeError):
    """The store could not be reached (the database is down or restarting). The write
    did not happen and may be tried again later; see ``workers.buffered_store``."""


def error_line(exc: BaseException) -> str:
    """The first line of an error: logs keep one line per failure, not a traceback."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@dataclass(frozen=True)
class ProgramSpec:
    """A program to start: an argv list (never a shell string)."""

    argv: list[str]
    workdir: str
    env: dict[str, str] = field(default_factory=dict)
    #: The account it runs as (``WATTLAB_TRAINING_USER``); None: the worker's own.
    user: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """One foreground run: ``hyperparameters`` are the values exactly as passed in argv."""

    config_index: int
    repeat_index: int
    hyperparameters: dict[str, Any]
    program: ProgramSpec


@dataclass(frozen=True)
class BackgroundPlan:
    program: ProgramSpec
    restart_delay: float = 2.0
    startup_wait: float = 5.0
    between_runs: Literal["keep", "stop"] = "keep"
    #: a run shorter than this ends "quickly"; ``crash_runs`` quick runs in a row are a
    #: crash loop (the background loop backs off and reports it).
    crash_threshold_s: float = 5.0
    crash_runs: int = 3


@dataclass(frozen=True)
class SensorPeriods:
    """How often a GPU's sensors update, observed by its worker at start (seconds;
    None: never changed while watched)."""

    counter_s: float | None
    power_s: float | None
    observed_s: float = 0.0
    reads: int = 0

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "counter_s": self.counter_s,
            "power_s": self.power_s,
            "observed_s": self.observed_s,
            "reads": self.reads,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensorPeriods:
        def seconds(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            counter_s=seconds("counter_s"),
            power_s=seconds("power_s"),
            observed_s=float(data.get("observed_s") or 0.0),
            reads=int(data.get("reads") or 0),
        )


@dataclass(frozen=True)
class ExperimentPlan:
    code: str
    runs: list[RunPlan]
    artifacts_dir: str
    metric_patterns: dict[str, str] = field(default_factory=dict)
    success_pattern: str | None = None
    sleep_between_runs: float = 60.0
    timeout: float = 3600.0
    max_retries: int = 0
    background: BackgroundPlan | None = None
    gpu_indices: list[int] = field(default_factory=list)
    sample_hz: float = 10.0
    #: Seconds of GPU power read before the experiment starts anything: the idle
    #: baseline of the foreground share (0: none, so no share).
    idle_probe_s: float = 2.0
    grace: float = 10.0
    heartbeat_interval: float = 5.0
    #: Seconds the worker gives the whole experiment (None: no limit). Past it the
    #: runner stops everything as a cancel would and the experiment ends in error. The
    #: runner checks it in its own poll loops: Celery's soft time limit raises an
    #: exception asynchronously, wherever the task happens to be (inside a database
    #: write, say), so it is kept only as a backstop a little later.
    max_seconds: float | None = None
    #: GPU index -> its sensors' update periods as the worker observed them at start.
    sensor_periods: dict[int, SensorPeriods] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupInfo:
    """A process group the engine started (pids are reused: keep the start time)."""

    role: Role
    pgid: int
    leader_pid: int
    leader_create_time: float
    config_index: int | None = None
    repeat_index: int | None = None
    attempt: int | None = None


@dataclass(frozen=True)
class RunKey:
    config_index: int
    repeat_index: int
    attempt: int


@dataclass
class Figure:
    """One measured quantity with its provenance. ``value`` None = could not measure."""

    value: float | None
    method: EnergyMethod
    unit: str = "J"
    device: str = ""
    sampling_period_s: float | None = None
    flags: list[str] = field(default_factory=list)


@dataclass
class EnergyReport:
    gpu: Figure
    cpu: Figure
    dram: Figure
    #: The foreground's part of the GPU figure: always method "estimate" (a split by
    #: per-process utilisation, its policy in the flags) or "unavailable" with the reason.
    gpu_foreground: Figure = field(default_factory=lambda: Figure(None, "unavailable"))
    #: The foreground's part of the CPU figure: where the CPU figure is host-wide (RAPL,
    #: perf) an estimate by the foreground's share of the host's busy CPU time; where it
    #: is the foreground's own estimate, that estimate. Never a measurement.
    cpu_foreground: Figure = field(default_factory=lambda: Figure(None, "unavailable"))
    #: The GPUs' settings and clocks during the window (power limit, clocks, clock event
    #: reasons, sensor periods), the changes seen, and ``settings_key``: a short stable
    #: text naming the settings two comparable runs share.
    device_state: dict[str, Any] = field(default_factory=dict)
    #: UUIDs of the metered GPUs (NVML), comma-separated like CUDA_VISIBLE_DEVICES;
    #: "" when no real GPU was metered (none, or a double).
    gpu_uuid: str = ""
    summaries: dict[str, float | None] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


@dataclass
class CoverageReport:
    """Produced by ``core.coverage`` (pure interval maths)."""

    percent: float
    covered_s: float
    window_s: float
    longest_gap_s: float
    background_runs: int
    #: a value of ``core.coverage.VERDICTS``
    verdict: str
    advice: str = ""
    gaps: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class RunResult:
    key: RunKey
    status: RunStatus
    started_at: dt.datetime
    ended_at: dt.datetime
    duration_s: float
    exit_code: int | None
    log_path: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    energy: EnergyReport
    coverage: CoverageReport | None
    trace: bytes
    error: str = ""


@dataclass
class BackgroundRunRecord:
    index: int
    started_at: dt.datetime
    log_path: str
    ended_at: dt.datetime | None = None
    exit_code: int | None = None
    stopped: bool = False


class ExperimentStore(Protocol):
    """Where the runner reports. Calls come from the runner's thread only."""

    def heartbeat(self) -> None: ...

    def cancel_requested(self) -> bool: ...

    def group_started(self, group: GroupInfo) -> None: ...

    def group_ended(self, group: GroupInfo, reason: str) -> None: ...

    def run_started(
        self, key: RunKey, hyperparameters: dict[str, Any], started_at: dt.datetime
    ) -> None: ...

    def run_samples(self, key: RunKey, trace: bytes) -> None:
        """The trace so far, while the run goes on (for the live power chart)."""
        ...

    def run_finished(self, result: RunResult) -> None: ...

    def background_run_started(self, record: BackgroundRunRecord) -> None: ...

    def background_run_finished(self, record: BackgroundRunRecord) -> None: ...

    def event(self, kind: str, message: str) -> None:
        """Something the experiment should report (crash loop, retry, ...)."""
        ...

    def experiment_ended(self, status: str, message: str) -> None:
        """How the experiment ended, decided by the runner alone (the last call)."""
        ...
