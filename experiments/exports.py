"""The Wattlab JSON document of an experiment (``submit --json``, ``export``) and CSV,
and a comparison's (Compare's CSV, the API's comparison).

Every energy figure carries its method; a figure that could not be measured is null
with method "unavailable", never 0.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from core.contract import METHOD_INFO
from core.runlabel import label_of
from experiments import carbon, comparison
from experiments.comparison import Table
from experiments.figures import FIGURES
from experiments.models import Experiment, Run
from experiments.selectors.compare import CompareData, methods_text


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


#: Significant digits a derived number (a duration, a percentage, kWh) keeps: binary
#: floats carry noise past the 15th ("46.025000000000006"); no figure here has 12.
SIGNIFICANT = 12


def clean_number(value: Any, resolution: float | None = None) -> Any:
    """A float as it goes out: at ``resolution`` (a meter's step, in the value's unit)
    where given, else to SIGNIFICANT digits. Anything else as it is."""
    if not isinstance(value, float) or not math.isfinite(value):
        return value
    if resolution:
        return round(value, max(0, round(-math.log10(resolution))))
    return float(f"{value:.{SIGNIFICANT}g}")


def energy_j(value: Any, method: str) -> Any:
    """An energy figure at its method's resolution (core.contract: 1 µJ by default)."""
    info = METHOD_INFO.get(method)
    return clean_number(value, info.resolution_j if info else 1e-6)


def run_document(run: Run) -> dict[str, Any]:
    # Counted from 1, as the pages and the run's URL name it (core.runlabel).
    label = label_of(run)
    config, repeat, attempt = (int(part) for part in label.split("."))
    return {
        "run": label,
        "config": config,
        "repeat": repeat,
        "attempt": attempt,
        "status": run.status,
        "hyperparameters": run.hyperparameters,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "duration_s": clean_number(run.duration_s),
        "exit_code": run.exit_code,
        "metrics": run.metrics,
        "energy": {
            "gpu_j": energy_j(run.gpu_energy_j, run.gpu_method),
            "gpu_method": run.gpu_method or "unavailable",
            "gpu_uuid": run.gpu_uuid or None,
            # An estimate (a split by per-process utilisation), never a measurement.
            "gpu_foreground_j": energy_j(run.gpu_foreground_j, run.gpu_foreground_method),
            "gpu_foreground_method": run.gpu_foreground_method or "unavailable",
            "cpu_j": energy_j(run.cpu_energy_j, run.cpu_method),
            "cpu_method": run.cpu_method or "unavailable",
            # The foreground's part of the CPU figure: an estimate, never a measurement.
            "cpu_foreground_j": energy_j(run.cpu_foreground_j, run.cpu_foreground_method),
            "cpu_foreground_method": run.cpu_foreground_method or "unavailable",
            "dram_j": energy_j(run.dram_energy_j, run.dram_method),
            "dram_method": run.dram_method or "unavailable",
        },
        "coverage": {
            "percent": clean_number(run.coverage_percent),
            "longest_gap_s": clean_number(run.coverage_longest_gap_s),
            "verdict": run.coverage_verdict or None,
        },
        "device": device_document(run),
        "carbon_and_cost": carbon_document(run),
        # The Slurm job it ran in (cluster, job_id, partition, account, node, gpus):
        # join with `sacct -M CLUSTER -j JOB_ID`. {} outside Slurm.
        "slurm": run.slurm or {},
        "flags": run.flags,
        "error": run.error,
    }


def device_document(run: Run) -> dict[str, Any]:
    """The GPUs' settings during the run: the key comparable runs share, and the record
    (power limit, clocks, clock event reasons, sensor periods, changes)."""
    state = run.device_state or {}
    return {
        "settings_key": run.device_settings_key or None,
        "gpus": state.get("gpus", []),
        "changes": state.get("changes", []),
    }


def carbon_document(run: Run, factors: carbon.Factors | None = None) -> dict[str, Any]:
    """Every energy figure in kWh, kgCO2e and cost, with the factors used (the run's own,
    kept when it finished, unless others are given)."""
    factors = factors if factors is not None else run.stored_factors
    figures = {}
    for figure in FIGURES:
        fp = carbon.Footprint.of(figure.value(run), factors)
        figures[figure.key] = {
            "kwh": clean_number(fp.kwh),
            "kg_co2e": clean_number(fp.kg_co2e),
            "cost": clean_number(fp.cost),
        }
    return {"factors": factors.to_dict() if factors else None, "figures": figures}


