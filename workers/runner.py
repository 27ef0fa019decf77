"""One experiment on this host, reporting only through an :class:`ExperimentStore`.

    outcome = run_experiment(plan, store)          # meters opened and closed here
    outcome = run_experiment(plan, store, meters=m)  # or injected (caller closes them)

Parallel mode: start the background loop (``python -m workers.background``) as its own
process group, wait the startup wait, then every run in ``plan.runs`` in order, with
``sleep_between_runs`` between them (the background keeps running, or is stopped and
restarted when ``between_runs == "stop"``). Background runs are read from the loop's
intervals file while they happen and reported to the store. Only
:class:`InfrastructureError` is retried. Whatever happens (cancel, failure, an
exception), the background group is stopped, every process carrying the experiment's
marker is gone, and the temporary directory is removed before this returns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from core.contract import (
    BackgroundRunRecord,
    CoverageReport,
    EnergyReport,
    ExperimentPlan,
    ExperimentStore,
    Figure,
    GroupInfo,
    InfrastructureError,
    Role,
    RunKey,
    RunPlan,
    RunResult,
)
from core.coverage import compute_coverage
from core.runlabel import label_of, run_label
from workers.energy.session import Measurement, MeterSet, open_meters
from workers.foreground import ProgramError, run_foreground, start_program, utc_now
from workers.procgroup import ProcessGroup, sweep_marked

#: The repository root: ``python -m workers.background`` must find the package without
#: touching PYTHONPATH (which would leak into the training's own imports).
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
POLL_S: Final = 0.25
SAMPLES_EVERY_S: Final = 2.0
#: The loop needs its own grace to stop its training, then a moment to record the
#: stopped run; only past that do we SIGKILL it.
LOOP_MARGIN_S: Final = 2.0

OutcomeStatus = Literal["succeeded", "failed", "cancelled", "error"]


@dataclass
class ExperimentOutcome:
    """How the experiment ended. ``message`` says why when it is not "succeeded"."""

    status: OutcomeStatus
    message: str = ""
    results: list[RunResult] = field(default_factory=list)


class Cancelled(Exception):
    """The store asked for a cancel; unwinds to the cleanup."""


class StopRequest:
    """Asks a running experiment to stop from outside its store, with a reason: a
    signal handler sets it (the Slurm job's time limit is near, or Slurm ends the job).
    The runner reads it in the same poll loops as a cancel and stops the same way;
    the experiment ends in error with ``reason``. Setting it only sets an Event, so it
    is safe from a signal handler."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class _Aborted(Exception):
    """Retries exhausted on an infrastructure error."""


class _Unpinnable(Exception):
    """A GPU of the plan the training cannot be pinned to: it would run wherever CUDA
    puts it (another worker's metered GPU, say), so nothing starts."""


def unavailable_energy(reason: str) -> EnergyReport:
    """For a run that never got measured: "could not measure", never 0 J."""
    return EnergyReport(
        gpu=Figure(None, "unavailable"),
        cpu=Figure(None, "unavailable"),
        dram=Figure(None, "unavailable"),
        flags=[reason],
    )


class _Background:
    """The background loop group and the runs it reported in its intervals file."""

    def __init__(self, runner: _ExperimentRun) -> None:
        self.runner = runner
        plan = runner.plan
        assert plan.background is not None
        self.bplan = plan.background
        self.intervals = runner.tmpdir / "intervals.jsonl"
        self.log_dir = Path(plan.artifacts_dir) / "background"
        self.group: ProcessGroup | None = None
        self.info: GroupInfo | None = None
        self.records: dict[int, BackgroundRunRecord] = {}
        self._offset = 0
        self._partial = b""
        self._next_run = 1

    def start(self) -> None:
        plan, bp = self.runner.plan, self.bplan
        argv = [
            sys.executable, "-m", "workers.background",
            "--intervals", str(self.intervals),
            "--log-dir", str(self.log_dir),
            "--restart-delay", repr(bp.restart_delay),
            "--grace", repr(plan.grace),
            "--crash-threshold", repr(bp.crash_threshold_s),
            "--crash-runs", str(bp.crash_runs),
            "--first-run", str(self._next_run),
            "--marker", plan.code,
        ]  # fmt: skip
        if bp.program.workdir:
            argv += ["--workdir", bp.program.workdir]
        if bp.program.user:
            # The loop stays the worker's (it writes the intervals file and the logs);
            # the trainings it starts run as the training user.
            argv += ["--user", bp.program.user]
        argv += ["--", *bp.program.argv]
        loop_program = dataclasses.replace(
            bp.program,
            argv=argv,
            workdir=str(REPO_ROOT),
            env=self.runner.pinned(bp.program.env),
            user=None,
        )
        self.group = start_program(
            loop_program,
            marker=plan.code,
            log_path=self.log_dir / "loop.log",
            role="background",
        )
        self.info = GroupInfo(
            role="background",
            pgid=self.group.pgid,
            leader_pid=self.group.pid,
            leader_create_time=self.group.identity.leader_create_time,
        )
        self.runner.store.group_started(self.info)

    def poll(self) -> None:
        """Report what the loop appended since the last call; notice a dead loop."""
        try:
            with self.intervals.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        self._offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                self.runner.store.event(
                    "background_intervals", f"unreadable line in the intervals file: {line!r}"
                )
                continue
            self._handle(event)
        if self.group is not None and self.group.leader_exited():
            report = self.group.stop(self.runner.plan.grace, on_wait=self.runner.beat)
            self.runner.store.event(
                "background_exited",
                f"the background loop ended by itself (exit code {report.exit_code})",
            )
            self._ended("exited")

    def _handle(self, event: dict[str, Any]) -> None:
        store = self.runner.store
        kind = event.get("event")
        if kind == "start":
            record = BackgroundRunRecord(
                index=int(event["run"]),
                started_at=dt.datetime.fromisoformat(event["at"]),
                log_path=str(event["log"]),
            )
            self.records[record.index] = record
            self._next_run = max(self._next_run, record.index + 1)
            store.background_run_started(dataclasses.replace(record))
        elif kind == "end":
            index = int(event["run"])
            known = self.records.get(index)
            if known is None:  # pragma: no cover - the loop writes start before end
                return
            record = dataclasses.replace(
                known,
                ended_at=dt.datetime.fromisoformat(event["at"]),
                exit_code=event.get("exit_code"),
                stopped=bool(event.get("stopped")),
            )
            self.records[index] = record
            store.background_run_finished(dataclasses.replace(record))
            if event.get("error"):
                store.event("background_run_error", f"background run {index}: {event['error']}")
        elif kind == "crash_loop":
            store.event(
                "background_crash_loop",
                f"{event['consecutive_quick_runs']} background runs in a row failed within "
                f"{self.bplan.crash_threshold_s:g} s; next start in {event['backoff_s']:g} s",
            )

    def terminate(self) -> None:
        """Start stopping the loop now (SIGTERM), to be finished by :meth:`stop`."""
        if self.group is not None:
            self.group.terminate()

    def stop(self, reason: str) -> None:
        if self.group is None:
            return
        self.group.stop(self.runner.plan.grace + LOOP_MARGIN_S, on_wait=self.runner.beat)
        self._ended(reason)

    def _ended(self, reason: str) -> None:
        # The loop stops its training itself; if it died or had to be killed first,
        # its training lives on in its own session: with the loop gone, every
        # background process of this experiment is a leftover.
        self.runner.sweep("background")
        self.poll_file_only()
        # A loop killed before it could write its last line leaves a run open: close it
        # here so no background run stays "running" for ever.
        now = utc_now()
        for index, record in list(self.records.items()):
            if record.ended_at is None:
                closed = dataclasses.replace(record, ended_at=now, stopped=True)
                self.records[index] = closed
                self.runner.store.background_run_finished(dataclasses.replace(closed))
        if self.info is not None:
            self.runner.store.group_ended(self.info, reason)
        self.group = None
        self.info = None

    def poll_file_only(self) -> None:
        group, self.group = self.group, None
        try:
            self.poll()
        finally:
            self.group = group

    def intervals_for_coverage(self) -> list[tuple[float, float | None]]:
        return [
            (r.started_at.timestamp(), None if r.ended_at is None else r.ended_at.timestamp())
            for r in self.records.values()
        ]


class _ExperimentRun:
    def __init__(
        self,
        plan: ExperimentPlan,
        store: ExperimentStore,
        meters: MeterSet,
        stop: StopRequest | None = None,
    ) -> None:
        self.plan = plan
        self.store = store
        self.meters = meters
        for index, periods in plan.sensor_periods.items():
            meters.sensor_periods.setdefault(index, periods)
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"wattlab-{plan.code[:40]}-"))
        self.background = _Background(self) if plan.background is not None else None
        self.results: list[RunResult] = []
        self._last_beat = float("-inf")
        self._cleaning_up = False
        self._deadline = None if plan.max_seconds is None else time.monotonic() + plan.max_seconds
        #: Set when the experiment's time limit stopped it (it unwinds as a cancel).
        self.timed_out = False
        #: Set from outside (a signal handler); why it stopped the experiment ("" = it did not).
        self.stop = stop
        self.stopped_because = ""

    def pinned(self, env: dict[str, str]) -> dict[str, str]:
        """A program's environment with the training pinned to the metered GPUs by UUID
        (NVML's index need not be CUDA's, and an inherited CUDA_VISIBLE_DEVICES names
        devices the training must stay within). The pin wins over the workload's own."""
        return {**env, **self.meters.cuda_env()}

    # -- waiting -------------------------------------------------------------------

    def beat(self) -> None:
        """Heartbeat when due. Also called while a stop waits out its grace period, so a
        training that ignores SIGTERM never makes a healthy experiment look lost."""
        if time.monotonic() - self._last_beat < self.plan.heartbeat_interval:
            return
        self._last_beat = time.monotonic()
        try:
            self.store.heartbeat()
        except Exception:
            if not self._cleaning_up:
                raise
            # Cleaning up: the outcome is decided, a failed beat must not change it.

    def tick(self) -> None:
        """Between polls: heartbeat when due, background runs as they happen."""
        self.beat()
        if self.background is not None:
            self.background.poll()

    def cancel_requested(self) -> bool:
        # The time limit is checked here, in every poll loop, so it stops the
        # experiment at a point of the runner's choosing (see ExperimentPlan.max_seconds).
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.timed_out = True
        elif self.store.cancel_requested():
            pass  # a user's cancel says more than the signal that may come with it
        elif self.stop is not None and self.stop.is_set():
            self.stopped_because = self.stop.reason
        else:
            return False
        # Signal the background at once, so its grace runs alongside the foreground's.
        if self.background is not None:
            self.background.terminate()
        return True

    def check_cancel(self) -> None:
        if self.cancel_requested():
            raise Cancelled

    def sleep(self, seconds: float) -> None:
        """Sleep, still beating, reporting background runs and honouring a cancel."""
        deadline = time.monotonic() + seconds
        while True:
            self.tick()
            self.check_cancel()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(POLL_S, left))

    # -- the experiment ------------------------------------------------------------

    def run(self) -> None:
        unpinned = self.meters.unpinned(self.plan.gpu_indices)
        if unpinned:
            raise _Unpinnable(
                f"GPU {', '.join(map(str, unpinned))} of this worker cannot be pinned (NVML "
                "does not list it): a training would run on whichever GPU CUDA picks, "
                "so nothing was started"
            )
        self.tick()
        self.check_cancel()
        if not self.meters.idle_w:
            # The GPUs' idle power, before anything of the experiment runs: the
            # baseline the foreground share is computed above.
            self.meters.probe_idle(self.plan.idle_probe_s, self.plan.sample_hz)
        if self.background is not None:
            assert self.plan.background is not None
            self.background.start()
            self.sleep(self.plan.background.startup_wait)
        for position, run_plan in enumerate(self.plan.runs):
            if position > 0:
                self._between_runs()
            self._run_with_retries(run_plan)

    def _between_runs(self) -> None:
        bplan = self.plan.background
        if self.background is not None and bplan is not None and bplan.between_runs == "stop":
            self.background.stop("between runs")
            self.sleep(self.plan.sleep_between_runs)
            self.background.start()
            self.sleep(bplan.startup_wait)
        else:
            self.sleep(self.plan.sleep_between_runs)

    def _run_with_retries(self, run_plan: RunPlan) -> None:
        attempts = self.plan.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                self._one_run(run_plan, attempt)
                return
            except InfrastructureError as exc:
                if attempt == attempts:
                    raise _Aborted(
                        f"run {run_label(run_plan.config_index, run_plan.repeat_index, attempt)}: "
                        f"{exc} "
                        f"(after {attempts} attempt{'s' if attempts > 1 else ''})"
                    ) from exc
                self.store.event(
                    "retry",
                    f"run {run_label(run_plan.config_index, run_plan.repeat_index, attempt)} "
                    f"failed on the host: {exc}; retrying",
                )

    def _one_run(self, run_plan: RunPlan, attempt: int) -> None:
        plan = self.plan
        key = RunKey(run_plan.config_index, run_plan.repeat_index, attempt)
        log_path = (
            Path(plan.artifacts_dir)
            / "runs"
            / f"c{key.config_index}-r{key.repeat_index}-a{key.attempt}.log"
        )
        started_at = utc_now()
        self.store.run_started(key, dict(run_plan.hyperparameters), started_at)
        measurement = Measurement(
            meters=self.meters,
            hz=plan.sample_hz,
            shared_with_background=self.background is not None,
            experiment=plan.code,
        )
        info: GroupInfo | None = None
        last_samples = time.monotonic()

        def on_started(group: ProcessGroup) -> None:
            nonlocal info
            info = GroupInfo(
                role="foreground",
                pgid=group.pgid,
                leader_pid=group.pid,
                leader_create_time=group.identity.leader_create_time,
                config_index=key.config_index,
                repeat_index=key.repeat_index,
                attempt=key.attempt,
            )
            self.store.group_started(info)
            try:
                measurement.start(foreground_pid=group.pid, foreground_group=group.token)
            except Exception as exc:
                raise InfrastructureError(f"energy measurement did not start: {exc}") from exc

        # The window ends when the foreground does, not after its group is swept and
        # its log parsed (idle time that is not the training's).
        measured: list[tuple[EnergyReport, bytes]] = []

        def on_exited() -> None:
            measured.append(measurement.stop())

        def on_tick() -> None:
            nonlocal last_samples
            self.tick()
            if time.monotonic() - last_samples >= SAMPLES_EVERY_S:
                last_samples = time.monotonic()
                self.store.run_samples(key, measurement.trace_bytes())

        try:
            fg = run_foreground(
                dataclasses.replace(run_plan.program, env=self.pinned(run_plan.program.env)),
                marker=plan.code,
                log_path=log_path,
                timeout=plan.timeout,
                grace=plan.grace,
                cancel_requested=self.cancel_requested,
                metric_patterns=plan.metric_patterns,
                success_pattern=plan.success_pattern,
                on_started=on_started,
                on_tick=on_tick,
                on_exited=on_exited,
            )
        except (InfrastructureError, ProgramError) as exc:
            self._finish_unmeasured(key, run_plan, started_at, log_path, info, measurement, exc)
            if isinstance(exc, InfrastructureError):
                raise
            return
        except BaseException as exc:
            # Anything else (Celery's soft time limit, a store that failed) still ends
            # this run and its group in the record before it propagates; the group
            # itself was already stopped by run_foreground.
            try:
                self._finish_unmeasured(key, run_plan, started_at, log_path, info, measurement, exc)
            except Exception:  # the store may be what failed: keep the first error
                pass
            raise
        energy, trace = measured[0] if measured else measurement.stop()
        for name, problem in fg.metric_problems.items():
            self.store.event("metric_unreadable", f"run {label_of(key)}: {name}: {problem}")
        if info is not None:
            self.store.group_ended(info, fg.status)
        result = RunResult(
            key=key,
            status=fg.status,
            started_at=fg.started_at,
            ended_at=fg.ended_at,
            duration_s=fg.duration_s,
            exit_code=fg.exit_code,
            log_path=str(fg.log_path),
            hyperparameters=dict(run_plan.hyperparameters),
            metrics=fg.metrics,
            energy=energy,
            coverage=self._coverage(fg.started_at, fg.ended_at),
            trace=trace,
        )
        self.results.append(result)
        self.store.run_finished(result)
        if fg.status == "cancelled":
            raise Cancelled

    def _finish_unmeasured(
        self,
        key: RunKey,
        run_plan: RunPlan,
        started_at: dt.datetime,
        log_path: Path,
        info: GroupInfo | None,
        measurement: Measurement,
        exc: BaseException,
    ) -> None:
        trace = b""
        energy = unavailable_energy("the run did not start")
        if info is not None:
            self.store.group_ended(info, "error")
            try:
                energy, trace = measurement.stop()
            except RuntimeError:  # never started: nothing was measured
                pass
        ended_at = utc_now()
        result = RunResult(
            key=key,
            status="error",
            started_at=started_at,
            ended_at=ended_at,
            duration_s=(ended_at - started_at).total_seconds(),
            exit_code=None,
            log_path=str(log_path),
            hyperparameters=dict(run_plan.hyperparameters),
            metrics={},
            energy=energy,
            coverage=None,
            trace=trace,
            error=str(exc),
        )
        self.results.append(result)
        self.store.run_finished(result)

    def _coverage(self, start: dt.datetime, end: dt.datetime) -> CoverageReport | None:
        if self.background is None:
            return None
        self.background.poll_file_only()  # the latest starts / ends, same host clock
        return compute_coverage(
            start.timestamp(),
            end.timestamp(),
            self.background.intervals_for_coverage(),
            now=end.timestamp(),
        )

    # -- the end -------------------------------------------------------------------

    def sweep(self, role: Role | None = None) -> None:
        """Stop whatever still carries this experiment's marker (and ``role``)."""
        leftovers = sweep_marked(
            self.plan.code, role=role, grace=self.plan.grace, on_wait=self.beat
        )
        if leftovers:
            self.store.event(
                "leftover_processes",
                f"stopped {len(leftovers)} {role or 'experiment'} process(es) that "
                f"outlived their group: pids {leftovers}",
            )

    def cleanup(self, reason: str) -> None:
        """Stop the background, sweep anything still carrying our marker, drop temp files."""
        self._cleaning_up = True
        try:
            if self.background is not None:
                self.background.stop(reason)
        finally:
            try:
                self.sweep()
            finally:
                shutil.rmtree(self.tmpdir, ignore_errors=True)


