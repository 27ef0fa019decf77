"""Every experiment file the earlier profiler ran imports (issue 10), kind by kind.

Each file is written here in the profiler's format (its ``settings/*.json``), the way
its archived stages, boundary tests, supplements and validation runs were written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from experiments import services
from experiments.expfile import experiment_file_from_dict
from experiments.legacy.experiment_files import LegacySettingsError, convert_settings
from experiments.models import Experiment, Workload


def _file(tmp_path: Path, data: dict[str, Any], name: str = "settings.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def _preview(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("import_legacy_settings", str(path), *args, stdout=out)
    return out.getvalue()


def _submit(path: Path, *args: str) -> list[Experiment]:
    get_user_model().objects.get_or_create(username="ana")
    before = set(Experiment.objects.values_list("id", flat=True))
    call_command(
        "import_legacy_settings",
        str(path),
        "--submit",
        "--owner",
        "ana",
        *args,
        stdout=io.StringIO(),
    )
    return list(Experiment.objects.exclude(id__in=before).order_by("id"))


# --------------------------------------------------------------------------- 1. modes


def test_modes_it_does_not_know_run_as_mutation_and_the_preview_says_so(workloads, tmp_path):
    path = _file(
        tmp_path,
        {
            "experiment_name": "archived_stage3",
            "mode": "nonparallel",
            "runs_per_config": 3,
            "experiments": [
                {"repo": "examples", "model": "mnist", "mode": "batch", "mutate": ["epochs"]},
                {"repo": "examples", "model": "mnist_rnn", "mutate": ["seed"]},  # file's mode
                {"repo": "examples", "model": "siamese", "mode": "default"},
                {"repo": "examples", "model": "mnist", "mode": "mutation", "mutate": ["seed"]},
            ],
        },
    )
    planned = convert_settings(json.loads(path.read_text()), filename=path.name)
    assert [p.mode for p in planned] == ["mutation", "mutation", "default", "mutation"]
    # As mutation: each of the 3 runs draws a configuration of its own.
    assert [(p.spec.configurations, p.spec.runs_per_config) for p in planned] == [
        (3, 1),
        (3, 1),
        (1, 3),
        (3, 1),
    ]
    assert planned[0].readings == [
        "experiments[0].mode 'batch' read as mutation (the profiler ran every mode other "
        "than parallel and default as mutation)"
    ]
    assert planned[1].readings == [
        "experiments[1]: the file's mode 'nonparallel' read as mutation (the profiler ran "
        "every mode other than parallel and default as mutation)"
    ]
    assert planned[2].readings == planned[3].readings == []
    out = _preview(path)
    assert "4 experiments" in out
    assert "note: experiments[0].mode 'batch' read as mutation" in out
    assert "note: experiments[1]: the file's mode 'nonparallel' read as mutation" in out
    notes = [line for line in out.splitlines() if "note:" in line]
    assert len(notes) == 2  # entries 2 and 3 said a mode Wattlab knows


def test_no_mode_anywhere_is_mutation_of_every_parameter(workloads, tmp_path):
    data = {"experiments": [{"repo": "examples", "model": "mnist", "runs_per_config": 2}]}
    (only,) = convert_settings(data, filename="validation.json")
    assert only.mode == "mutation"
    assert only.spec.foreground.mutate == ["epochs", "learning_rate", "batch_size", "seed"]
    assert only.readings == [
        "experiments[0]: no mode here or in the file: read as mutation",
        "experiments[0]: no mutate: every parameter (the profiler's)",
    ]


def test_a_parallel_foreground_in_another_mode_runs_its_values(workloads, tmp_path):
    fg = {
        "repo": "examples",
        "model": "mnist",
        "mode": "nonparallel",
        "hyperparameters": {"epochs": 7},
    }
    data = {
        "experiments": [
            {
                "mode": "parallel",
                "runs_per_config": 2,
                "foreground": fg,
                "background": {"repo": "examples", "model": "siamese"},
            }
        ]
    }
    (only,) = convert_settings(data, filename="stage9.json")
    assert only.spec.mode == "parallel" and only.spec.foreground.mutate == []
    assert only.spec.foreground.hyperparameters == {"epochs": 7}
    assert (only.spec.configurations, only.spec.runs_per_config) == (1, 2)
    assert "experiments[0].foreground.mode: 'nonparallel' read as default" in only.readings[0]


# ------------------------------------------------------- 2. sampling range vs hard bounds


BOUNDARY = {
    "experiment_name": "boundary_test_v2",
    "mode": "default",
    "runs_per_config": 1,
    "experiments": [
        # Outside the registry's sampling ranges on purpose (0.05-0.15, 100-300 epochs,
        # weight decay 1e-5..1e-3).
        {
            "repo": "pytorch_resnet_cifar10",
            "model": "resnet20",
            "hyperparameters": {"learning_rate": 0.4, "epochs": 1, "weight_decay": 0.01},
        },
        {
            "repo": "Person_reID_baseline_pytorch",
            "model": "densenet121",
            "hyperparameters": {"dropout": 0.7, "epochs": 1},
        },
    ],
}


def test_fixed_values_outside_the_sampling_range_import_and_are_noted(workloads, tmp_path):
    path = _file(tmp_path, BOUNDARY)
    out = _preview(path)
    assert "2 experiments" in out and "Nothing submitted" in out
    assert (
        "note: experiments[0].foreground.hyperparameters.learning_rate: 0.4 lies outside the "
        "sampling range 0.05..0.15 (a fixed value is passed as it is)"
    ) in out
    assert "experiments[0].foreground.hyperparameters.epochs: 1 lies outside" in out
    assert "experiments[0].foreground.hyperparameters.weight_decay: 0.01 lies outside" in out
    assert "experiments[1].foreground.hyperparameters.dropout: 0.7 lies outside" in out

    first, second = _submit(path)
    assert first.plan == [
        {
            "index": 0,
            "hyperparameters": {
                "epochs": 1,
                "learning_rate": 0.4,
                "seed": 1334,
                "weight_decay": 0.01,
            },
        }
    ]
    assert second.plan[0]["hyperparameters"]["dropout"] == 0.7
    assert any("0.4 lies outside the sampling range" in e["message"] for e in first.events)


def test_mutate_still_draws_from_the_sampling_range(workloads):
    data = {
        "experiments": [
            {
                "repo": "pytorch_resnet_cifar10",
                "model": "resnet20",
                "mode": "mutation",
                "mutate": ["learning_rate", "epochs"],
                "runs_per_config": 40,
            }
        ]
    }
    (only,) = convert_settings(data, filename="f.json")
    preview = services.experiment_plan_preview(spec=only.spec, legacy_file=True)
    assert len(preview.configurations) == 40
    assert all(0.05 <= c["learning_rate"] <= 0.15 for c in preview.configurations)
    assert all(100 <= c["epochs"] <= 300 for c in preview.configurations)


def test_staff_bounds_are_checked_and_survive_a_reimport(workloads, legacy_dir, tmp_path):
    workload = Workload.objects.get(name="pytorch_resnet_cifar10-resnet20")
    assert all(p["bounds"] == [None, None] for p in workload.hyperparameters)
    space = [
        {**p, "bounds": [0.0, 1.0]} if p["name"] == "learning_rate" else p
        for p in workload.hyperparameters
    ]
    Workload.objects.filter(id=workload.id).update(hyperparameters=space)
    call_command(
        "import_legacy_workloads",
        str(legacy_dir / "models_config.json"),
        root=str(tmp_path),
        stdout=io.StringIO(),
    )
    workload.refresh_from_db()
    assert workload.parameter("learning_rate")["bounds"] == [0.0, 1.0]
    assert workload.parameter("epochs")["bounds"] == [None, None]

    data = {**BOUNDARY, "experiments": [BOUNDARY["experiments"][0]]}
    data["experiments"][0] = {
        **data["experiments"][0],
        "hyperparameters": {"learning_rate": 1.5},
    }
    with pytest.raises(CommandError, match=r"learning_rate: 1.5 is outside 0..1, the bounds"):
        _preview(_file(tmp_path, data))


def test_the_data_migration_unbounds_only_imported_workloads(db):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("experiments.migrations.0007_legacy_workloads_unbounded")
    param = {"name": "lr", "flag": "--lr", "type": "float", "default": 0.1, "min": 0.05, "max": 0.2}
    choice = {"name": "opt", "flag": "--opt", "type": "choice", "choices": ["sgd"]}
    legacy = Workload.objects.create(
        name="old-import", workdir="/", argv=["x"], source="legacy", hyperparameters=[param, choice]
    )
    native = Workload.objects.create(
        name="native", workdir="/", argv=["x"], hyperparameters=[param]
    )
    migration.unbound_legacy(apps, None)
    legacy.refresh_from_db()
    native.refresh_from_db()
    assert legacy.hyperparameters == [{**param, "bounds": [None, None]}, choice]
    assert native.hyperparameters == [param]


# ------------------------------------------------------------ 3. unknown hyperparameters


def test_hyperparameters_the_registry_does_not_list_are_dropped_with_a_warning(workloads, tmp_path):
    path = _file(
        tmp_path,
        {
            "experiment_name": "stage11_supplement",
            "experiments": [
                {
                    "mode": "parallel",
                    "runs_per_config": 1,
                    "foreground": {
                        "repo": "Person_reID_baseline_pytorch",
                        "model": "hrnet18",
                        "mode": "default",
                        "hyperparameters": {"epochs": 60, "batchsize": 24},
                    },
                    "background": {
                        "repo": "examples",
                        "model": "mnist",
                        "hyperparameters": {"epochs": 10, "dropout": 0.2},
                    },
                }
            ],
        },
    )
    (only,) = convert_settings(json.loads(path.read_text()), filename=path.name)
    assert only.spec.foreground.hyperparameters == {"epochs": 60}
    assert only.spec.background.hyperparameters == {"epochs": 10}
    assert only.warnings == [
        "experiments[0].foreground.hyperparameters.batchsize: not a parameter of "
        "person_reid_baseline_pytorch-hrnet18, dropped as the profiler dropped it "
        "(known: epochs, learning_rate, seed, dropout)",
        "experiments[0].background.hyperparameters.dropout: not a parameter of "
        "examples-mnist, dropped as the profiler dropped it "
        "(known: epochs, learning_rate, batch_size, seed)",
    ]
    out = _preview(path)
    assert "note: experiments[0].foreground.hyperparameters.batchsize: not a parameter" in out
    (experiment,) = _submit(path)
    messages = [e["message"] for e in experiment.events if e["kind"] == "legacy_import"]
    assert messages == only.warnings


def test_a_native_submission_still_refuses_unknown_names(workloads):
    spec = experiment_file_from_dict(
        {"name": "x", "foreground": {"workload": "examples-mnist", "hyperparameters": {"bs": 3}}}
    )
    with pytest.raises(ValidationError) as info:
        services.experiment_submit(owner=None, spec=spec)
    assert "foreground.hyperparameters.bs" in info.value.message_dict


# --------------------------------------------------------------------- 4. `repository`


def test_entries_written_with_repository_import(workloads, tmp_path):
    path = _file(
        tmp_path,
        {
            "experiment_name": "validation_runs",
            "runs_per_config": 2,
            "experiments": [
                {
                    "experiment_id": "VulBERTa_mlp_013",
                    "repository": "VulBERTa",
                    "model": "mlp",
                    "mutate": ["seed"],
                },
                {"comment": "and one comment"},
            ],
        },
    )
    (only,) = convert_settings(json.loads(path.read_text()), filename=path.name)
    assert only.repository == "VulBERTa" and only.spec.foreground.workload == "vulberta-mlp"
    assert "experiments[0].repository: read as repo" in only.readings
    out = _preview(path)
    assert "1 experiments" in out and "only comments" not in out


def test_a_file_of_comments_says_what_it_found(workloads):
    data = {"experiments": [{"comment": "a"}, {"experiment_id": "x", "model": "mlp"}]}
    with pytest.raises(LegacySettingsError) as info:
        convert_settings(data, filename="notes.json")
    assert info.value.errors == [
        "experiments: has no entries to import: its 2 entries name no repository (repo or "
        "repository) and no foreground block, which makes them comments"
    ]


# ---------------------------------------------------------------------- 5. renamed models


OLD_NAMES = {
    "experiment_name": "stage1_archived",
    "mode": "default",
    "experiments": [
        {"repo": "examples", "model": "mnist_cnn", "hyperparameters": {"epochs": 10}},
        {"repo": "examples", "model": "mnist_forward_forward"},
    ],
}


def test_a_renamed_model_names_the_registry_models_and_the_alias_option(workloads, tmp_path):
    path = _file(tmp_path, OLD_NAMES)
    with pytest.raises(CommandError) as info:
        _preview(path)
    message = str(info.value)
    assert (
        "experiments[0]: no workload for repository 'examples' and model 'mnist_cnn'; the "
        "registry has these models for examples: mnist, mnist_ff, mnist_rnn, siamese, word_lm "
        "(a renamed model: map it with --model-alias mnist_cnn=NEW"
    ) in message
    assert "model 'mnist_forward_forward'" in message
    with pytest.raises(CommandError, match="the registry has these repositories: MRT-OAST"):
        _preview(_file(tmp_path, {"experiments": [{"repo": "examples_old", "model": "m"}]}))


def test_model_aliases_map_old_names(workloads, tmp_path):
    path = _file(tmp_path, OLD_NAMES)
    out = _preview(
        path, "--model-alias", "mnist_cnn=mnist", "--model-alias", "mnist_forward_forward=mnist_ff"
    )
    assert "2 experiments" in out
    assert "note: experiments[0].model: 'mnist_cnn' read as 'mnist' (--model-alias)" in out
    first, second = _submit(
        path, "--model-alias", "mnist_cnn=mnist", "--model-alias", "mnist_forward_forward=mnist_ff"
    )
    assert first.foreground_workload.name == "examples-mnist"
    assert second.foreground_workload.name == "examples-mnist_ff"
    with pytest.raises(CommandError, match="--model-alias: 'mnist_cnn' is not OLD=NEW"):
        _preview(path, "--model-alias", "mnist_cnn")


# ------------------------------------------------------------------- 6. the 7-day limit


LONG = {
    # 21 runs x (2 retries + 1) x (3 h timeout + 60 s sleep) = 684,180 s: over 7 days.
    "experiment_name": "stage7_long",
    "max_retries": 2,
    "experiments": [
        {"repo": "VulBERTa", "model": "mlp", "mode": "default", "runs_per_config": 21},
    ],
}


def test_a_timeout_sum_over_the_limit_is_said_not_refused(workloads, tmp_path):
    path = _file(tmp_path, LONG)
    out = _preview(path)
    assert "1 experiments" in out
    assert (
        "note: experiments[0].timeout: at most 684180 s if every run used its whole timeout "
        "and every retry; the worker stops an experiment after 604800 s (no earlier runs"
    ) in out
    (experiment,) = _submit(path)
    assert experiment.status == "queued" and experiment.total_runs == 21


def _history(tmp_path: Path, seconds: float, n: int = 3) -> None:
    """n earlier solo runs of VulBERTa/mlp lasting ``seconds``, as raw_data.csv rows."""
    rows = ["experiment_id,timestamp,repository,model,training_success,duration_seconds"]
    rows += [
        f"VulBERTa_mlp_{i:03d},2025-11-2{i}T10:00:00,VulBERTa,mlp,True,{seconds}"
        for i in range(1, n + 1)
    ]
    path = tmp_path / "raw_data.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    call_command("import_legacy_results", str(path), stdout=io.StringIO())


def test_expected_duration_from_history_refuses_a_native_submission_only(workloads, tmp_path):
    # 21 runs at the median 30,000 s (plus sleeps): about 631,200 s, over 7 days.
    _history(tmp_path, 30_000.0)
    raw = {
        "name": "native",
        "foreground": {"workload": "vulberta-mlp"},
        "runs_per_config": 21,
        "timeout": 36_000,
    }
    with pytest.raises(ValidationError) as info:
        services.experiment_submit(owner=None, spec=experiment_file_from_dict(raw))
    (message,) = info.value.message_dict["configurations"]
    assert message.startswith(
        "expected about 631200 s (21 runs at the median 30000 s of 3 earlier runs of "
        "vulberta-mlp in solo mode, plus the sleeps), above the 604800 s"
    )
    # The profiler ran that file: it imports, with the same words as a warning.
    path = _file(tmp_path, LONG)
    out = _preview(path)
    assert "note: experiments[0].configurations: expected about 631200 s" in out
    (experiment,) = _submit(path)
    assert any("expected about 631200 s" in e["message"] for e in experiment.events)


def test_short_history_lets_a_long_ceiling_through(workloads, tmp_path):
    _history(tmp_path, 600.0)
    raw = {
        "name": "native",
        "foreground": {"workload": "vulberta-mlp"},
        "runs_per_config": 21,
        "max_retries": 2,
        "timeout": 10_800,
    }
    spec = experiment_file_from_dict(raw)
    preview = services.experiment_plan_preview(spec=spec)
    assert preview.errors == {}
    assert preview.warnings["timeout"][0].startswith("at most 684180 s")
    assert "no earlier runs" not in preview.warnings["timeout"][0]
    assert services.experiment_submit(owner=None, spec=spec).status == "queued"


# --------------------------------------------------- the four shared files, as before


def test_the_four_shared_files_plan_as_before(workloads, legacy_dir):
    """Same entries, workloads, modes, counts and no notes: nothing in them needed the
    new readings (the plans themselves are compared in test_experiment_files)."""
    expected = {
        "multi_param_mutation_all_models.json": 22,
        "stage11_parallel_hrnet18.json": 4,
        "stage_default_supplement.json": 4,
        "test_multi_param.json": 1,
    }
    for name, count in expected.items():
        data = json.loads((legacy_dir / "settings" / name).read_text(encoding="utf-8"))
        planned = convert_settings(data, filename=name)
        assert len(planned) == count
        assert all(p.readings == [] and p.warnings == [] for p in planned), name
