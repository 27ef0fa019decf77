"""Slurm's command-line tools, called as argv lists: ``sbatch``, ``squeue``, ``sacct``,
``scancel``. No Django: this is the whole of what Wattlab says to Slurm, and all it
understands of the answers.

Every failure is a :class:`SlurmError` whose text is one line a person can act on
(Slurm's own message without its ``sbatch: error:`` prefixes). :class:`SlurmRefused`
means Slurm answered and said no: the job will not run as asked, so its experiment
fails. :class:`SlurmUnavailable` means Slurm could not be asked (no controller, a
timeout, no ``sbatch`` here): nothing is decided about the job, try again later.

The job states are read with ``squeue --states=all`` (ended jobs stay there for the
cluster's ``MinJobAge``, 300 s by default), one call for every job at once; only jobs
it no longer knows are asked of ``sacct``, which needs the cluster's accounting
database.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

#: A job's states once it has ended (Slurm's JOB STATE CODES); any other is live.
FINAL_STATES: Final = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "TIMEOUT",
    }
)

#: Pending reasons that waiting will not clear: the job asks for something its
#: partition, account or QoS never allows (squeue's JOB REASON CODES).
HOPELESS_REASONS: Final = frozenset(
    {
        "AccountNotAllowed",
        "BadConstraints",
        "DependencyNeverSatisfied",
        "InvalidAccount",
        "InvalidQOS",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "QOSNotAllowed",
    }
)
#: Slurm writes some reasons out in words instead of a code ("Job's account not known,
#: so it can't use this partition (...)"); these say the same.
_HOPELESS_WORDS = re.compile(
    r"not known|not allowed|can't use this partition|invalid|never satisf", re.IGNORECASE
)
#: Per-job limits of an association or QoS (AssocMaxWallDurationPerJobLimit, ...).
_HOPELESS_LIMIT = re.compile(r"^(Assoc|QOS)Max\w*PerJob\w*Limit$")

_JOB_ID = re.compile(r"^\d+$")
_PREFIX = re.compile(r"^(sbatch|squeue|sacct|scancel): (error: )?")


def hopeless(reason: str) -> bool:
    """True when a pending job with this reason will never start."""
    reason = reason.strip()
    return (
        reason in HOPELESS_REASONS
        or _HOPELESS_LIMIT.match(reason) is not None
        or _HOPELESS_WORDS.search(reason) is not None
    )


class SlurmError(RuntimeError):
    """Slurm said no or could not be asked; ``str()`` is one line."""


class SlurmRefused(SlurmError):
    """Slurm answered and refused (a partition that does not exist, a bad option)."""


class SlurmUnavailable(SlurmError):
    """Slurm could not be asked: nothing is decided, try again."""


@dataclass(frozen=True)
class JobState:
    job_id: str
    #: Slurm's state code: PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT...
    state: str
    #: Why it waits ("Resources", "Priority") or ended ("TimeLimit"); "None" when none.
    reason: str = ""
    #: Its node(s) once it runs ("" while pending).
    node: str = ""

    @property
    def ended(self) -> bool:
        return self.state in FINAL_STATES


def _one_line(text: str, fallback: str) -> str:
    """The line of Slurm's output that says what went wrong, without its prefixes."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()] or lines
    if not errors:
        return fallback
    # The last error is the conclusion ("Batch job submission failed: Invalid
    # partition name specified"); an earlier one often says which value was wrong.
    picked = [_PREFIX.sub("", line) for line in errors[-2:]]
    return "; ".join(dict.fromkeys(picked))[:500]


_UNREACHABLE = re.compile(
    r"unable to contact slurm controller|connection refused|timed out|"
    r"socket timed out|zero bytes were transmitted|slurm_load_jobs error: unable",
    re.IGNORECASE,
)


