"""Runs as the earlier profiler's CSV (``raw_data.csv`` columns), so its analysis
scripts keep working.

The profiler's 87 columns come first, in its order, filled for the fields Wattlab has
(``bg_note`` and ``bg_log_directory`` stay empty). Nothing is dropped: a metric with no
``perf_*`` column of the profiler gets its own ``perf_<name>`` column after them, and
``wattlab_*`` columns say how each energy figure was measured, because the profiler's
figures (1 s power sum, whole-machine RAPL) and Wattlab's are not the same quantity.
"""

from __future__ import annotations

import csv
import io
import zoneinfo
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from experiments.exports import csv_row
from experiments.legacy.results import ENERGY_COLUMNS
from experiments.models import Experiment, Run
from experiments.mutation import SpaceError, parse_space

LEGACY_COLUMNS = [
    "experiment_id", "timestamp", "repository", "model", "training_success",
    "duration_seconds", "retries", "hyperparam_alpha", "hyperparam_batch_size",
    "hyperparam_dropout", "hyperparam_epochs", "hyperparam_kfold", "hyperparam_learning_rate",
    "hyperparam_max_iter", "hyperparam_seed", "hyperparam_weight_decay", "perf_accuracy",
    "perf_best_val_accuracy", "perf_map", "perf_precision", "perf_rank1", "perf_rank5",
    "perf_recall", "perf_test_accuracy", "perf_test_loss", "perf_eval_loss",
    "perf_final_training_loss", "perf_eval_samples_per_second", "perf_top1_accuracy",
    "perf_top5_accuracy", "perf_top10_accuracy", "perf_top20_accuracy",
    "energy_cpu_pkg_joules", "energy_cpu_ram_joules", "energy_cpu_total_joules",
    "energy_gpu_avg_watts", "energy_gpu_max_watts", "energy_gpu_min_watts",
    "energy_gpu_total_joules", "energy_gpu_temp_avg_celsius", "energy_gpu_temp_max_celsius",
    "energy_gpu_util_avg_percent", "energy_gpu_util_max_percent", "experiment_source",
    "num_mutated_params", "mutated_param", "mode", "error_message", "fg_repository",
    "fg_model", "fg_duration_seconds", "fg_training_success", "fg_retries",
    "fg_error_message", "fg_hyperparam_alpha", "fg_hyperparam_batch_size",
    "fg_hyperparam_dropout", "fg_hyperparam_epochs", "fg_hyperparam_kfold",
    "fg_hyperparam_learning_rate", "fg_hyperparam_max_iter", "fg_hyperparam_seed",
    "fg_hyperparam_weight_decay", "fg_perf_accuracy", "fg_perf_best_val_accuracy",
    "fg_perf_map", "fg_perf_precision", "fg_perf_rank1", "fg_perf_rank5", "fg_perf_recall",
    "fg_perf_test_accuracy", "fg_perf_test_loss", "fg_energy_cpu_pkg_joules",
    "fg_energy_cpu_ram_joules", "fg_energy_cpu_total_joules", "fg_energy_gpu_avg_watts",
    "fg_energy_gpu_max_watts", "fg_energy_gpu_min_watts", "fg_energy_gpu_total_joules",
    "fg_energy_gpu_temp_avg_celsius", "fg_energy_gpu_temp_max_celsius",
    "fg_energy_gpu_util_avg_percent", "fg_energy_gpu_util_max_percent", "bg_repository",
    "bg_model", "bg_note", "bg_log_directory",
]  # fmt: skip
WATTLAB_COLUMNS = [
    "wattlab_experiment",
    "wattlab_status",
    "wattlab_imported",
    "wattlab_gpu_method",
    "wattlab_cpu_method",
    "wattlab_dram_method",
    "wattlab_flags",
]
SUCCESS_MESSAGE = "Training completed successfully"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _runs(items: Iterable[Experiment | Run]) -> list[Run]:
    runs: list[Run] = []
    experiment_ids: list[int] = []
    for item in items:
        if isinstance(item, Experiment):
            experiment_ids.append(item.id)
        else:
            runs.append(item)
    related = ("experiment__foreground_workload", "experiment__background_workload")
    if experiment_ids:
        runs += list(
            Run.objects.filter(experiment_id__in=experiment_ids)
            .select_related(*related)
            .order_by("experiment_id", "config_index", "repeat_index", "attempt")
        )
    return runs


def _names(workload: Any) -> tuple[str, str]:
    if workload is None:
        return "", ""
    return workload.legacy_repository or workload.name, workload.legacy_model or ""


