"""import_legacy_settings: the profiler's experiment files as Wattlab experiments."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from experiments.legacy.experiment_files import LegacySettingsError, convert_settings
from experiments.models import Experiment


def _load(legacy_dir, name):
    return json.loads((legacy_dir / "settings" / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("multi_param_mutation_all_models.json", 22),
        ("stage11_parallel_hrnet18.json", 4),
        ("stage_default_supplement.json", 4),
        ("test_multi_param.json", 1),
    ],
)
def test_every_profiler_file_imports(workloads, legacy_dir, name, count):
    out = io.StringIO()
    call_command("import_legacy_settings", str(legacy_dir / "settings" / name), stdout=out)
    assert f"{count} experiments" in out.getvalue()
    assert "Nothing submitted" in out.getvalue()
    assert Experiment.objects.count() == 0  # shown, not submitted


def test_the_three_modes_map_as_documented(workloads, legacy_dir):
    planned = convert_settings(
        _load(legacy_dir, "stage_default_supplement.json"), filename="s.json"
    )
    default, parallel = planned[0], planned[1]
    assert (default.mode, default.spec.mode) == ("default", "solo")
    assert default.spec.foreground.workload == "vulberta-cnn"
    assert default.spec.foreground.mutate == []
    assert default.spec.foreground.hyperparameters == {
        "epochs": 10,
        "learning_rate": 3e-05,
        "seed": 42,
        "weight_decay": 0.0,
    }
    assert parallel.spec.mode == "parallel"
    assert parallel.spec.background.workload == "examples-mnist"

    stage11 = convert_settings(_load(legacy_dir, "stage11_parallel_hrnet18.json"), filename="x")
    first = stage11[0].spec
    assert first.foreground.workload == "person_reid_baseline_pytorch-hrnet18"
    assert first.foreground.mutate == ["epochs"]
    assert first.background.workload == "person_reid_baseline_pytorch-densenet121"
    # A mutation entry's runs each drew a new configuration: 5 runs = 5 configurations.
    assert (first.configurations, first.runs_per_config) == (5, 1)
    # The profiler skipped configurations its history held; its files rely on it.
    assert all(p.spec.skip_configurations_run for p in [*planned, *stage11])


def test_run_count_comes_from_entry_then_foreground_then_top_level(workloads):
    fg = {"repo": "examples", "model": "mnist", "mode": "default"}
    bg = {"repo": "examples", "model": "siamese", "hyperparameters": {}}
    data = {
        "runs_per_config": 7,
        "experiments": [
            {"repo": "examples", "model": "mnist", "mode": "default", "runs_per_config": 2},
            {"repo": "examples", "model": "mnist", "mode": "default"},
            {"mode": "parallel", "foreground": {**fg, "runs_per_config": 3}, "background": bg},
            {
                "mode": "parallel",
                "runs_per_config": 4,
                "foreground": {**fg, "runs_per_config": 3},
                "background": bg,
            },
            {"mode": "parallel", "foreground": fg, "background": bg},
        ],
    }
    runs = [p.spec.runs_per_config for p in convert_settings(data, filename="f.json")]
    assert runs == [2, 7, 3, 4, 7]


def test_mutate_all_comments_and_unknown_keys(workloads):
    data = {
        "governor": "performance",
        "historical_csvs": ["data/raw_data.csv"],
        "experiments": [
            {"comment": "just a note"},
            {
                "repo": "MRT-OAST",
                "model": "default",
                "mode": "mutation",
                "mutate": ["all"],
                "runs_per_config": 3,
                "comment": "everything",
                "whatever": 1,
            },
        ],
    }
    (only,) = convert_settings(data, filename="f.json")
    assert only.index == 1
    assert only.spec.foreground.mutate == [
        "epochs",
        "learning_rate",
        "seed",
        "dropout",
        "weight_decay",
    ]
    assert only.spec.configurations == 3


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"mode": "parallel", "foreground": {"model": "mnist"}, "background": {}},
            "experiments[1].foreground.repo: is required",
        ),
        (
            {"mode": "parallel", "foreground": {"repo": "examples", "model": "mnist"}},
            "experiments[1].background: is required",
        ),
        (
            {"repo": "nowhere", "model": "x", "mode": "default"},
            "experiments[1]: no workload for repository 'nowhere'",
        ),
        (
            {"repo": "examples", "model": "mnist", "mode": "mutation", "mutate": ["lr"]},
            "experiments[1].mutate: lr not a parameter of examples-mnist",
        ),
        (
            {"repo": "examples", "model": "mnist", "mode": "default", "runs_per_config": 0},
            "experiments[1].runs_per_config: 0 is not a positive whole number",
        ),
    ],
)
def test_a_broken_entry_is_named_by_index_and_key(workloads, entry, message):
    data = {"experiments": [{"repo": "examples", "model": "mnist", "mode": "default"}, entry]}
    with pytest.raises(LegacySettingsError) as info:
        convert_settings(data, filename="f.json")
    assert any(e.startswith(message) for e in info.value.errors), info.value.errors


def test_an_unknown_file_is_refused_clearly(workloads, tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"name": "not a settings file"}), encoding="utf-8")
    with pytest.raises(CommandError, match="experiments: is required"):
        call_command("import_legacy_settings", str(path), stdout=io.StringIO())
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CommandError, match="not valid JSON at line 1"):
        call_command("import_legacy_settings", str(path), stdout=io.StringIO())


def test_submit_creates_the_experiments_with_their_plans(workloads, legacy_dir):
    user = get_user_model().objects.create_user("ana", password="x")
    out = io.StringIO()
    call_command(
        "import_legacy_settings",
        str(legacy_dir / "settings" / "stage11_parallel_hrnet18.json"),
        submit=True,
        owner="ana",
        stdout=out,
    )
    experiments = list(Experiment.objects.order_by("id"))
    assert len(experiments) == 4 and "4 experiments submitted" in out.getvalue()
    for experiment in experiments:
        assert experiment.source == "legacy" and experiment.owner == user
        assert experiment.mode == "parallel"
        assert experiment.background_workload.name == "person_reid_baseline_pytorch-densenet121"
        assert len(experiment.plan) == 5
        assert experiment.submitted_config["skip_configurations_run"] is True
    assert [e.mutate for e in experiments] == [
        ["epochs"],
        ["learning_rate"],
        ["seed"],
        ["dropout"],
    ]


def test_an_unknown_owner_is_refused(workloads, legacy_dir):
    with pytest.raises(CommandError, match="--owner: no user named 'nobody'"):
        call_command(
            "import_legacy_settings",
            str(legacy_dir / "settings" / "test_multi_param.json"),
            submit=True,
            owner="nobody",
            stdout=io.StringIO(),
        )