def parse_states(text: str, ids: list[str]) -> dict[str, JobState]:
    """``JOBID|STATE|NODES|REASON`` lines (squeue's --format, sacct's --parsable2) of
    the jobs ``ids``; the reason comes last, as it may hold anything."""
    found: dict[str, JobState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4 and parts[0] in ids:
            job_id, state, node, reason = (part.strip() for part in parts)
            # sacct writes "CANCELLED by 1000": the state is the first word.
            words = state.split()
            found[job_id] = JobState(job_id, words[0] if words else "", reason, node)
    return found


class SlurmCli:
    """The Slurm commands of one cluster. ``bin_dir``: where they are ("" = the
    PATH); ``env``: the environment they run with (``SLURM_CONF`` selects the
    cluster); ``timeout``: seconds one command may take."""

    def __init__(
        self, *, bin_dir: str = "", env: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> None:
        self.bin_dir = bin_dir
        self.env = dict(os.environ if env is None else env)
        self.timeout = timeout

    def program(self, name: str) -> str:
        if self.bin_dir:
            found = shutil.which(name, path=self.bin_dir)
            where = f"in WATTLAB_SLURM_BIN_DIR={self.bin_dir}"
        else:
            found = shutil.which(name, path=self.env.get("PATH", os.defpath))
            where = "on the PATH"
        if found is None:
            raise SlurmUnavailable(
                f"{name} is not {where}: install Slurm's client commands (Debian: "
                "slurm-client) where slurm_dispatch runs, or set WATTLAB_SLURM_BIN_DIR"
            )
        return found

    def _run(
        self, argv: list[str], *, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        program = self.program(argv[0])
        try:
            return subprocess.run(
                [program, *argv[1:]],
                input=stdin,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(
                f"{argv[0]} did not answer within {self.timeout:g} s (is slurmctld up?)"
            ) from None
        except OSError as exc:
            raise SlurmUnavailable(f"{argv[0]} could not be started: {exc}") from None

    def _failed(self, name: str, done: subprocess.CompletedProcess[str]) -> SlurmError:
        text = (done.stderr or "") + (done.stdout or "")
        message = _one_line(text, f"{name} exited with status {done.returncode}")
        if _UNREACHABLE.search(text):
            return SlurmUnavailable(message)
        return SlurmRefused(message)

    # -- the four commands ------------------------------------------------------------

    def submit(self, options: list[str], script: str) -> str:
        """``sbatch --parsable OPTIONS`` with the batch script on stdin: the job id."""
        done = self._run(["sbatch", "--parsable", *options], stdin=script)
        if done.returncode != 0:
            raise self._failed("sbatch", done)
        # --parsable prints "JOBID" or "JOBID;CLUSTER" (a federation or multi-cluster).
        job_id = done.stdout.strip().splitlines()[-1].split(";")[0] if done.stdout.strip() else ""
        if not _JOB_ID.match(job_id):
            raise SlurmRefused(f"sbatch printed no job id: {done.stdout.strip()[:200]!r}")
        return job_id

    def states(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        """The state of each job ``squeue`` still knows (ended ones for MinJobAge)."""
        ids = sorted(set(job_ids), key=int)
        if not ids:
            return {}
        done = self._run(
            ["squeue", "--noheader", "--states=all", f"--jobs={','.join(ids)}"]
            + ["--format=%i|%T|%N|%r"]
        )
        if done.returncode != 0:
            # One unknown job id on its own is an error; among others it is left out.
            if "invalid job id" in (done.stderr + done.stdout).lower():
                return {}
            raise self._failed("squeue", done)
        return parse_states(done.stdout, ids)

    def accounting(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        """The state of each job in ``sacct`` (jobs ``squeue`` has forgotten); raises
        SlurmError where the cluster keeps no accounting."""
        ids = sorted(set(job_ids), key=int)
        if not ids:
            return {}
        done = self._run(
            ["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={','.join(ids)}"]
            + ["--format=JobIDRaw,State,NodeList,Reason"]
        )
        if done.returncode != 0:
            raise self._failed("sacct", done)
        return parse_states(done.stdout, ids)

    def find_by_name(self, name: str) -> list[str]:
        """Live jobs called ``name`` (a dispatcher that died mid-submit left one?)."""
        done = self._run(["squeue", "--noheader", f"--name={name}", "--format=%i"])
        if done.returncode != 0:
            raise self._failed("squeue", done)
        return [line.strip() for line in done.stdout.splitlines() if _JOB_ID.match(line.strip())]

    def cancel(self, job_ids: Iterable[str]) -> None:
        """``scancel`` the jobs; one already ended or forgotten is not an error."""
        ids = sorted(set(job_ids), key=int)
        if not ids:
            return
        done = self._run(["scancel", *ids])
        text = (done.stderr + done.stdout).lower()
        gone = ("already completing or completed", "invalid job id")
        if done.returncode != 0 and not all(
            any(g in line for g in gone) for line in text.splitlines() if "error" in line
        ):
            raise self._failed("scancel", done)
