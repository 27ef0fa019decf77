"""import_legacy_results: the earlier profiler's history as imported runs."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from django.core.management import CommandError, call_command

from experiments.history import seen_configuration_keys
from experiments.legacy.results import read_results
from experiments.models import Experiment, Run, Workload
from experiments.mutation import config_key, parse_space

COPY = re.compile(r"^(default|mutation_1x|mutation_2x_safe)__")


def unique_runs(path) -> int:
    """Counted independently of the importer: a run is its id without the prefix of
    the profiler's second copy plus its timestamp."""
    with path.open(encoding="utf-8", newline="") as fh:
        return len({(COPY.sub("", r["experiment_id"]), r["timestamp"]) for r in csv.DictReader(fh)})


def _import(path):
    out, err = io.StringIO(), io.StringIO()
    call_command("import_legacy_results", str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_all_of_raw_data_imports_once_and_reimport_adds_nothing(workloads, legacy_dir):
    path = legacy_dir / "raw_data.csv"
    out, err = _import(path)
    expected = unique_runs(path)
    # 1,225 rows, 210 of them the second copy of a run; every pair agrees on duration
    # and energy (105 hold them in fg_* in one copy and the plain columns in the other).
    assert expected == 1015
    assert Run.objects.filter(imported=True).count() == expected
    assert err == ""
    assert (
        "210 duplicate rows merged (default__ 20, mutation_1x__ 73, mutation_2x_safe__ 117)" in out
    )
    assert Experiment.objects.filter(imported=True).count() == 87
    # Said once: "1015 runs imported into 87 new experiments".
    assert "1015 runs imported into 87 new experiments" in out
    assert out.count("runs imported into") == 1
    experiments = Experiment.objects.filter(imported=True)
    assert experiments.count() > 0
    assert set(experiments.values_list("status", flat=True)) == {"imported"}
    assert set(experiments.values_list("source", flat=True)) == {"legacy"}
    assert experiments.filter(owner__isnull=False).count() == 0
    before = (Experiment.objects.count(), Run.objects.count())
    out, _ = _import(path)
    assert (Experiment.objects.count(), Run.objects.count()) == before
    assert "0 runs imported" in out and "1015 already imported" in out


def test_energy_methods_are_recorded_as_what_they_were(workloads, legacy_dir):
    _import(legacy_dir / "raw_data.csv")
    run = Run.objects.get(legacy_id="MRT-OAST_default_001", ended_at__date=dt.date(2025, 11, 18))
    assert run.gpu_energy_j == pytest.approx(331876.33)
    assert run.gpu_method == Run.Method.LEGACY_POWER_SUM
    assert run.cpu_energy_j == pytest.approx(37083.15)
    assert run.dram_energy_j == pytest.approx(2904.51)
    assert run.cpu_method == run.dram_method == Run.Method.LEGACY_MACHINE_RAPL
    assert run.gpu_foreground_j is None  # the profiler could not tell
    assert "legacy_gpu_1s_power_sum" in run.flags and "legacy_cpu_whole_machine" in run.flags
    assert run.experiment.mode == "solo"
    assert run.hyperparameters == {
        "dropout": 0.2,
        "epochs": 10,
        "learning_rate": 0.0001,
        "seed": 1334,
        "weight_decay": 0.0,
    }
    assert type(run.hyperparameters["epochs"]) is int
    assert type(run.hyperparameters["weight_decay"]) is float
    # Its "accuracy" is 4692.0: the profiler's regex took the count from a line like
    # "Accuracy: 4692/5000 = 0.9384" (the other copy of the row holds it). It is
    # imported as recorded, not corrected.
    assert run.metrics == {"accuracy": 4692.0, "precision": 0.9834, "recall": 0.808854}


def test_parallel_rows_use_fg_columns_and_keep_the_background(workloads, legacy_dir):
    _import(legacy_dir / "raw_data.csv")
    # This row has empty plain columns: everything is under fg_*.
    run = Run.objects.get(
        legacy_id="pytorch_resnet_cifar10_resnet20_012_parallel",
        ended_at__date=dt.date(2025, 12, 4),
    )
    experiment = run.experiment
    assert experiment.mode == "parallel"
    assert experiment.foreground_workload.name == "pytorch_resnet_cifar10-resnet20"
    bg = experiment.submitted_config["legacy"]["background"]
    assert bg["repository"] and bg["model"]
    assert experiment.background_workload.legacy_repository == bg["repository"]
    assert run.status == Run.Status.SUCCEEDED
    assert "legacy_cpu_includes_background" in run.flags
    assert run.gpu_energy_j is not None


def test_duplicate_rows_become_one_run_with_both_ids(workloads, legacy_dir):
    _import(legacy_dir / "raw_data.csv")
    # pytorch_resnet_cifar10_resnet20_003 appears as itself and as default__...; only
    # one copy has perf_best_val_accuracy: the merged run keeps it.
    runs = Run.objects.filter(legacy_id="pytorch_resnet_cifar10_resnet20_003")
    twins = [r for r in runs if len(r.provenance["legacy"]["ids"]) == 2]
    assert len(twins) == 1
    assert set(twins[0].provenance["legacy"]["ids"]) == {
        "pytorch_resnet_cifar10_resnet20_003",
        "default__pytorch_resnet_cifar10_resnet20_003",
    }
    assert twins[0].metrics["best_val_accuracy"] == 91.71


def test_floats_are_stored_as_the_profiler_passed_them(workloads, legacy_dir):
    _import(legacy_dir / "raw_data.csv")
    run = Run.objects.get(legacy_id="examples_siamese_040")
    recorded = run.provenance["legacy"]["recorded_hyperparameters"]["learning_rate"]
    assert recorded == 0.005266524371597438
    assert run.hyperparameters == {"learning_rate": 0.005267}


def test_missing_workloads_get_an_inactive_placeholder(db, legacy_dir):
    _import(legacy_dir / "raw_data.csv")
    placeholder = Workload.objects.get(legacy_repository="MRT-OAST", legacy_model="default")
    assert not placeholder.is_active and placeholder.source == "legacy"
    assert Run.objects.filter(experiment__foreground_workload=placeholder).exists()
    # Importing the registry afterwards turns the placeholder into the real workload.
    call_command(
        "import_legacy_workloads",
        str(legacy_dir / "models_config.json"),
        root=str(legacy_dir),
        stdout=io.StringIO(),
    )
    placeholder.refresh_from_db()
    assert placeholder.is_active and placeholder.argv


def test_imported_history_is_avoided_by_new_plans(workloads, legacy_dir):
    _import(legacy_dir / "raw_data.csv")
    workload = Workload.objects.get(name="mrt-oast-default")
    solo = seen_configuration_keys(workload=workload, mode="solo")
    parallel = seen_configuration_keys(workload=workload, mode="parallel")
    space = parse_space(workload.hyperparameters)
    # The CSV's epochs=8 run (the profiler recorded only what it changed) is found
    # as the full configuration, whatever the int/float spelling.
    full = {p.name: p.default for p in space}
    assert config_key({**full, "epochs": 8.0}) in solo
    assert solo != parallel  # separate histories


BAD_CSV = (
    "experiment_id,timestamp,repository,model,training_success,duration_seconds,"
    "hyperparam_epochs,energy_gpu_total_joules,mode,fg_repository,fg_model,fg_training_success\n"
    "ok_001,2025-11-18T20:37:37.187907,examples,mnist,True,10.5,7,100.0,,,,\n"
    "bad_002,yesterday,examples,mnist,True,10.5,7,100.0,,,,\n"
    "bad_003,2025-11-18T21:00:00,examples,mnist,True,ten,7,100.0,,,,\n"
    "bad_004,2025-11-18T21:10:00,,,True,10,7,100.0,parallel,,,\n"
    "bad_005,2025-11-18T21:20:00,examples,mnist,maybe,10,7,100.0,,,,\n"
    "ok_006,2025-11-18T21:30:00,,,,12,8,200.0,parallel,examples,mnist,True\n"
    "bad_007,2025-11-18T21:40:00,examples,mnist,True,10,7,100.0,,,,,surplus\n"
)


def test_an_unknown_background_keeps_its_names(db, tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text(
        "experiment_id,timestamp,repository,model,training_success,mode,bg_repository,bg_model\n"
        "a_001_parallel,2025-11-18T20:00:00,examples,mnist,True,parallel,other_repo,big\n",
        encoding="utf-8",
    )
    out, _ = _import(path)
    experiment = Experiment.objects.get()
    assert experiment.mode == "parallel" and experiment.background_workload is None
    assert experiment.submitted_config["legacy"]["background"] == {
        "repository": "other_repo",
        "model": "big",
    }
    assert "background other_repo/big has no workload" in out


def test_bad_rows_are_reported_by_line_and_the_rest_imports(db, tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text(BAD_CSV, encoding="utf-8")
    out, err = _import(path)
    assert err.splitlines() == [
        "line 3: timestamp: 'yesterday' is not an ISO date and time (row skipped)",
        "line 4: duration_seconds: 'ten' is not a number (row skipped)",
        "line 5: repository: is empty (and fg_repository too) (row skipped)",
        "line 6: training_success: 'maybe' is not True or False (row skipped)",
        "line 8: 1 more cell(s) than the header has columns (row skipped)",
    ]
    assert sorted(Run.objects.values_list("legacy_id", flat=True)) == ["ok_001", "ok_006"]
    assert "5 bad rows" in out


def test_a_file_without_the_needed_columns_is_refused(db, tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text("id,when\n1,2\n", encoding="utf-8")
    with pytest.raises(CommandError, match="column 'experiment_id' is missing"):
        _import(path)


def test_reading_never_touches_the_database(legacy_dir):
    # read_results is plain parsing; this runs without the db fixture.
    result = read_results((legacy_dir / "raw_data.csv").read_text(encoding="utf-8"), tz=dt.UTC)
    assert (result.rows, result.duplicates, len(result.runs)) == (1225, 210, 1015)
    assert result.merged_by_prefix == {
        "default__": 20,
        "mutation_1x__": 73,
        "mutation_2x_safe__": 117,
    }
