"""legacy_csv: Wattlab runs in the earlier profiler's columns."""

from __future__ import annotations

import csv
import io
import math
import re

from django.core.management import call_command

from experiments.legacy.export import LEGACY_COLUMNS, legacy_csv
from experiments.models import Experiment, Run

# The profiler's second copies of a run carry one of these prefixes (written here, not
# taken from the importer, so the test counts runs independently of it).
_COPY = re.compile(r"^(default|mutation_1x|mutation_2x_safe)__")


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _original_runs(path) -> dict[tuple[str, str], dict[str, str]]:
    """The CSV's runs as the profiler meant them, computed here independently of the
    importer: duplicates merged, a parallel row's fg_* cell preferred."""
    runs: dict[tuple[str, str], dict[str, str]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            key = (_COPY.sub("", row["experiment_id"]), row["timestamp"])
            merged = runs.setdefault(key, {"ids": set()})
            merged["ids"].add(row["experiment_id"])
            for column, value in row.items():
                if value and not merged.get(column):
                    merged[column] = value
    identity = ("duration_seconds", "energy_gpu_total_joules", "energy_cpu_pkg_joules")
    for row in runs.values():
        if row.get("mode") != "parallel":
            continue
        stale = any(
            row.get(c) and row.get(f"fg_{c}") and row[c] != row[f"fg_{c}"] for c in identity
        )
        fg_columns = [c for c in row if c.startswith("fg_")]
        if stale:
            # The fg_* block is another run's (see results._fg_block_is_stale): the
            # export repeats the plain values there.
            for column in fg_columns:
                del row[column]
        for column in fg_columns:
            if not stale and row[column]:
                row[column.removeprefix("fg_")] = row[column]
        for column in list(row):
            if column != "ids" and not column.startswith(("fg_", "bg_", "experiment_")):
                row.setdefault(f"fg_{column}", row[column])
    return runs


def _same_number(a: str, b: str, *, places: int | None = None) -> bool:
    x, y = float(a), float(b)
    if places is not None:
        return round(x, places) == round(y, places)
    return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9)


def test_an_imported_csv_exports_with_its_columns_and_values(workloads, legacy_dir, tmp_path):
    path = legacy_dir / "raw_data.csv"
    call_command("import_legacy_results", str(path), stdout=io.StringIO())
    with path.open(encoding="utf-8", newline="") as fh:
        original_header = next(csv.reader(fh))
    text = legacy_csv(Experiment.objects.filter(imported=True))
    exported = _rows(text)
    header = next(csv.reader(io.StringIO(text)))
    assert header[: len(original_header)] == original_header == LEGACY_COLUMNS
    original = _original_runs(path)
    # 1,225 rows; 210 are a second copy of a run (20 default__, 73 mutation_1x__, 117
    # mutation_2x_safe__), each with the same timestamp and measurements as its twin.
    assert len(exported) == len(original) == 1015
    compared = 0
    for row in exported:
        source = original[(_COPY.sub("", row["experiment_id"]), row["timestamp"])]
        ids = source["ids"]
        # One id per run: the plain one when the profiler wrote both.
        assert row["experiment_id"] in ids
        assert len(ids) == 1 or not _COPY.match(row["experiment_id"])
        for column in original_header:
            want, got = source.get(column, ""), row[column]
            if column in ("bg_note", "bg_log_directory", "num_mutated_params", "mutated_param"):
                continue  # not fields Wattlab has
            if column.endswith("error_message") or column.endswith("retries"):
                continue  # filled for every run on export; compared below where recorded
            if column.removeprefix("fg_").startswith("hyperparam_") and want:
                # Stored as the profiler passed it (6 decimals), not as it recorded it.
                assert _same_number(want, got, places=6), (column, want, got)
            elif column.endswith("energy_cpu_total_joules") and want:
                assert _same_number(want, got) or abs(float(want) - float(got)) < 0.011
            elif column == "experiment_id":
                continue
            elif want and column not in (
                "experiment_id",
                "timestamp",
                "repository",
                "model",
                "training_success",
                "mode",
                "experiment_source",
                "fg_repository",
                "fg_model",
                "fg_training_success",
                "bg_repository",
                "bg_model",
            ):
                assert _same_number(want, got), (column, want, got)
            elif column in ("mode", "bg_repository", "bg_model", "experiment_source") or want:
                assert got == want, (row["experiment_id"], column, want, got)
            compared += 1
        if source.get("retries"):
            assert row["retries"] == source["retries"]
    assert compared > 1015 * 40


def test_metrics_without_a_profiler_column_get_their_own(workloads, legacy_dir, tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text(
        "experiment_id,timestamp,repository,model,training_success,perf_test_error\n"
        "a_001,2025-11-18T20:00:00,examples,mnist,True,0.015\n",
        encoding="utf-8",
    )
    call_command("import_legacy_results", str(path), stdout=io.StringIO())
    run = Run.objects.get()
    run.metrics = {**run.metrics, "f1": 0.9}
    run.save()
    (row,) = _rows(legacy_csv([run]))
    assert row["perf_test_error"] == "0.015" and row["perf_f1"] == "0.9"
    assert row["wattlab_imported"] == "True"


def test_a_wattlab_run_exports_its_methods_and_exact_values(workloads, legacy_dir, tmp_path):
    from experiments.models import Workload

    fg = Workload.objects.get(name="mrt-oast-default")
    bg = Workload.objects.get(name="examples-mnist")
    experiment = Experiment.objects.create(
        name="x", mode="parallel", foreground_workload=fg, background_workload=bg
    )
    run = Run.objects.create(
        experiment=experiment,
        config_index=0,
        hyperparameters={"epochs": 7, "learning_rate": 0.000123457},
        status=Run.Status.SUCCEEDED,
        duration_s=12.5,
        gpu_energy_j=1000.0,
        gpu_method=Run.Method.COUNTER,
        cpu_energy_j=300.0,
        cpu_method=Run.Method.RAPL,
        dram_energy_j=20.0,
        dram_method=Run.Method.RAPL,
        metrics={"accuracy": 0.9},
    )
    (row,) = _rows(legacy_csv([experiment]))
    assert row["repository"] == row["fg_repository"] == "MRT-OAST"
    assert row["hyperparam_epochs"] == "7" and row["hyperparam_learning_rate"] == "0.000123457"
    assert row["energy_cpu_total_joules"] == "320.0"
    assert row["mode"] == "parallel" and (row["bg_repository"], row["bg_model"]) == (
        "examples",
        "mnist",
    )
    assert (row["wattlab_gpu_method"], row["wattlab_cpu_method"]) == ("counter", "rapl")
    assert row["num_mutated_params"] == "2"
    assert row["experiment_id"].endswith("_parallel")
    assert run.pk
