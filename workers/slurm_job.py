"""Inside a Slurm job: which job this is, which GPUs it was given, and the signals that
ask its worker to stop.

Everything comes from the job's environment, read once when the worker starts (never
per sample, never by asking ``scontrol``: a busy controller is every user's problem).
Slurm sets ``SLURM_JOB_ID``, ``SLURM_CLUSTER_NAME``, ``SLURM_JOB_PARTITION``,
``SLURM_JOB_ACCOUNT`` (when the job has one), ``SLURMD_NODENAME`` and, for a job
given GPUs through GRES, ``SLURM_JOB_GPUS`` (``SLURM_STEP_GPUS`` in a step) and
``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Final

from workers.energy.nvml import visible_filter
from workers.runner import StopRequest

#: What the worker says when Slurm's ``--signal`` warns it of the job's time limit.
TIME_LIMIT_REASON: Final = (
    "stopped before the Slurm job's time limit (SIGUSR1 from sbatch --signal); "
    "the runs that ended are kept: ask for a longer slurm.time_limit"
)
#: ... and when Slurm ends the job (scancel, preemption, node shutdown, time limit).
TERMINATED_REASON: Final = (
    "the Slurm job was ended (SIGTERM: scancel, preemption, a node shutdown or its "
    "time limit) before the experiment was"
)


@dataclass(frozen=True)
class SlurmJob:
    """The job a worker runs in, as each of its runs records it (``Run.slurm``)."""

    cluster: str
    job_id: str
    partition: str
    account: str
    node: str
    #: The allocation's GPUs as Slurm numbers them ("" = none).
    gpus: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SlurmJob | None:
        """The job of this environment; None outside Slurm."""
        job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or ""
        if not job_id:
            return None
        return cls(
            cluster=env.get("SLURM_CLUSTER_NAME", ""),
            job_id=job_id,
            partition=env.get("SLURM_JOB_PARTITION", ""),
            account=env.get("SLURM_JOB_ACCOUNT", ""),
            node=env.get("SLURMD_NODENAME") or env.get("SLURM_JOB_NODELIST", ""),
            gpus=_allocated(env),
        )

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _allocated(env: Mapping[str, str]) -> str:
    return (env.get("SLURM_STEP_GPUS") or env.get("SLURM_JOB_GPUS") or "").strip()


_RANGE = re.compile(r"^(\d{1,4})(?:-(\d{1,4}))?$")


def _indices(raw: str) -> list[int]:
    """Slurm's GPU list: ``0,2`` or ``0-3``; an entry it would not write stops it."""
    found: list[int] = []
    for part in raw.split(","):
        match = _RANGE.match(part.strip())
        if match is None:
            break
        first = int(match.group(1))
        last = int(match.group(2) or first)
        found.extend(range(first, last + 1))
    return found


def allocation_gpu_indices(
    devices: list[tuple[int, str]], env: Mapping[str, str]
) -> tuple[list[int], str]:
    """The NVML indices of the GPUs the job was given, and how that was read.

    ``devices``: (NVML index, UUID) of the GPUs this process sees. No GPU in the
    allocation: none (the CPU path), even where the node has GPUs. Otherwise
    ``CUDA_VISIBLE_DEVICES``, which Slurm sets to the job's GPUs as CUDA sees them (as
    ordinals 0..n-1 where the node confines devices, which NVML then numbers the same
    way); without it, ``SLURM_JOB_GPUS`` as NVML indices.
    """
    raw = _allocated(env)
    if not raw:
        return [], "the Slurm job was given no GPU (no SLURM_JOB_GPUS): CPU only"
    if "CUDA_VISIBLE_DEVICES" in env:
        allowed, note = visible_filter(devices, env)
        return sorted(allowed if allowed is not None else ()), note
    wanted = set(_indices(raw))
    present = [index for index, _uuid in devices if index in wanted]
    return present, f"SLURM_JOB_GPUS={raw!r}: GPU(s) {present}"


def install_stop_signals(stop: StopRequest) -> None:
    """SIGUSR1 (``--signal=B:USR1@lead``: the time limit is near) and SIGTERM (Slurm
    ends the job) ask the experiment to stop cleanly; the first reason stays."""
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: stop.request(TIME_LIMIT_REASON))
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.request(TERMINATED_REASON))
