"""import_legacy_workloads: one workload per repository and model."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from experiments.legacy.workloads import LegacyConfigError, parse_models_config
from experiments.models import Workload
from experiments.mutation import argv_for, parse_space


def _import(legacy_dir, tmp_path):
    call_command(
        "import_legacy_workloads", str(legacy_dir / "models_config.json"), root=str(tmp_path)
    )


def test_it_creates_one_workload_per_repository_and_model(db, legacy_dir, tmp_path):
    _import(legacy_dir, tmp_path)
    config = json.loads((legacy_dir / "models_config.json").read_text(encoding="utf-8"))
    expected = sum(len(entry["models"]) for entry in config["models"].values())
    assert Workload.objects.count() == expected == 16
    mrt = Workload.objects.get(name="mrt-oast-default")
    assert (mrt.legacy_repository, mrt.legacy_model, mrt.source) == (
        "MRT-OAST",
        "default",
        "legacy",
    )
    assert mrt.is_active
    # No model flag in the registry: the profiler passed no model.
    assert mrt.argv == [str(tmp_path / "repos" / "MRT-OAST" / "train.sh")]
    assert mrt.workdir == str(tmp_path / "repos" / "MRT-OAST")
    assert mrt.metric_patterns["accuracy"].startswith("(?:Accuracy|准确率)")


def test_model_flag_and_required_arguments_go_into_argv(db, legacy_dir, tmp_path):
    _import(legacy_dir, tmp_path)
    cnn = Workload.objects.get(legacy_repository="VulBERTa", legacy_model="cnn")
    assert cnn.argv == [str(tmp_path / "repos" / "VulBERTa" / "train.sh"), "-n", "cnn", "-d", "d2a"]
    hrnet = Workload.objects.get(
        legacy_repository="Person_reID_baseline_pytorch", legacy_model="hrnet18"
    )
    assert hrnet.argv[1:] == ["-n", "hrnet18"]


def test_the_space_is_converted_and_usable(db, legacy_dir, tmp_path):
    _import(legacy_dir, tmp_path)
    workload = Workload.objects.get(name="pytorch_resnet_cifar10-resnet56")
    lr = workload.parameter("learning_rate")
    assert lr == {
        "name": "learning_rate",
        "flag": "--lr",
        "type": "float",
        "default": 0.1,
        "min": 0.05,
        "max": 0.15,
        "choices": [],
        "distribution": "log_uniform",
        "description": "",
        # The range is where the profiler sampled; it passed written values as they were.
        "bounds": [None, None],
    }
    space = parse_space(workload.hyperparameters)
    assert argv_for(space, {"epochs": 150}) == [
        "-e", "150", "--lr", "0.1", "--seed", "1334", "--wd", "0.0001",
    ]  # fmt: skip


def test_reimporting_updates_instead_of_duplicating(db, legacy_dir, tmp_path):
    _import(legacy_dir, tmp_path)
    Workload.objects.filter(name="mrt-oast-default").update(argv=["stale"], is_active=False)
    _import(legacy_dir, tmp_path)
    assert Workload.objects.count() == 16
    mrt = Workload.objects.get(name="mrt-oast-default")
    assert mrt.argv != ["stale"] and mrt.is_active


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda m: m["MRT-OAST"].pop("train_script"), "MRT-OAST.train_script"),
        (
            lambda m: m["MRT-OAST"]["supported_hyperparams"]["epochs"].update(range=[5]),
            "MRT-OAST.supported_hyperparams.epochs.range",
        ),
        (
            lambda m: m["MRT-OAST"]["supported_hyperparams"]["epochs"].update(type="long"),
            "'epochs'",
        ),
        (
            lambda m: m["examples"]["performance_metrics"]["log_patterns"].update(x="(["),
            "examples.performance_metrics.log_patterns.x",
        ),
    ],
)
def test_a_broken_registry_names_repository_and_key(legacy_dir, tmp_path, mutate, words):
    data = json.loads((legacy_dir / "models_config.json").read_text(encoding="utf-8"))
    mutate(data["models"])
    with pytest.raises(LegacyConfigError) as info:
        parse_models_config(data, root=tmp_path)
    assert words in str(info.value)


def test_the_command_reports_a_missing_file_clearly(db, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_legacy_workloads", str(tmp_path / "nope.json"), root=str(tmp_path))