def experiment_document(experiment: Experiment) -> dict[str, Any]:
    runs = Run.objects.filter(experiment=experiment).order_by(
        "config_index", "repeat_index", "attempt"
    )
    background = experiment.background_runs.order_by("index")
    return {
        "code": str(experiment.code),
        "name": experiment.name,
        "mode": experiment.mode,
        "status": experiment.status,
        "error": experiment.error,
        "target": experiment.target,
        "host": experiment.host.hostname if experiment.host_id and experiment.host else None,
        "gpu_index": experiment.gpu_index,
        **slurm_fields(experiment),
        "created_at": _iso(experiment.created_at),
        "started_at": _iso(experiment.started_at),
        "ended_at": _iso(experiment.ended_at),
        "total_runs": experiment.total_runs,
        "submitted_config": experiment.submitted_config,
        "runs": [run_document(run) for run in runs],
        "background_runs": [
            {
                "index": bg.index,
                "started_at": _iso(bg.started_at),
                "ended_at": _iso(bg.ended_at),
                "exit_code": bg.exit_code,
                "stopped": bg.stopped,
            }
            for bg in background
        ],
        "events": experiment.events,
    }


def slurm_fields(experiment: Experiment) -> dict[str, Any]:
    """The Slurm job of an experiment, as the API and the JSON document carry it
    (empty strings for another target, or before its job is submitted)."""
    return {
        "slurm_job_id": experiment.slurm_job_id,
        "slurm_state": experiment.slurm_state,
        "slurm_reason": experiment.slurm_reason,
        "slurm_node": experiment.slurm_node,
        "slurm": experiment.slurm_display,
    }


#: A run's Slurm job, one column per field of ``Run.slurm``.
SLURM_COLUMNS = ["cluster", "job_id", "partition", "account", "node", "gpus"]

CSV_COLUMNS = [
    "experiment", "name", "mode", "run", "config", "repeat", "attempt", "status",
    "hyperparameters", "started_at", "ended_at", "duration_s", "exit_code", "metrics",
    "gpu_j", "gpu_method", "gpu_uuid", "gpu_foreground_j", "gpu_foreground_method",
    "cpu_j", "cpu_method", "cpu_foreground_j", "cpu_foreground_method", "dram_j", "dram_method",
    "device_settings_key", "gpu_power_limit_w", "device_changes",
    "coverage_percent", "coverage_longest_gap_s", "coverage_verdict",
    "carbon_intensity_g_per_kwh", "pue", "price_per_kwh", "currency", "factors_set_at",
    "factors_source",
]  # fmt: skip
CSV_COLUMNS += [f"slurm_{name}" for name in SLURM_COLUMNS]
# One kWh / kgCO2e / cost column per energy figure (a new figure adds its own).
CSV_COLUMNS += [f"{f.key}_{u}" for f in FIGURES for u in ("kwh", "kgco2e", "cost")]


def _power_limits(device: dict[str, Any]) -> Any:
    """The GPUs' power limits: a number for one GPU, "300+300" for several."""
    limits = [g.get("power_limit_w") for g in device["gpus"]]
    if not limits or any(v is None for v in limits):
        return None
    return limits[0] if len(limits) == 1 else "+".join(f"{v:g}" for v in limits)


def _carbon_cells(doc: dict[str, Any]) -> dict[str, Any]:
    factors = doc["factors"] or {}
    cells: dict[str, Any] = {
        "carbon_intensity_g_per_kwh": factors.get("carbon_intensity_g_per_kwh"),
        "pue": factors.get("pue"),
        "price_per_kwh": factors.get("price_per_kwh"),
        "currency": factors.get("currency"),
        "factors_set_at": factors.get("set_at"),
        "factors_source": factors.get("source"),
    }
    for key, values in doc["figures"].items():
        cells[f"{key}_kwh"] = values["kwh"]
        cells[f"{key}_kgco2e"] = values["kg_co2e"]
        cells[f"{key}_cost"] = values["cost"]
    return cells


