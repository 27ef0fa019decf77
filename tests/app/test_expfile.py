from __future__ import annotations

import json

import pytest

from experiments.expfile import ExperimentFileError, parse_experiment_text

MINIMAL = "name: x\nforeground: {workload: digits-mlp}\n"


def _errors(text: str, filename: str = "") -> list[str]:
    with pytest.raises(ExperimentFileError) as info:
        parse_experiment_text(text, filename=filename)
    return info.value.errors


def test_it_fills_the_documented_defaults() -> None:
    spec = parse_experiment_text(MINIMAL)
    assert spec.configurations == 1
    assert spec.runs_per_config == 1
    assert spec.sleep_between_runs == 60
    assert spec.foreground.mutate == []
    assert spec.strategy == "together"
    assert spec.target == "any"
    assert spec.mode == "solo"


def test_background_makes_it_parallel_with_its_defaults() -> None:
    spec = parse_experiment_text(MINIMAL + "background: {workload: digits-mlp}\n")
    assert spec.mode == "parallel"
    assert spec.background is not None
    assert (spec.background.restart_delay, spec.background.startup_wait) == (2, 5)
    assert spec.background.between_runs == "keep"


def test_it_reads_json_as_well() -> None:
    text = json.dumps({"name": "j", "foreground": {"workload": "w"}, "configurations": 3})
    assert parse_experiment_text(text, filename="e.json").configurations == 3
    assert parse_experiment_text(text).configurations == 3


def test_a_misspelt_key_is_an_error_naming_it() -> None:
    assert _errors(MINIMAL + "runs_per_conifg: 2\n") == ["runs_per_conifg: unknown key"]
    nested = "name: x\nforeground: {workload: w, hyperparams: {}}\n"
    assert _errors(nested) == ["foreground.hyperparams: unknown key"]


def test_every_problem_is_reported_with_its_key_path() -> None:
    text = (
        "foreground: {workload: w, mutate: [lr, lr]}\n"
        "configurations: 0\n"
        "timeout: soon\n"
        "target: 'two words'\n"
        "background: {workload: b, between_runs: sometimes}\n"
    )
    errors = _errors(text)
    assert "name: is required" in errors
    assert "configurations: 0 is below the minimum 1" in errors
    assert any(e.startswith("timeout: 'soon' is not valid") for e in errors)
    assert any(e.startswith("target: must be any, HOST or HOST:GPU") for e in errors)
    assert "background.between_runs: 'sometimes' is not one of 'keep' or 'stop'" in errors
    assert "foreground.mutate: lists lr more than once" in errors


def test_broken_yaml_says_where_without_a_traceback() -> None:
    (error,) = _errors("name: [unclosed\n")
    assert error.startswith("(file): not valid YAML at line")


def test_a_list_or_empty_file_is_refused() -> None:
    assert _errors("- a\n- b\n")[0].startswith("(file): must be a mapping")
    assert _errors("") == ["(file): is empty"]


def test_target_parts() -> None:
    assert parse_experiment_text(MINIMAL + "target: gpu01:3\n").target_parts() == ("gpu01", 3)
    assert parse_experiment_text(MINIMAL + "target: gpu01\n").target_parts() == ("gpu01", None)
    assert parse_experiment_text(MINIMAL).target_parts() == (None, None)