def _row(
    run: Run, tz: zoneinfo.ZoneInfo, defaults_cache: dict[int, dict[str, Any]]
) -> dict[str, str]:
    experiment = run.experiment
    workload = experiment.foreground_workload
    repository, model = _names(workload)
    legacy = (run.provenance or {}).get("legacy") or {}
    parallel = experiment.mode == Experiment.Mode.PARALLEL
    if run.legacy_id:
        run_id = run.legacy_id
    else:
        run_id = f"{repository}_{model or 'default'}_wattlab{run.pk:05d}"
        if parallel:
            run_id += "_parallel"
    timestamp = ""
    if run.ended_at is not None:
        timestamp = run.ended_at.astimezone(tz).replace(tzinfo=None).isoformat()
    succeeded = run.status == Run.Status.SUCCEEDED
    retries = legacy.get("retries", run.attempt)
    error = legacy.get("error_message") or run.error or (SUCCESS_MESSAGE if succeeded else "")
    fg: dict[str, str] = {
        "repository": repository,
        "model": model,
        "training_success": _text(succeeded),
        "duration_seconds": _text(run.duration_s),
        "retries": _text(retries),
        "error_message": error,
    }
    for name, value in (run.hyperparameters or {}).items():
        fg[f"hyperparam_{name}"] = _text(value)
    for name, value in (run.metrics or {}).items():
        fg[f"perf_{name}"] = _text(value)
    for column, attr in ENERGY_COLUMNS.items():
        fg[column] = _text(getattr(run, attr))
    if run.cpu_energy_j is not None and run.dram_energy_j is not None:
        fg["energy_cpu_total_joules"] = _text(round(run.cpu_energy_j + run.dram_energy_j, 6))
    if workload.id not in defaults_cache:
        try:
            defaults_cache[workload.id] = {
                p.name: p.default for p in parse_space(workload.hyperparameters)
            }
        except SpaceError:
            defaults_cache[workload.id] = {}
    defaults = defaults_cache[workload.id]
    mutated = [
        k for k, v in (run.hyperparameters or {}).items() if k in defaults and v != defaults[k]
    ]
    legacy_batch = (experiment.submitted_config or {}).get("legacy") or {}
    row: dict[str, str] = {
        "experiment_id": run_id,
        "timestamp": timestamp,
        **fg,
        "experiment_source": legacy_batch.get("experiment_source", "wattlab"),
        "num_mutated_params": str(len(mutated)),
        "mutated_param": mutated[0] if len(mutated) == 1 else "",
        "mode": "parallel" if parallel else "",
        "wattlab_experiment": str(experiment.code),
        "wattlab_status": run.status,
        "wattlab_imported": _text(run.imported),
        "wattlab_gpu_method": run.gpu_method,
        "wattlab_cpu_method": run.cpu_method,
        "wattlab_dram_method": run.dram_method,
        "wattlab_flags": ";".join(run.flags or []),
    }
    if parallel:
        # The profiler repeated a parallel run's foreground values under fg_*.
        for key, value in fg.items():
            row[f"fg_{key}"] = value
        bg_repository, bg_model = _names(experiment.background_workload)
        if not bg_repository:
            bg = legacy_batch.get("background") or {}
            bg_repository, bg_model = bg.get("repository", ""), bg.get("model", "")
        row["bg_repository"], row["bg_model"] = bg_repository, bg_model
    return row


def legacy_csv(items: Iterable[Experiment | Run], *, timezone: str | None = None) -> str:
    """Experiments (all their runs) or runs, as the earlier profiler's CSV text.

    Timestamps are the runs' end times in ``timezone`` (default TIME_ZONE) without an
    offset, as the profiler wrote them.
    """
    tz = zoneinfo.ZoneInfo(timezone or settings.TIME_ZONE)
    cache: dict[int, dict[str, Any]] = {}
    rows = [_row(run, tz, cache) for run in _runs(items)]
    known = set(LEGACY_COLUMNS) | set(WATTLAB_COLUMNS)
    extra = sorted({c for row in rows for c in row if c not in known})
    # Parallel runs' extra metrics keep only the plain perf_ column.
    extra = [c for c in extra if not c.startswith("fg_")]
    out = io.StringIO()
    writer = csv.DictWriter(
        out,
        fieldnames=LEGACY_COLUMNS + extra + WATTLAB_COLUMNS,
        extrasaction="ignore",
        lineterminator="\n",
    )
    writer.writeheader()
    writer.writerows(csv_row(row) for row in rows)
    return out.getvalue()