def run_experiment(
    plan: ExperimentPlan,
    store: ExperimentStore,
    *,
    meters: MeterSet | None = None,
    stop: StopRequest | None = None,
) -> ExperimentOutcome:
    """Run the whole experiment; never leaves a process of it behind.

    ``meters``: injected meters (the caller closes them); by default this opens the
    host's meters for ``plan.gpu_indices`` (or the double named by
    ``$WATTLAB_METER_DOUBLE``) and closes them at the end. ``stop``: set from outside
    (a signal handler) to stop it as a cancel would, ending in error with its reason.
    The outcome is reported to ``store.experiment_ended`` last.
    """
    outcome = _run_experiment(plan, store, meters, stop)
    # The runner alone decides how the experiment ended; the store only records it.
    store.experiment_ended(outcome.status, outcome.message)
    return outcome


def _run_experiment(
    plan: ExperimentPlan, store: ExperimentStore, meters: MeterSet | None, stop: StopRequest | None
) -> ExperimentOutcome:
    own_meters = meters is None
    try:
        meter_set = open_meters(plan.gpu_indices) if meters is None else meters
    except (OSError, ValueError) as exc:  # e.g. a malformed $WATTLAB_METER_DOUBLE
        return ExperimentOutcome("error", f"cannot open the energy meters: {exc}")
    run = _ExperimentRun(plan, store, meter_set, stop)
    # Until run() returns or raises an Exception, assume the worst: a BaseException
    # (worker shutdown) still gets the cleanup below.
    outcome = ExperimentOutcome("error", "interrupted")
    reason = "error"
    try:
        outcome, reason = _classify(run)
    finally:
        try:
            run.cleanup(reason)
        except Exception as exc:
            outcome = ExperimentOutcome("error", f"cleanup failed: {type(exc).__name__}: {exc}")
        finally:
            if own_meters:
                meter_set.close()
    outcome.results = run.results
    return outcome


def _classify(run: _ExperimentRun) -> tuple[ExperimentOutcome, str]:
    """Run the experiment; the outcome and the reason the groups end with."""
    try:
        run.run()
    except Cancelled:
        if run.timed_out:
            message = f"stopped at the worker's time limit ({run.plan.max_seconds:g} s)"
            return ExperimentOutcome("error", message), "error"
        if run.stopped_because:
            return ExperimentOutcome("error", run.stopped_because), "error"
        return ExperimentOutcome("cancelled", "cancelled on request"), "cancelled"
    except _Aborted as exc:
        return ExperimentOutcome("error", f"infrastructure error: {exc}"), "error"
    except _Unpinnable as exc:
        return ExperimentOutcome("error", str(exc)), "error"
    except Exception as exc:
        return ExperimentOutcome("error", f"{type(exc).__name__}: {exc}"), "error"
    # The last attempt of each run decides it (an error retried into success is a success).
    final = {(r.key.config_index, r.key.repeat_index): r.status for r in run.results}
    bad = [status for status in final.values() if status != "succeeded"]
    if bad:
        message = f"{len(bad)} of {len(final)} runs did not succeed"
        return ExperimentOutcome("failed", message), "finished"
    return ExperimentOutcome("succeeded"), "finished"
