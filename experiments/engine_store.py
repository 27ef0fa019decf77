"""The ORM side of the engine contract: an ExperimentStore backed by the services, and
the translation of an Experiment row into the engine's ExperimentPlan."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections
from django.db import connection as db_connection

from core.contract import (
    BackgroundPlan,
    BackgroundRunRecord,
    ExperimentPlan,
    GroupInfo,
    ProgramSpec,
    RunKey,
    RunPlan,
    RunResult,
    SensorPeriods,
    StoreUnavailable,
)
from experiments import services
from experiments.models import Experiment, Host, Workload
from experiments.workloads import PYTHON_PLACEHOLDER

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def _reconnecting(method: Callable[P, T]) -> Callable[P, T]:
    """A database that went away is :class:`StoreUnavailable` (the engine buffers the
    write and retries it); the broken connection is dropped so the next call opens a
    fresh one. Any other database error is a bug and propagates as it is."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        # Drops a connection that failed earlier or outlived CONN_MAX_AGE.
        close_old_connections()
        try:
            return method(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            try:
                db_connection.close()
            except DatabaseError:
                pass
            raise StoreUnavailable(str(exc)) from exc

    return wrapper


class OrmExperimentStore:
    """Implements ``core.contract.ExperimentStore`` for one claimed experiment."""

    def __init__(
        self, experiment: Experiment, host: Host, slurm: dict[str, str] | None = None
    ) -> None:
        self.experiment_id = experiment.id
        self.code = str(experiment.code)
        self.host = host
        #: The Slurm job this worker runs in, recorded on each run ({}: none).
        self.slurm = dict(slurm or {})

    @property
    def spool_meta(self) -> dict[str, Any]:
        """What :meth:`from_spool_meta` needs to rebuild this store in a later process."""
        return {
            "experiment_id": self.experiment_id,
            "code": self.code,
            "host_id": self.host.id,
            "slurm": self.slurm,
        }

    @classmethod
    def from_spool_meta(cls, meta: dict[str, Any]) -> OrmExperimentStore:
        experiment = Experiment(id=int(meta["experiment_id"]), code=meta["code"])
        return cls(experiment, Host(id=int(meta["host_id"])), meta.get("slurm"))

    @_reconnecting
    def heartbeat(self) -> None:
        services.experiment_heartbeat(experiment_id=self.experiment_id)

    @_reconnecting
    def cancel_requested(self) -> bool:
        return Experiment.objects.filter(
            id=self.experiment_id, cancel_requested_at__isnull=False
        ).exists()

    @_reconnecting
    def group_started(self, group: GroupInfo) -> None:
        services.group_start(experiment_id=self.experiment_id, host=self.host, group=group)

    @_reconnecting
    def group_ended(self, group: GroupInfo, reason: str) -> None:
        services.group_end(experiment_id=self.experiment_id, group=group, reason=reason)

    @_reconnecting
    def run_started(
        self, key: RunKey, hyperparameters: dict[str, Any], started_at: dt.datetime
    ) -> None:
        services.run_start(
            experiment_id=self.experiment_id,
            key=key,
            hyperparameters=hyperparameters,
            started_at=started_at,
            slurm=self.slurm,
        )

    @_reconnecting
    def run_samples(self, key: RunKey, trace: bytes) -> None:
        services.run_samples(experiment_id=self.experiment_id, key=key, trace=trace)

    @_reconnecting
    def run_finished(self, result: RunResult) -> None:
        services.run_finish(experiment_id=self.experiment_id, code=self.code, result=result)

    @_reconnecting
    def background_run_started(self, record: BackgroundRunRecord) -> None:
        services.background_run_start(experiment_id=self.experiment_id, record=record)

    @_reconnecting
    def background_run_finished(self, record: BackgroundRunRecord) -> None:
        services.background_run_finish(
            experiment_id=self.experiment_id, code=self.code, record=record
        )

    @_reconnecting
    def event(self, kind: str, message: str) -> None:
        services.experiment_event(experiment_id=self.experiment_id, kind=kind, message=message)

    @_reconnecting
    def experiment_ended(self, status: str, message: str) -> None:
        services.experiment_finish(experiment_id=self.experiment_id, outcome=status, error=message)


def _program(
    workload: Workload, values: dict[str, Any], python: str
) -> tuple[ProgramSpec, dict[str, Any]]:
    """The program for ``values`` and the full values exactly as passed in its argv."""
    from experiments import mutation

    space = mutation.parse_space(workload.hyperparameters)
    passed = mutation.full_values(space, values)
    argv = [python if part == PYTHON_PLACEHOLDER else str(part) for part in workload.argv]
    argv += mutation.argv_for(space, passed)
    env = {str(k): str(v) for k, v in (workload.env or {}).items()}
    user = settings.WATTLAB_TRAINING_USER or None
    return ProgramSpec(argv=argv, workdir=workload.workdir, env=env, user=user), dict(passed)


def plan_for(
    experiment: Experiment,
    *,
    gpu_index: int | None,
    python: str,
    gpu_indices: list[int] | None = None,
) -> ExperimentPlan:
    """``python``: the interpreter that replaces ``{python}`` in a workload's argv.
    ``gpu_indices``: every GPU the worker serves (a Slurm job's allocation), instead
    of the one ``gpu_index``."""
    if gpu_indices is None:
        gpu_indices = [] if gpu_index is None else [gpu_index]
    fg = experiment.foreground_workload
    runs: list[RunPlan] = []
    for config in experiment.plan:
        program, passed = _program(fg, dict(config["hyperparameters"]), python)
        for repeat in range(experiment.runs_per_config):
            runs.append(
                RunPlan(
                    config_index=int(config["index"]),
                    repeat_index=repeat,
                    hyperparameters=passed,
                    program=program,
                )
            )
    background = None
    if experiment.background_workload is not None:
        bg = experiment.background_workload
        program, _passed = _program(bg, dict(experiment.bg_hyperparameters), python)
        background = BackgroundPlan(
            program=program,
            restart_delay=experiment.restart_delay,
            startup_wait=experiment.startup_wait,
            between_runs="stop" if experiment.between_runs == "stop" else "keep",
        )
    artifacts = Path(settings.WATTLAB_SCRATCH_DIR) / str(experiment.code)
    return ExperimentPlan(
        code=str(experiment.code),
        runs=runs,
        artifacts_dir=str(artifacts),
        metric_patterns=dict(fg.metric_patterns or {}),
        success_pattern=fg.success_pattern or None,
        sleep_between_runs=experiment.sleep_between_runs,
        timeout=experiment.timeout,
        max_retries=experiment.max_retries,
        background=background,
        gpu_indices=list(gpu_indices),
        sample_hz=settings.WATTLAB_SAMPLE_HZ,
        idle_probe_s=settings.WATTLAB_IDLE_PROBE_SECONDS,
        grace=settings.WATTLAB_GRACE_SECONDS,
        heartbeat_interval=settings.WATTLAB_HEARTBEAT_SECONDS,
        max_seconds=settings.WATTLAB_MAX_EXPERIMENT_SECONDS,
        sensor_periods=_sensor_periods(experiment, gpu_index),
    )


def _sensor_periods(experiment: Experiment, gpu_index: int | None) -> dict[int, SensorPeriods]:
    """The periods the host's worker observed for this GPU when it started."""
    host = experiment.host
    if gpu_index is None or host is None:
        return {}
    for gpu in host.gpus or []:
        if isinstance(gpu, dict) and gpu.get("index") == gpu_index and gpu.get("sensor_periods"):
            return {gpu_index: SensorPeriods.from_dict(gpu["sensor_periods"])}
    return {}