#: A spreadsheet runs a cell that starts with one of these as a formula
#: (``=HYPERLINK(...)``, ``@SUM(...)``, ``-2+3+cmd|...``): a run name or a metric
#: read from a training log could carry one into whoever opens the export.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """The value as it may go into a CSV cell: text that a spreadsheet would run as a
    formula gets a leading apostrophe; numbers (``-1.5`` too) stay numbers."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def csv_row(row: Any) -> Any:
    """:func:`csv_cell` over a row (a dict for ``DictWriter`` or a list)."""
    if isinstance(row, dict):
        return {key: csv_cell(value) for key, value in row.items()}
    return [csv_cell(value) for value in row]


def experiment_csv(experiment: Experiment) -> str:
    """One row per run; hyperparameters and metrics as JSON text in their cells."""
    import json

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    doc = experiment_document(experiment)
    for run in doc["runs"]:
        writer.writerow(
            csv_row(
                {
                    "experiment": doc["code"],
                    "name": doc["name"],
                    "mode": doc["mode"],
                    "run": run["run"],
                    "config": run["config"],
                    "repeat": run["repeat"],
                    "attempt": run["attempt"],
                    "status": run["status"],
                    "hyperparameters": json.dumps(run["hyperparameters"], sort_keys=True),
                    "started_at": run["started_at"],
                    "ended_at": run["ended_at"],
                    "duration_s": run["duration_s"],
                    "exit_code": run["exit_code"],
                    "metrics": json.dumps(run["metrics"], sort_keys=True),
                    "gpu_j": run["energy"]["gpu_j"],
                    "gpu_method": run["energy"]["gpu_method"],
                    "gpu_uuid": run["energy"]["gpu_uuid"],
                    "gpu_foreground_j": run["energy"]["gpu_foreground_j"],
                    "gpu_foreground_method": run["energy"]["gpu_foreground_method"],
                    "cpu_j": run["energy"]["cpu_j"],
                    "cpu_method": run["energy"]["cpu_method"],
                    "cpu_foreground_j": run["energy"]["cpu_foreground_j"],
                    "cpu_foreground_method": run["energy"]["cpu_foreground_method"],
                    "device_settings_key": run["device"]["settings_key"],
                    "gpu_power_limit_w": _power_limits(run["device"]),
                    "device_changes": "; ".join(run["device"]["changes"]),
                    "dram_j": run["energy"]["dram_j"],
                    "dram_method": run["energy"]["dram_method"],
                    "coverage_percent": run["coverage"]["percent"],
                    "coverage_longest_gap_s": run["coverage"]["longest_gap_s"],
                    "coverage_verdict": run["coverage"]["verdict"],
                    **_carbon_cells(run["carbon_and_cost"]),
                    **{f"slurm_{k}": run["slurm"].get(k, "") for k in SLURM_COLUMNS},
                }
            )
        )
    return out.getvalue()


# --- Comparisons (Compare's CSV, the API's comparison) --------------------------------


def comparison_document(
    *,
    workload: str,
    table: Table,
    methods: str,
    finished_runs: int | None = None,
    runs_with_figure: int | None = None,
    runs_not_finite: int | None = None,
    experiment: str | None = None,
) -> dict[str, Any]:
    """A comparison as JSON: the selection (workload, and the experiment whose
    configurations it is limited to), its counts, then ``comparison.document``."""
    lacking = None
    if not methods:
        methods = methods_text(table.figure, table.methods)
    if finished_runs is not None and runs_with_figure is not None:
        lacking = finished_runs - runs_with_figure
    doc = comparison.document(table)
    return {
        "workload": workload,
        "experiment": experiment,
        "finished_runs": finished_runs,
        "runs_with_figure": runs_with_figure,
        "runs_lacking_figure": lacking,
        "runs_not_finite": runs_not_finite,
        "figure_methods": methods,
        **doc,
    }


