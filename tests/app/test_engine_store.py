from __future__ import annotations

from typing import Any

import pytest

from experiments import services
from experiments.engine_store import plan_for
from experiments.expfile import parse_experiment_text

pytestmark = [pytest.mark.django_db, pytest.mark.backends]

PARALLEL = """
name: p
foreground:
  workload: digits-mlp
  hyperparameters: {epochs: 3, batch_size: 64}
  mutate: [learning_rate]
configurations: 2
runs_per_config: 2
seed: 1
sleep_between_runs: 4
timeout: 99
max_retries: 1
background:
  workload: digits-mlp
  hyperparameters: {epochs: 7}
  restart_delay: 0.5
  startup_wait: 3
  between_runs: stop
"""


def test_the_plan_passes_exactly_the_recorded_values(digits_workload: Any) -> None:
    experiment = services.experiment_submit(owner=None, spec=parse_experiment_text(PARALLEL))

    plan = plan_for(experiment, gpu_index=2, python="/opt/py/bin/python")

    assert [(r.config_index, r.repeat_index) for r in plan.runs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    first = plan.runs[0]
    assert first.program.argv[:2] == ["/opt/py/bin/python", "train.py"]
    argv = first.program.argv[2:]
    passed = dict(zip(argv[::2], argv[1::2], strict=True))
    values = first.hyperparameters
    assert passed["--epochs"] == "3" and values["epochs"] == 3
    assert passed["--batch-size"] == "64"
    assert float(passed["--learning-rate"]) == values["learning_rate"]
    assert values == experiment.plan[0]["hyperparameters"]
    assert first.program.env["OMP_NUM_THREADS"] == "1"
    assert first.program.workdir.endswith("examples/digits_mlp")
    assert plan.runs[0].hyperparameters != plan.runs[2].hyperparameters
    assert (plan.sleep_between_runs, plan.timeout, plan.max_retries) == (4, 99, 1)
    assert plan.gpu_indices == [2]
    assert plan.metric_patterns["accuracy"].startswith("Test Accuracy")
    background = plan.background
    assert background is not None
    assert "--epochs" in background.program.argv
    assert background.program.argv[background.program.argv.index("--epochs") + 1] == "7"
    assert (background.restart_delay, background.startup_wait) == (0.5, 3)
    assert background.between_runs == "stop"


def test_a_cpu_slot_plans_no_gpu(digits_workload: Any) -> None:
    spec = parse_experiment_text("name: s\nforeground: {workload: digits-mlp}\n")
    experiment = services.experiment_submit(owner=None, spec=spec)
    plan = plan_for(experiment, gpu_index=None, python="python3")
    assert plan.gpu_indices == [] and plan.background is None and len(plan.runs) == 1
