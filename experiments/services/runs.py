"""A run's rows as the worker reports them: started, its live trace, finished with its
energy, coverage and log; the background loop's runs; the experiment's totals that the
list pages read without an aggregate per row."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.db.models import Sum

from core.contract import BackgroundRunRecord, RunKey, RunResult
from core.coverage import worst_verdict
from experiments.models import BackgroundRun, Experiment, Host, Run, host_factors

LOG_TAIL_CHARS = 4000


def run_start(
    *,
    experiment_id: int,
    key: RunKey,
    hyperparameters: dict[str, Any],
    started_at: dt.datetime,
    slurm: dict[str, str] | None = None,
) -> Run:
    """``slurm``: the Slurm job the run goes in (``workers.slurm_job.SlurmJob``)."""
    run, _created = Run.objects.update_or_create(
        experiment_id=experiment_id,
        config_index=key.config_index,
        repeat_index=key.repeat_index,
        attempt=key.attempt,
        defaults={
            "hyperparameters": hyperparameters,
            "status": Run.Status.RUNNING,
            "started_at": started_at,
            "slurm": dict(slurm or {}),
        },
    )
    return run


def run_samples(*, experiment_id: int, key: RunKey, trace: bytes) -> None:
    Run.objects.filter(
        experiment_id=experiment_id,
        config_index=key.config_index,
        repeat_index=key.repeat_index,
        attempt=key.attempt,
    ).update(trace=trace)


def _tail(path: str) -> tuple[bytes, str]:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return b"", ""
    return data, data[-LOG_TAIL_CHARS * 4 :].decode("utf-8", errors="replace")[-LOG_TAIL_CHARS:]


def run_finish(*, experiment_id: int, code: str, result: RunResult) -> Run:
    key = result.key
    run, _created = Run.objects.get_or_create(
        experiment_id=experiment_id,
        config_index=key.config_index,
        repeat_index=key.repeat_index,
        attempt=key.attempt,
        defaults={"hyperparameters": result.hyperparameters, "started_at": result.started_at},
    )
    energy = result.energy
    run.hyperparameters = result.hyperparameters
    run.status = result.status
    run.started_at = result.started_at
    run.ended_at = result.ended_at
    run.duration_s = result.duration_s
    run.exit_code = result.exit_code
    run.error = result.error[:10000]
    run.metrics = result.metrics
    run.gpu_energy_j = energy.gpu.value
    run.gpu_method = energy.gpu.method
    run.gpu_uuid = energy.gpu_uuid
    run.gpu_foreground_j = energy.gpu_foreground.value
    run.gpu_foreground_method = energy.gpu_foreground.method
    run.cpu_energy_j = energy.cpu.value
    run.cpu_method = energy.cpu.method
    run.cpu_foreground_j = energy.cpu_foreground.value
    run.cpu_foreground_method = energy.cpu_foreground.method
    run.dram_energy_j = energy.dram.value
    run.dram_method = energy.dram.method
    run.provenance = {
        "gpu": asdict(energy.gpu),
        "gpu_foreground": asdict(energy.gpu_foreground),
        "cpu": asdict(energy.cpu),
        "cpu_foreground": asdict(energy.cpu_foreground),
        "dram": asdict(energy.dram),
        "flags": list(energy.flags),
        "gpu_uuid": energy.gpu_uuid,
    }
    run.device_state = energy.device_state
    run.device_settings_key = str(energy.device_state.get("settings_key", ""))[:500]
    for name, value in energy.summaries.items():
        # Summaries are named after the Run fields (gpu_power_avg_w, ...).
        if name.startswith("gpu_") and hasattr(run, name):
            setattr(run, name, value)
    run.flags = sorted(set(energy.flags) | set(energy.gpu.flags) | set(energy.cpu.flags))
    coverage = result.coverage
    if coverage is not None:
        run.coverage_percent = coverage.percent
        run.coverage_longest_gap_s = coverage.longest_gap_s
        run.coverage_verdict = coverage.verdict
        run.coverage_background_runs = coverage.background_runs
        run.provenance["coverage"] = {"advice": coverage.advice, "gaps": coverage.gaps}
    run.trace = result.trace
    # The factors of this moment: a host's factors changed later leave this run alone.
    host = Host.objects.filter(experiments__id=experiment_id).first()
    run.factors = host_factors(host).to_dict()
    data, tail = _tail(result.log_path)
    run.log_tail = tail
    if data:
        name = f"{code}/run_{key.config_index}_{key.repeat_index}_{key.attempt}.log"
        run.log.save(name, ContentFile(data), save=False)
    run.save()
    _update_totals(experiment_id)
    return run


def _update_totals(experiment_id: int) -> None:
    runs = Run.objects.filter(experiment_id=experiment_id)
    finished = runs.exclude(status__in=Run.UNFINISHED_STATUSES)
    totals = finished.aggregate(gpu=Sum("gpu_energy_j"), cpu=Sum("cpu_energy_j"))
    verdicts = set(finished.values_list("coverage_verdict", flat=True))
    worst = worst_verdict(verdicts)
    done = finished.values("config_index", "repeat_index").distinct().count()
    Experiment.objects.filter(id=experiment_id).update(
        gpu_energy_j=totals["gpu"],
        cpu_energy_j=totals["cpu"],
        worst_verdict=worst,
        runs_done=done,
    )


def background_run_start(*, experiment_id: int, record: BackgroundRunRecord) -> BackgroundRun:
    run, _created = BackgroundRun.objects.update_or_create(
        experiment_id=experiment_id,
        index=record.index,
        defaults={"started_at": record.started_at},
    )
    return run


def background_run_finish(
    *, experiment_id: int, code: str, record: BackgroundRunRecord
) -> BackgroundRun:
    run, _created = BackgroundRun.objects.get_or_create(
        experiment_id=experiment_id, index=record.index, defaults={"started_at": record.started_at}
    )
    run.ended_at = record.ended_at
    run.exit_code = record.exit_code
    run.stopped = record.stopped
    data, tail = _tail(record.log_path)
    run.log_tail = tail
    if data:
        run.log.save(f"{code}/background_{record.index}.log", ContentFile(data), save=False)
    run.save()
    return run
