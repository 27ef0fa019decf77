"""One measured foreground run: its own group, its log, its timeout, cancel within a second."""

from __future__ import annotations

import datetime as dt
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from core.contract import InfrastructureError, ProgramSpec, Role, RunStatus
from core.metrics import extract_metrics_report, succeeded
from workers.procgroup import ProcessGroup, StopReport

#: How often the run checks cancel and timeout (and calls ``on_tick``): a cancel is
#: honoured within this plus the stop itself, well inside the one second promised.
POLL_S: Final = 0.25

#: Start failures that are the workload's fault (wrong path, not executable, bad
#: working directory): retrying cannot help. Anything else (no memory, no processes,
#: disk full) is the host's, and is retried as an :class:`InfrastructureError`.
_PROGRAM_ERRNOS: Final = {errno.ENOENT, errno.EACCES, errno.ENOTDIR, errno.ENOEXEC, errno.EISDIR}


class ProgramError(RuntimeError):
    """The workload's program could not be started (not retried)."""


@dataclass
class ForegroundResult:
    status: RunStatus
    started_at: dt.datetime
    ended_at: dt.datetime
    duration_s: float
    exit_code: int | None
    log_path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    #: metric name -> why its pattern gave no number (kept so nothing drops silently)
    metric_problems: dict[str, str] = field(default_factory=dict)
    stop: StopReport | None = None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def start_program(program: ProgramSpec, *, marker: str, log_path: Path, role: Role) -> ProcessGroup:
    """Start ``program`` in its own group; sort start failures into program vs host."""
    try:
        return ProcessGroup.start(
            program.argv,
            cwd=program.workdir or None,
            env=program.env,
            marker=marker,
            role=role,
            log_path=log_path,
            user=program.user,
        )
    except OSError as exc:
        if exc.errno in _PROGRAM_ERRNOS:
            raise ProgramError(
                f"cannot start {program.argv[0]!r} in {program.workdir!r}: {exc.strerror}"
            ) from exc
        raise InfrastructureError(f"cannot start {program.argv[0]!r}: {exc}") from exc


def run_foreground(
    program: ProgramSpec,
    *,
    marker: str,
    log_path: Path,
    timeout: float,
    grace: float,
    cancel_requested: Callable[[], bool],
    metric_patterns: dict[str, str] | None = None,
    success_pattern: str | None = None,
    on_started: Callable[[ProcessGroup], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    on_exited: Callable[[], None] | None = None,
    poll_s: float = POLL_S,
) -> ForegroundResult:
    """Run ``program`` to its end, its timeout or a cancel; no process of it is left after.

    ``on_started`` gets the group right after it started (start the energy measurement
    there); if it raises, the group is stopped and the error propagates. ``on_exited``
    is called the moment the run's window ends (stop the measurement there): when the
    leader exits, or for a timeout / cancel once the stopped group is gone; never after
    the sweep of leftovers or the log parsing, which are not the training's time.
    """
    started_at = utc_now()
    began = time.monotonic()
    group = start_program(program, marker=marker, log_path=log_path, role="foreground")
    status: RunStatus | None = None
    ended: float | None = None
    try:
        if on_started is not None:
            on_started(group)
        while not group.wait_exit(poll_s):
            if time.monotonic() - began >= timeout:
                status = "timeout"
                break
            if cancel_requested():
                status = "cancelled"
                break
            if on_tick is not None:
                on_tick()
        if status is None:
            # The training has ended: so does its window. What follows (leftovers
            # swept for up to a grace period, the log parsed) is idle time.
            ended = time.monotonic()
            if on_exited is not None:
                on_exited()
    except BaseException:
        group.stop(grace)  # no ticks here: they could replace the error on its way out
        raise
    # Stops it on timeout / cancel, and sweeps what a finished run left; the ticks
    # (heartbeat) go on while a stop waits out its grace.
    report = group.stop(grace, on_wait=on_tick)
    if ended is None:
        # Timeout / cancel: the training ran until the stop ended it.
        ended = time.monotonic()
        if on_exited is not None:
            on_exited()
    duration = ended - began
    ended_at = started_at + dt.timedelta(seconds=duration)
    exit_code = report.exit_code
    if status is None and exit_code is not None and exit_code < 0 and cancel_requested():
        # Killed by a signal while a stop was asked for: the stop ended it (a Slurm
        # job's end signals every process of the job at once, the training too).
        status = "cancelled"
    if status is not None or report.how != "exited":
        with log_path.open("a", encoding="utf-8") as log:
            if status is not None:
                log.write(
                    f"\n# wattlab: {status} after {duration:.1f} s; "
                    f"stopped by {report.how}, exit code {exit_code}\n"
                )
            else:
                log.write(
                    f"\n# wattlab: processes the training left behind were stopped by "
                    f"{report.how} after its window ended ({report.seconds:.1f} s)\n"
                )
    text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    metrics = extract_metrics_report(text, metric_patterns or {})
    if status is None:
        status = "succeeded" if succeeded(text, exit_code, success_pattern) else "failed"
    return ForegroundResult(
        status=status,
        started_at=started_at,
        ended_at=ended_at,
        duration_s=duration,
        exit_code=exit_code,
        log_path=log_path,
        metrics=metrics.values,
        metric_problems=metrics.problems,
        stop=report,
    )
