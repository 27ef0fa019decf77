"""seen_configuration_keys: what a workload already ran, per mode."""

from __future__ import annotations

import pytest

from experiments.history import seen_configuration_keys
from experiments.models import Experiment, Run, Workload
from experiments.mutation import config_key, parse_space, plan_configurations

SPACE = [
    {"name": "epochs", "flag": "-e", "type": "int", "default": 10, "min": 5, "max": 15},
    {"name": "lr", "flag": "--lr", "type": "float", "default": 0.01, "min": 0.001, "max": 0.1},
]


@pytest.fixture
def workload(db):
    return Workload.objects.create(
        name="toy", workdir="/tmp", argv=["train"], hyperparameters=SPACE
    )


def _experiment(workload, mode, status="succeeded", plan=None, imported=False):
    return Experiment.objects.create(
        name="e",
        mode=mode,
        status=status,
        foreground_workload=workload,
        plan=plan or [],
        imported=imported,
    )


def _run(experiment, index, values, status=Run.Status.SUCCEEDED):
    return Run.objects.create(
        experiment=experiment, config_index=index, hyperparameters=values, status=status
    )


def key(**values):
    space = parse_space(SPACE)
    return config_key({**{p.name: p.default for p in space}, **values}, space)


def test_solo_and_parallel_are_separate_histories(workload):
    _run(_experiment(workload, "solo"), 0, {"epochs": 6, "lr": 0.01})
    _run(_experiment(workload, "parallel"), 0, {"epochs": 7, "lr": 0.01})
    assert seen_configuration_keys(workload=workload, mode="solo") == {key(epochs=6)}
    assert seen_configuration_keys(workload=workload, mode="parallel") == {key(epochs=7)}


def test_imported_partial_values_with_float_ints_match(workload):
    # The profiler recorded only what it changed, and ints came back as floats.
    _run(_experiment(workload, "solo", status="imported", imported=True), 0, {"epochs": 8.0})
    assert seen_configuration_keys(workload=workload, mode="solo") == {key(epochs=8)}


def test_runs_that_never_measured_do_not_use_a_configuration_up(workload):
    experiment = _experiment(workload, "solo")
    _run(experiment, 0, {"epochs": 6}, status=Run.Status.CANCELLED)
    _run(experiment, 1, {"epochs": 7}, status=Run.Status.ERROR)
    _run(experiment, 2, {"epochs": 9}, status=Run.Status.FAILED)
    assert seen_configuration_keys(workload=workload, mode="solo") == {key(epochs=9)}


def test_queued_plans_count_before_their_runs_exist(workload):
    _experiment(
        workload, "solo", status="queued", plan=[{"index": 0, "hyperparameters": {"epochs": 12}}]
    )
    _experiment(
        workload, "solo", status="failed", plan=[{"index": 0, "hyperparameters": {"epochs": 13}}]
    )
    assert seen_configuration_keys(workload=workload, mode="solo") == {key(epochs=12)}


def test_a_plan_avoids_the_history(workload):
    experiment = _experiment(workload, "solo")
    for i, epochs in enumerate(e for e in range(5, 16) if e not in (10, 11)):
        _run(experiment, i, {"epochs": float(epochs), "lr": 0.01})
    seen = seen_configuration_keys(workload=workload, mode="solo")
    plan = plan_configurations(
        parse_space(SPACE),
        fixed={},
        mutate=["epochs"],
        n=1,
        seed=1,
        strategy="together",
        seen=seen,
    )
    assert plan == [{"epochs": 11, "lr": 0.01}]
