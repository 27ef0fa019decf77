"""Writes for experiments that run on a Slurm cluster: one pass of the dispatcher
(``manage.py slurm_dispatch``), and what the job's worker records when it starts.

A pass, in order:

1. **Submit.** Each queued Slurm experiment without a job is taken (a conditional
   UPDATE sets ``slurm_submitted_at``, so two dispatchers never both submit it) and
   given to ``sbatch``; its job id is recorded. Slurm refusing the job (a partition
   that does not exist, an option it rejects) fails the experiment with Slurm's line.
   No ``sbatch`` at all fails every queued Slurm experiment and stops the dispatcher:
   nothing waits for ever on a dispatcher that cannot submit.
2. **Recover.** A submission taken long ago but without a job id (its dispatcher
   died between ``sbatch`` and the write) is looked up by its job name, adopted if
   Slurm has it, else submitted again.
3. **Follow.** One ``squeue`` for every live job (``sacct`` only for jobs squeue has
   forgotten): the state, reason and node are recorded. The job of an experiment a
   user cancelled is ``scancel``-ed (pending or running). A pending job whose reason can
   never clear (an account the partition does not allow) or that waited past
   ``WATTLAB_SLURM_PENDING_LIMIT_SECONDS`` is cancelled and its experiment failed.
   A job that ended before its experiment did (time limit, ``scancel`` from outside,
   preemption, node failure) ends the experiment with Slurm's state and reason:
   ``lost`` for a node failure or a job Slurm no longer knows, ``failed`` otherwise.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from experiments import history
from experiments.models import Experiment, Run, slurm_target_q
from experiments.slurm.cli import (
    FINAL_STATES,
    JobState,
    SlurmCli,
    SlurmError,
    SlurmRefused,
    SlurmUnavailable,
    hopeless,
)
from experiments.slurm.options import job_name, job_request

log = logging.getLogger(__name__)

#: A submission taken this long ago without a job id is recovered (see step 2).
STALE_SUBMIT_S = 120.0
#: The job's output is quoted when its experiment could not say why it ended.
LOG_TAIL_LINES = 3


@dataclass
class PassReport:
    """What one pass did, one line per change (printed by the command)."""

    lines: list[str] = field(default_factory=list)
    submitted: int = 0
    #: Set when Slurm could not be asked at all (the command says so and goes on).
    unavailable: str = ""

    def say(self, experiment: Experiment, message: str) -> None:
        line = f"{experiment.code} {experiment.name}: {message}"
        self.lines.append(line)
        log.debug("slurm_dispatch: %s", line)  # the command prints the lines itself


class NoSlurm(SlurmError):
    """The dispatcher cannot submit anything (no sbatch): it stops."""


def cli_from_settings() -> SlurmCli:
    return SlurmCli(
        bin_dir=settings.WATTLAB_SLURM_BIN_DIR, timeout=settings.WATTLAB_SLURM_COMMAND_TIMEOUT
    )


def slurm_dispatch(*, cli: SlurmCli, now: dt.datetime | None = None) -> PassReport:
    """One pass (see the module's docstring). Raises :class:`NoSlurm` after failing
    the queued experiments when ``sbatch`` cannot be found."""
    report = PassReport()
    _submit_queued(cli, report)
    try:
        _recover_stale(cli, now or timezone.now(), report)
        _follow(cli, report)
    except SlurmUnavailable as exc:
        report.unavailable = str(exc)
        log.warning("slurm_dispatch: Slurm could not be asked: %s", exc)
    return report


# --- 1. submit -------------------------------------------------------------------------


def _queued() -> Any:
    return Experiment.objects.filter(
        slurm_target_q(),
        status=Experiment.Status.QUEUED,
        slurm_submitted_at__isnull=True,
        slurm_job_id="",
    ).select_related("foreground_workload")


def _submit_queued(cli: SlurmCli, report: PassReport) -> None:
    try:
        cli.program("sbatch")
    except SlurmUnavailable as exc:
        for experiment in _queued():
            if _fail_queued(experiment, f"cannot submit to Slurm: {exc}"):
                report.say(experiment, f"failed: {exc}")
        raise NoSlurm(str(exc)) from None
    typical: dict[tuple[int, str], tuple[float, int] | None] = {}
    for experiment in _queued().order_by("created_at", "id"):
        if not _take(experiment):
            continue  # another dispatcher took it, or it was cancelled meanwhile
        _submit(cli, experiment, typical, report)


def _take(experiment: Experiment) -> bool:
    now = timezone.now()
    taken = Experiment.objects.filter(
        id=experiment.id,
        status=Experiment.Status.QUEUED,
        slurm_submitted_at__isnull=True,
        slurm_job_id="",
    ).update(slurm_submitted_at=now, slurm_state="", slurm_reason="")
    experiment.slurm_submitted_at = now
    return taken == 1


def expected_seconds(
    experiment: Experiment, typical: dict[tuple[int, str], tuple[float, int] | None]
) -> float:
    """How long the experiment should take: its runs at the median of this workload's
    earlier runs in its mode (or, with none, each at its timeout: the ceiling), the
    sleeps between them, the background's startup wait and the idle probe."""
    key = (experiment.foreground_workload_id, experiment.mode)
    if key not in typical:
        typical[key] = history.typical_run_seconds(
            workload=experiment.foreground_workload, mode=experiment.mode
        )
    found = typical[key]
    per_run = found[0] if found else experiment.timeout
    runs = max(1, experiment.total_runs)
    startup = experiment.startup_wait if experiment.mode == Experiment.Mode.PARALLEL else 0.0
    return (
        runs * per_run
        + (runs - 1) * experiment.sleep_between_runs
        + startup
        + settings.WATTLAB_IDLE_PROBE_SECONDS
    )


def _submit(
    cli: SlurmCli,
    experiment: Experiment,
    typical: dict[tuple[int, str], tuple[float, int] | None],
    report: PassReport,
) -> None:
    config = experiment.submitted_config or {}
    try:
        request = job_request(
            experiment_id=experiment.id,
            code=str(experiment.code),
            partition=experiment.target.partition(":")[2],
            slurm=dict(config.get("slurm") or {}),
            expected_s=expected_seconds(experiment, typical),
        )
        Path(settings.WATTLAB_SLURM_LOG_DIR).mkdir(parents=True, exist_ok=True)
        job_id = cli.submit(request.options, request.script)
    except (SlurmRefused, ValueError, OSError) as exc:
        if _fail_queued(experiment, f"Slurm refused the job: {exc}"):
            report.say(experiment, f"failed: Slurm refused the job: {exc}")
        return
    except SlurmUnavailable as exc:
        # Nothing is known: sbatch may or may not have queued it. The recovery step
        # looks the job up by its name once the submission is stale.
        report.unavailable = str(exc)
        report.say(experiment, f"not submitted yet: {exc}")
        return
    Experiment.objects.filter(id=experiment.id, slurm_job_id="").update(
        slurm_job_id=job_id, slurm_state="PENDING", slurm_checked_at=timezone.now()
    )
    experiment.slurm_job_id = job_id
    report.submitted += 1
    report.say(experiment, f"submitted as Slurm job {job_id} (--time={request.time_limit_min})")


def _fail_queued(experiment: Experiment, error: str) -> bool:
    """A queued experiment that never reached Slurm fails with ``error``."""
    return bool(
        Experiment.objects.filter(id=experiment.id, status=Experiment.Status.QUEUED).update(
            status=Experiment.Status.FAILED, ended_at=timezone.now(), error=error[:10000]
        )
    )


# --- 2. recover ------------------------------------------------------------------------


def _recover_stale(cli: SlurmCli, now: dt.datetime, report: PassReport) -> None:
    """Queued experiments taken to submit long ago that have no job id. (One cancelled
    meanwhile is left alone: if its job exists, its worker finds nothing to claim.)"""
    stale = Experiment.objects.filter(
        slurm_target_q(),
        status=Experiment.Status.QUEUED,
        slurm_job_id="",
        slurm_submitted_at__lt=now - dt.timedelta(seconds=STALE_SUBMIT_S),
    )
    for experiment in stale:
        found = cli.find_by_name(job_name(str(experiment.code)))
        if found:
            Experiment.objects.filter(id=experiment.id, slurm_job_id="").update(
                slurm_job_id=found[0], slurm_state="PENDING", slurm_checked_at=now
            )
            report.say(experiment, f"adopted Slurm job {found[0]} (its submission was cut short)")
        else:
            # Submitted again by the next pass.
            Experiment.objects.filter(id=experiment.id, slurm_job_id="").update(
                slurm_submitted_at=None
            )
            report.say(experiment, "its submission was cut short; submitting it again")


# --- 3. follow -------------------------------------------------------------------------


def _live_jobs() -> Any:
    """Experiments whose job was live when last read."""
    return (
        Experiment.objects.filter(slurm_target_q())
        .exclude(slurm_job_id="")
        .exclude(slurm_state__in=[*FINAL_STATES, "UNKNOWN"])
    )


def _follow(cli: SlurmCli, report: PassReport) -> None:
    experiments = list(_live_jobs())
    if not experiments:
        return
    ids = [e.slurm_job_id for e in experiments]
    states = cli.states(ids)
    forgotten = [job_id for job_id in ids if job_id not in states]
    accounting_error = ""
    if forgotten:
        try:
            states.update(cli.accounting(forgotten))
        except SlurmError as exc:
            accounting_error = str(exc)
    now = timezone.now()
    for experiment in experiments:
        job = states.get(experiment.slurm_job_id)
        if job is None:
            _job_unknown(experiment, accounting_error, report)
            continue
        _record(experiment, job, now)
        if job.ended:
            _job_ended(experiment, job, report)
        else:
            _job_live(cli, experiment, job, now, report)


def _record(experiment: Experiment, job: JobState, now: dt.datetime) -> None:
    reason = "" if job.reason in {"None", "(null)"} else job.reason
    Experiment.objects.filter(id=experiment.id).update(
        slurm_state=job.state[:30],
        slurm_reason=reason[:300],
        slurm_node=job.node[:300],
        slurm_checked_at=now,
    )
    experiment.slurm_state, experiment.slurm_reason, experiment.slurm_node = (
        job.state,
        reason,
        job.node,
    )


def _job_live(
    cli: SlurmCli, experiment: Experiment, job: JobState, now: dt.datetime, report: PassReport
) -> None:
    if experiment.cancel_requested_at is not None and job.state != "COMPLETING":
        # Cancelled in Wattlab: the job goes. A running worker gets SIGTERM and stops
        # its experiment as a cancel would; Slurm ends whatever is left. (A job whose
        # experiment ended by itself is left to exit: its worker is finishing.)
        cli.cancel([job.job_id])
        report.say(experiment, f"scancel of Slurm job {job.job_id} ({job.state.lower()})")
        return
    if job.state != "PENDING":
        return
    limit = settings.WATTLAB_SLURM_PENDING_LIMIT_SECONDS
    waited = (now - (experiment.slurm_submitted_at or now)).total_seconds()
    if hopeless(job.reason):
        why = f"Slurm cannot run job {job.job_id}: {job.reason}"
    elif limit and waited > limit:
        why = (
            f"Slurm job {job.job_id} was still pending after {waited:.0f} s "
            f"(WATTLAB_SLURM_PENDING_LIMIT_SECONDS={limit}): {job.reason}"
        )
    else:
        return
    cli.cancel([job.job_id])
    if _fail_queued(experiment, why):
        report.say(experiment, f"failed: {why}")


def _job_ended(experiment: Experiment, job: JobState, report: PassReport) -> None:
    """Slurm says the job ended: an experiment still going ends with it."""
    reason = job.reason if job.reason not in {"", "None", "(null)"} else ""
    said = f"the Slurm job {job.job_id} ended {job.state}" + (f" ({reason})" if reason else "")
    if experiment.status == Experiment.Status.FAILED and job.state != "COMPLETED":
        # Its worker stopped it on Slurm's signal, not knowing why Slurm sent it
        # (scancel, the time limit, preemption): Slurm's own word goes beside it.
        if not re.search(rf"\bjob {job.job_id}\b", experiment.error):
            Experiment.objects.filter(id=experiment.id, error=experiment.error).update(
                error=f"{experiment.error} ({said})"[:10000]
            )
        return
    if experiment.status not in (
        Experiment.Status.QUEUED,
        Experiment.Status.RUNNING,
        Experiment.Status.LOST,
    ):
        return  # its worker said how it ended (or it was cancelled while queued)
    if experiment.status == Experiment.Status.QUEUED:
        error = f"{said} before its worker started the experiment"
    else:
        error = f"{said} before the experiment did"
    if job.state == "COMPLETED" and experiment.status != Experiment.Status.QUEUED:
        # The worker exited normally but its last writes have not arrived: they may
        # be spooled on the node (a database outage) and replayed later.
        status = Experiment.Status.LOST
        error += " (its worker's last report has not arrived)"
    elif job.state == "NODE_FAIL":
        status = Experiment.Status.LOST
    else:
        status = Experiment.Status.FAILED
    tail = _job_log_tail(job.job_id)
    if tail:
        error += f"; the job's output ends: {tail}"
    _end(experiment, status, error, report)


def _job_unknown(experiment: Experiment, accounting_error: str, report: PassReport) -> None:
    Experiment.objects.filter(id=experiment.id).update(slurm_state="UNKNOWN")
    if experiment.status in Experiment.ACTIVE_STATUSES:
        why = f"Slurm no longer knows job {experiment.slurm_job_id} (not in squeue" + (
            f"; sacct: {accounting_error})" if accounting_error else ", nor in sacct)"
        )
        _end(experiment, Experiment.Status.LOST, why, report)


def _end(experiment: Experiment, status: str, error: str, report: PassReport) -> None:
    now = timezone.now()
    changed = Experiment.objects.filter(
        id=experiment.id,
        status__in=[Experiment.Status.QUEUED, Experiment.Status.RUNNING, Experiment.Status.LOST],
    ).update(status=status, ended_at=now, error=error[:10000])
    if not changed:
        return
    Run.objects.filter(experiment_id=experiment.id, status__in=Run.UNFINISHED_STATUSES).update(
        status=Run.Status.ERROR, error=error[:10000], ended_at=now
    )
    report.say(experiment, f"{status}: {error}")


def _job_log_tail(job_id: str) -> str:
    """The last lines of the job's own output (where Python's traceback lands when
    the worker could not even start), joined on one line."""
    path = Path(settings.WATTLAB_SLURM_LOG_DIR) / f"wattlab-{job_id}.out"
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-LOG_TAIL_LINES:])[:600]


# --- the job's side ------------------------------------------------------------------


def slurm_job_started(*, experiment_id: int, job_id: str, node: str) -> None:
    """The job's worker claimed its experiment: the page shows it running at once,
    before the dispatcher's next read."""
    Experiment.objects.filter(id=experiment_id).filter(
        Q(slurm_job_id=job_id) | Q(slurm_job_id="")
    ).update(
        slurm_job_id=job_id,
        slurm_state="RUNNING",
        slurm_reason="",
        slurm_node=node[:300],
        slurm_checked_at=timezone.now(),
    )


__all__ = [
    "NoSlurm",
    "PassReport",
    "cli_from_settings",
    "expected_seconds",
    "slurm_dispatch",
    "slurm_job_started",
]
