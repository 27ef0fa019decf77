"""``submit --wait`` ends with the answer: a table of the runs, then parallel against
solo from the history, with a real worker running real (tiny) trainings."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from experiments import stats
from experiments.models import Experiment, Run
from tests.conftest import WorkerProc, demo_pair, run_manage

# Not in the SQLite run (marker backends): the summary reads the comparison, whose queries
# run on both databases in test_comparison_soundness; the queue is test_tasks'.
pytestmark = [pytest.mark.slow, pytest.mark.queue]

# Background runs of about 2 s, each several foreground runs long: with runs of a third
# of a second (20 epochs), the restarts' gaps on a loaded machine left both parallel runs
# short of good coverage once, and with nothing paired the summary has no "what sharing
# costs" answer to read (the demo browser test met the same).
PARALLEL, SOLO = demo_pair(
    "tiny", epochs=3, hidden=64, background_epochs=200, background_hidden=64, seed=5
)


def _row(out: str, marker: str) -> str:
    """The table row holding ``marker``, with the lines its cells wrapped onto (their
    first cell is empty)."""
    lines = out.splitlines()
    # A table line: the progress lines above name the run too ("run 1.1.1 running").
    start = next(i for i, line in enumerate(lines) if marker in line and line.startswith("│"))
    row = lines[start]
    for more in lines[start + 1 :]:
        if not re.match(r"^│\s+│", more):
            break
        row += " " + more
    return row


def test_submit_wait_ends_with_the_runs_and_parallel_against_solo(
    digits_workload: object,
    submitter: object,
    celery_worker_factory: Callable[..., WorkerProc],
    tmp_path: Path,
) -> None:
    celery_worker_factory(WATTLAB_METER_DOUBLE="")  # this host's own meters
    solo, parallel = tmp_path / "solo.yaml", tmp_path / "parallel.yaml"
    solo.write_text(SOLO)
    parallel.write_text(PARALLEL)

    first = run_manage("submit", str(solo), "--wait", timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    # The solo study alone: its runs, and no comparison yet.
    assert "tiny-solo (solo): runs" in first.stdout
    assert "no finished parallel run of these configurations counted yet" in first.stdout
    assert "configurations_from:" in first.stdout
    # Captured, so without a terminal: progress comes as whole lines, one per change
    # (the live display ran the last one into the result: "17 s elapseddemo-solo: ...").
    lines = first.stdout.splitlines()
    progress = [line for line in lines if "runs done" in line]
    assert progress, first.stdout
    assert all(line.startswith("tiny-solo ") and line.endswith("elapsed") for line in progress)
    # A line when something other than the clock changed, not one per poll.
    assert len(progress) < 12, progress
    assert "tiny-solo: succeeded" in lines
    assert any(line.endswith("owner cli-user (the only superuser)") for line in lines)

    done = run_manage("submit", str(parallel), "--wait", timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "No hostname was supplied" not in out + done.stderr + first.stderr
    assert "tiny-parallel: succeeded" in out
    runs = list(Run.objects.filter(experiment__name="tiny-parallel").order_by("config_index"))
    for run in runs:  # one row per run: its learning rate, energy with method, coverage
        row = _row(out, f" {run.config_index + 1}.1.1 ")
        assert f"learning_rate={run.hyperparameters['learning_rate']:.4g}" in row
        assert "not measured" in row  # no GPU here: said, never 0 J
        assert "(estimate)" in row or "(RAPL)" in row or "(perf)" in row
        assert run.coverage_verdict in row
        assert f"accuracy={run.metrics['accuracy']:.4g}" in row
    assert "all runs: batch_size=32, epochs=3, hidden=64, seed=0" in out

    # Parallel against solo, per configuration, from the experiments' CPU figures: the
    # rows of the report and of Compare (experiments.comparison).
    assert "Parallel against solo on CPU energy (package)" in out
    solo_runs = {
        r.hyperparameters["learning_rate"]: r.cpu_energy_j
        for r in Run.objects.filter(experiment__mode=Experiment.Mode.SOLO)
    }
    versus = out[out.index("Parallel against solo on") : out.index("What sharing costs")]
    for run in runs:
        lr = run.hyperparameters["learning_rate"]
        row = _row(versus, f"learning_rate={lr:.4g} ")
        if run.coverage_verdict != "good":
            assert "n=0" in row  # left out for its coverage, and said
            assert "parallel run left out" in out or "parallel runs left out" in out
            continue
        expected = stats.compare([run.cpu_energy_j], [solo_runs[lr]])
        assert expected.ratio is not None
        assert f"×{expected.ratio:.3f}" in row and "n=1" in row
        assert "too few runs" in row  # for a 95 % interval (the cell wraps)
    # The answer last: what sharing costs, and what this host cannot tell about it.
    tail = out[out.index("What sharing costs") :]
    assert "slowdown (duration)" in tail
    assert "No energy figure of these runs can show what sharing the device costs" in tail
    assert "no significant difference" not in out
