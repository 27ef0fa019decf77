"""Exports of one experiment: CSV (a row per run) and Wattlab's JSON."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from experiments.models import Experiment
from experiments.permissions import _get_experiment_for_user

RUN_FIELDS = [
    "config_index",
    "repeat_index",
    "attempt",
    "status",
    "started_at",
    "ended_at",
    "duration_s",
    "exit_code",
    "gpu_energy_j",
    "gpu_method",
    "gpu_foreground_j",
    "cpu_energy_j",
    "cpu_method",
    "dram_energy_j",
    "dram_method",
    "gpu_power_avg_w",
    "gpu_power_max_w",
    "gpu_util_avg",
    "gpu_temp_max_c",
    "gpu_memory_max_mib",
    "coverage_percent",
    "coverage_longest_gap_s",
    "coverage_verdict",
    "imported",
]


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def experiment_document(experiment: Experiment) -> dict[str, Any]:
    """Everything a script needs about one experiment, JSON-ready (two queries)."""
    runs = experiment.runs.defer("trace", "log_tail").order_by(
        "config_index", "repeat_index", "attempt"
    )
    return {
        "code": str(experiment.code),
        "name": experiment.name,
        "owner": experiment.owner.username if experiment.owner else None,
        "mode": experiment.mode,
        "status": experiment.status,
        "imported": experiment.imported,
        "foreground_workload": experiment.foreground_workload.name,
        "background_workload": (
            experiment.background_workload.name if experiment.background_workload else None
        ),
        "created_at": _iso(experiment.created_at),
        "started_at": _iso(experiment.started_at),
        "ended_at": _iso(experiment.ended_at),
        "runs_done": experiment.runs_done,
        "total_runs": experiment.total_runs,
        "submitted_config": experiment.submitted_config,
        "runs": [
            {f: _iso(getattr(run, f)) for f in RUN_FIELDS}
            | {
                "hyperparameters": run.hyperparameters,
                "metrics": run.metrics,
                "flags": run.flags,
                "provenance": run.provenance,
                "units": {"energy": "J", "power": "W", "duration": "s", "coverage": "%"},
            }
            for run in runs
        ],
        "background_runs": [
            {
                "index": b.index,
                "started_at": _iso(b.started_at),
                "ended_at": _iso(b.ended_at),
                "exit_code": b.exit_code,
                "stopped": b.stopped,
            }
            for b in experiment.background_runs.defer("log_tail").order_by("index")
        ],
    }


def experiment_csv(experiment: Experiment) -> str:
    runs = list(
        experiment.runs.defer("trace", "log_tail").order_by(
            "config_index", "repeat_index", "attempt"
        )
    )
    hp_names = sorted({k for r in runs for k in (r.hyperparameters or {})})
    metric_names = sorted({k for r in runs for k in (r.metrics or {})})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["experiment", "mode"]
        + RUN_FIELDS
        + [f"hp_{n}" for n in hp_names]
        + [f"metric_{n}" for n in metric_names]
        + ["flags"]
    )
    for run in runs:
        writer.writerow(
            [str(experiment.code), experiment.mode]
            + [_iso(getattr(run, f)) for f in RUN_FIELDS]
            + [(run.hyperparameters or {}).get(n, "") for n in hp_names]
            + [(run.metrics or {}).get(n, "") for n in metric_names]
            + [";".join(str(f) for f in run.flags or [])]
        )
    return out.getvalue()


_QS = Experiment.objects.select_related("owner", "foreground_workload", "background_workload")


@login_required
@require_GET
def experiment_export(request: HttpRequest, code: str, fmt: str) -> HttpResponse:
    if fmt not in {"csv", "json"}:
        raise Http404("Exports are .csv or .json.")
    experiment = _get_experiment_for_user(request.user, code, queryset=_QS)
    if fmt == "json":
        response: HttpResponse = JsonResponse(
            experiment_document(experiment), json_dumps_params={"indent": 1}
        )
    else:
        response = HttpResponse(experiment_csv(experiment), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="wattlab-{experiment.code}.{fmt}"'
    return response