def compare_document(data: CompareData) -> dict[str, Any]:
    """The comparison Compare shows for a workload, as its CSV and the API give it."""
    return comparison_document(
        workload=data.workload.name,
        table=data.table,
        methods=data.methods_text,
        finished_runs=data.finished_runs,
        runs_with_figure=data.total_runs,
        runs_not_finite=data.not_finite,
    )


def _ratio_cells(prefix: str, ratio: dict[str, Any] | None) -> dict[str, Any]:
    ratio = ratio or {}
    return {
        prefix: ratio.get("ratio"),
        f"{prefix}_ci95_low": ratio.get("ci95_low"),
        f"{prefix}_ci95_high": ratio.get("ci95_high"),
    }


def _side_cells(mode: str, unit: str, side: dict[str, Any]) -> dict[str, Any]:
    cells = {
        f"{mode}_n": side["n"],
        f"{mode}_median_{unit}": side["median"],
        f"{mode}_ci95_low_{unit}": side["ci95_low"],
        f"{mode}_ci95_high_{unit}": side["ci95_high"],
        f"{mode}_ci_coverage": side["ci_coverage"],
        f"{mode}_min_{unit}": side["min"],
        f"{mode}_max_{unit}": side["max"],
        f"{mode}_values_{unit}": " ".join(repr(v) for v in side["values"] or []),
        f"{mode}_duration_median_s": side["duration_median_s"],
    }
    if mode == "parallel":
        cells.update(
            {
                "parallel_coverage_median": side["coverage_median"],
                "parallel_coverage_min": side["coverage_min"],
                "parallel_left_out": side["left_out"],
                "parallel_left_out_coverage": " ".join(
                    "null" if c is None else repr(c) for c in side["left_out_coverage"]
                ),
                "parallel_included_short_of_good": side["included_short_of_good"],
            }
        )
    return cells


def comparison_csv(doc: dict[str, Any]) -> str:
    """One row per configuration of ``comparison_document``; what the selection is (the
    figure, its methods, the coverage rule, the interval methods, what was left out) is
    in columns of every row, so the file reads as it is in pandas or a spreadsheet: the
    first line is the header."""
    import json

    unit = str(doc["figure"]["unit"]).lower()
    sharing = [f.key for f in comparison.SHARING_FIGURES]
    rows = []
    for row in doc["rows"]:
        versus = row["parallel_over_solo"] or {}
        cells: dict[str, Any] = {
            "workload": doc["workload"],
            "figure": doc["figure"]["key"],
            "figure_label": doc["figure"]["label"],
            "unit": doc["figure"]["unit"],
            "configuration": json.dumps(row["configuration"], sort_keys=True),
            "measured_with": row["measured_with"],
            "device_settings": row["device_settings"],
            "imported": row["imported"],
            **_side_cells("solo", unit, row["solo"]),
            **_side_cells("parallel", unit, row["parallel"]),
            **_ratio_cells("slowdown", row["slowdown"]),
        }
        for key in sharing:
            cells.update(_ratio_cells(f"energy_ratio_{key}", row["energy_ratios"].get(key)))
        cells.update(
            {
                **_ratio_cells("parallel_over_solo", versus),
                "mann_whitney_p": versus.get("p_value"),
                "effect_size_rank_biserial": versus.get("effect_size"),
                "verdict": row["verdict"],
                "runs_needed_per_group": row["runs_needed_per_group"],
                "cannot_tell": row["cannot_tell"],
                "cannot_show": doc["cannot_show"],
                "figure_includes": row["figure_includes"],
                "figure_excludes": doc["figure"]["excludes"],
                "figure_methods": doc["figure_methods"],
                "coverage_rule": doc["coverage_rule"],
                "parallel_runs_left_out_in_all": doc["parallel_runs_left_out"],
                "finished_runs": doc["finished_runs"],
                "runs_with_figure": doc["runs_with_figure"],
                "runs_lacking_figure": doc["runs_lacking_figure"],
                "runs_not_finite": doc["runs_not_finite"],
                "median_interval": doc["intervals"]["median"],
                "ratio_interval": doc["intervals"]["ratio"],
            }
        )
        rows.append(cells)
    out = io.StringIO()
    fields = list(rows[0]) if rows else ["workload", "figure", "configuration"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for cells in rows:
        writer.writerow(csv_row(cells))
    return out.getvalue()
