"""What an experiment asks Slurm for: the checks at submit, the time limit, the
``sbatch`` options and the batch script.

The batch script is Python: its first line names the interpreter a compute node runs
(``WATTLAB_SLURM_PYTHON``, by default the dispatcher's own), the rest is a constant
that runs ``scripts/slurm_job.py`` from Wattlab's folder (``--chdir``). No value of
the experiment is ever written into it: the experiment's id travels in the job's
environment (``--export``), every option as an argv element of ``sbatch``.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from django.conf import settings

from experiments.expfile import ExperimentFile

#: The job's environment carries the experiment to claim.
EXPERIMENT_ENV: Final = "WATTLAB_SLURM_EXPERIMENT"
#: Slurm's job name: how a dispatcher that died mid-submit finds the job it left.
JOB_NAME_PREFIX: Final = "wattlab-"

#: Everything after the interpreter line (a constant; see the module's docstring).
SCRIPT_BODY: Final = (
    '"""Wattlab: one experiment as a Slurm job (submitted by manage.py slurm_dispatch)."""\n'
    "import os\n"
    "import runpy\n"
    "\n"
    'runpy.run_path(os.path.join(os.getcwd(), "scripts", "slurm_job.py"), run_name="__main__")\n'
)

#: Options Wattlab sets itself: an experiment file may not pass them in slurm.options
#: (the slurm: block's keys say the same, checked).
OWN_OPTIONS: Final = frozenset(
    {
        "--account", "--array", "--chdir", "--cpus-per-task", "--error", "--export",
        "--gpus", "--gres", "--input", "--job-name", "--mem", "--nodes", "--ntasks",
        "--no-requeue", "--output", "--parsable", "--partition", "--qos", "--requeue",
        "--signal", "--time", "--wrap",
    }
)  # fmt: skip

#: The time limit covers the expected duration with this much to spare...
SLACK: Final = 1.5
#: ... plus the worker's own start (Python, Django, the meters) and its cleanup.
STARTUP_S: Final = 120.0

_SAFE_PATH = re.compile(r"^/[^\s,]+$")


def check_slurm_spec(spec: ExperimentFile) -> list[tuple[str, str]]:
    """(key path, message) for what the Slurm target of ``spec`` may not ask here."""
    problems: list[tuple[str, str]] = []
    if not settings.WATTLAB_SLURM_ENABLED:
        problems.append(
            (
                "target",
                f"{spec.target}: this Wattlab submits no Slurm jobs (staff turn it on with "
                "WATTLAB_SLURM_ENABLED=1 and run manage.py slurm_dispatch on a login node)",
            )
        )
    allowed = list(settings.WATTLAB_SLURM_ALLOWED_OPTIONS)
    for index, option in enumerate(spec.slurm.options if spec.slurm else []):
        name = option.split("=", 1)[0]
        key = f"slurm.options.{index}"
        if name in OWN_OPTIONS:
            problems.append((key, f"{name} is set by Wattlab (see the slurm: block's keys)"))
        elif name not in allowed:
            problems.append(
                (
                    key,
                    f"{name} is not among the sbatch options staff allow "
                    f"({', '.join(allowed) or 'none'}; WATTLAB_SLURM_ALLOWED_OPTIONS)",
                )
            )
    return problems


def time_limit_minutes(*, expected_s: float, lead_s: int, most_s: float) -> int:
    """The job's ``--time`` in minutes (Slurm's resolution): the expected duration
    with :data:`SLACK`, the worker's start, at most ``most_s`` (what any experiment
    may take), then the lead of the time-limit signal on top."""
    seconds = min(expected_s * SLACK + STARTUP_S, most_s + STARTUP_S) + max(0, lead_s)
    return max(1, math.ceil(seconds / 60))


@dataclass(frozen=True)
class JobRequest:
    """One ``sbatch`` call: its options and the script on its stdin."""

    options: list[str]
    script: str
    time_limit_min: int


def job_name(code: str) -> str:
    return f"{JOB_NAME_PREFIX}{code}"


def job_request(
    *,
    experiment_id: int,
    code: str,
    partition: str,
    slurm: dict[str, Any],
    expected_s: float,
) -> JobRequest:
    """The sbatch call for one experiment. ``slurm``: its ``slurm:`` block (as the
    submitted file had it); ``expected_s``: how long it is expected to take."""
    python = settings.WATTLAB_SLURM_PYTHON or sys.executable
    root = str(settings.WATTLAB_SLURM_ROOT)
    log_dir = Path(settings.WATTLAB_SLURM_LOG_DIR)
    for what, path in (("WATTLAB_SLURM_PYTHON", python), ("WATTLAB_SLURM_ROOT", root)):
        if not _SAFE_PATH.match(path):
            # Slurm reads --export as a comma list and the first line up to a blank.
            raise ValueError(f"{what}={path!r}: an absolute path without spaces or commas")
    lead = settings.WATTLAB_SLURM_SIGNAL_LEAD_SECONDS
    minutes = slurm.get("time_limit") or time_limit_minutes(
        expected_s=expected_s, lead_s=lead, most_s=settings.WATTLAB_MAX_EXPERIMENT_SECONDS
    )
    options = [
        f"--job-name={job_name(code)}",
        f"--output={log_dir / 'wattlab-%j.out'}",
        f"--chdir={root}",
        f"--time={int(minutes)}",
        "--nodes=1",
        "--ntasks=1",
        # A preempted or failed job is not started again by Slurm: its experiment
        # failed with Slurm's reason, and a rerun is the user's choice.
        "--no-requeue",
        f"--export=ALL,{EXPERIMENT_ENV}={int(experiment_id)}",
    ]
    if lead > 0:
        options.append(f"--signal=B:USR1@{lead}")
    if partition:
        options.append(f"--partition={partition}")
    for key, flag in (("account", "--account"), ("qos", "--qos"), ("memory", "--mem")):
        if slurm.get(key):
            options.append(f"{flag}={slurm[key]}")
    if slurm.get("cpus"):
        options.append(f"--cpus-per-task={int(slurm['cpus'])}")
    if slurm.get("gpus"):
        options.append(f"--gres=gpu:{int(slurm['gpus'])}")
    options.extend(str(option) for option in slurm.get("options") or [])
    return JobRequest(options=options, script=f"#!{python}\n{SCRIPT_BODY}", time_limit_min=minutes)
