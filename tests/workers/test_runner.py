"""The runner end to end with real process groups, the real background loop and a
recording store (a double of the outside world: the database lives in the app)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.contract import (
    BackgroundPlan,
    ExperimentPlan,
    GroupInfo,
    ProgramSpec,
    RunPlan,
    RunResult,
)
from core.coverage import compute_coverage
from tests.workers.conftest import alive, fake_nvml, program, read_pids
from workers.energy import nvml
from workers.energy.estimate import EstimateCpuMeter
from workers.energy.session import open_meters
from workers.procgroup import find_marked
from workers.runner import run_experiment


class RecordingStore:
    """Records every call in order; asks for a cancel once ``cancel_when(self)`` is true."""

    def __init__(self, cancel_when: Callable[[RecordingStore], bool] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.cancel_when = cancel_when
        self.cancelled_at: float | None = None

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def of(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]

    def heartbeat(self) -> None:
        self.calls.append(("heartbeat", time.monotonic()))

    def cancel_requested(self) -> bool:
        if self.cancelled_at is None and self.cancel_when is not None and self.cancel_when(self):
            self.cancelled_at = time.monotonic()
        return self.cancelled_at is not None

    def group_started(self, group: GroupInfo) -> None:
        self.calls.append(("group_started", group))

    def group_ended(self, group: GroupInfo, reason: str) -> None:
        self.calls.append(("group_ended", (group, reason)))

    def run_started(self, key, hyperparameters, started_at) -> None:
        self.calls.append(("run_started", (key, hyperparameters, started_at)))

    def run_samples(self, key, trace: bytes) -> None:
        self.calls.append(("run_samples", (key, trace)))

    def run_finished(self, result: RunResult) -> None:
        self.calls.append(("run_finished", result))

    def background_run_started(self, record) -> None:
        self.calls.append(("background_run_started", record))

    def background_run_finished(self, record) -> None:
        self.calls.append(("background_run_finished", record))

    def event(self, kind: str, message: str) -> None:
        self.calls.append(("event", (kind, message)))

    def experiment_ended(self, status: str, message: str) -> None:
        self.calls.append(("experiment_ended", (status, message)))


@pytest.fixture
def meters():
    # No GPU here: the synthetic constant-power double (labelled as such in its
    # report); the CPU figure is the process-tree estimate, the real path on this host.
    m = open_meters([0], double="synthetic:100", try_perf=False)
    yield m
    m.close()


def fg(tmp_path: Path, argv: list[str], config: int = 0, repeat: int = 0) -> RunPlan:
    return RunPlan(config, repeat, {"lr": "0.1"}, ProgramSpec(argv, str(tmp_path)))


def make_plan(marker: str, tmp_path: Path, runs: list[RunPlan], **overrides: Any) -> ExperimentPlan:
    values: dict[str, Any] = dict(
        code=marker,
        runs=runs,
        artifacts_dir=str(tmp_path / "artifacts"),
        metric_patterns={"accuracy": r"accuracy:\s*([\d.]+)", "loss": r"loss ([\d.]+)"},
        success_pattern="Training complete",
        sleep_between_runs=0.3,
        timeout=60,
        grace=1.0,
        heartbeat_interval=0.5,
        sample_hz=10.0,
        idle_probe_s=0.3,
    )
    values.update(overrides)
    return ExperimentPlan(**values)


def background(tmp_path: Path, argv: list[str], **overrides: Any) -> BackgroundPlan:
    values: dict[str, Any] = dict(
        program=ProgramSpec(argv, str(tmp_path)),
        restart_delay=0.3,
        startup_wait=0.5,
        crash_threshold_s=0.0,
    )
    values.update(overrides)
    return BackgroundPlan(**values)


def no_temp_dir_left(marker: str) -> bool:
    return not list(Path(tempfile.gettempdir()).glob(f"wattlab-{marker[:40]}-*"))


def test_a_parallel_run_records_background_runs_and_the_coverage_they_give(
    marker, tmp_path, meters
):
    runs = [fg(tmp_path, program("train.py", "--seconds", "2.5"), repeat=i) for i in range(2)]
    plan = make_plan(
        marker, tmp_path, runs,
        background=background(tmp_path, program("sleeper.py", "0.8")),
    )  # fmt: skip
    store = RecordingStore()
    outcome = run_experiment(plan, store, meters=meters)

    assert outcome.status == "succeeded", outcome.message
    results = store.of("run_finished")
    assert [(r.key.repeat_index, r.status) for r in results] == [(0, "succeeded"), (1, "succeeded")]
    first = results[0]
    assert first.metrics["accuracy"] == pytest.approx(0.6)
    assert first.metrics["loss"] == pytest.approx(1 / 3, abs=1e-3)
    assert first.exit_code == 0
    assert first.started_at.tzinfo is not None
    assert 2.4 < first.duration_s < 10
    assert Path(first.log_path).read_text().count("epoch") == 3
    assert first.energy.gpu.value is not None and first.trace
    # Parallel mode: the GPU figure is the whole device's, and says so.
    assert any(f.startswith("whole GPU: includes the background") for f in first.energy.gpu.flags)
    # The idle probe ran before anything started (the double claims 50 % utilisation).
    assert "busy during the idle probe" in meters.idle_note[0]
    samples = [(key, trace) for key, trace in store.of("run_samples") if key == first.key]
    assert samples and all(trace for _, trace in samples)  # the live chart got data

    # Background runs were reported while the experiment went on, not at its end.
    names = store.names()
    assert names.index("background_run_finished") < names.index("run_finished")
    finished = {r.index: r for r in store.of("background_run_finished")}
    assert len(finished) >= 4
    assert sorted(finished) == list(range(1, len(finished) + 1))
    assert all(r.ended_at is not None for r in finished.values())
    assert all(r.exit_code == 0 for r in finished.values() if not r.stopped)
    assert (tmp_path / "artifacts" / "background" / "run_1.log").exists()

    # The coverage is what the recorded timestamps say: recompute it from the store's
    # records (union of intervals clipped to the window, done independently here).
    intervals = sorted(
        (r.started_at.timestamp(), r.ended_at.timestamp()) for r in finished.values()
    )
    for result in results:
        lo, hi = result.started_at.timestamp(), result.ended_at.timestamp()
        covered, cursor = 0.0, lo
        for s, e in intervals:
            s, e = max(s, cursor), min(e, hi)
            if e > s:
                covered += e - s
                cursor = e
        assert result.coverage is not None
        assert result.coverage.covered_s == pytest.approx(covered, abs=1e-6)
        assert result.coverage.percent == pytest.approx(100 * covered / (hi - lo), abs=1e-4)
        # 0.8 s runs, 0.3 s restarts: clearly partial, never 0 or 100.
        assert 40 < result.coverage.percent < 99.5
        assert result.coverage.background_runs >= 2
        assert result.coverage == compute_coverage(lo, hi, intervals)

    groups = store.of("group_started")
    assert [g.role for g in groups] == ["background", "foreground", "foreground"]
    ended = {(g.role, g.pgid): reason for g, reason in store.of("group_ended")}
    assert ended[("background", groups[0].pgid)] == "finished"
    assert len(store.of("heartbeat")) >= 4
    assert find_marked(marker) == []
    assert no_temp_dir_left(marker)


def test_a_run_without_background_has_no_coverage(marker, tmp_path, meters):
    plan = make_plan(marker, tmp_path, [fg(tmp_path, program("train.py", "--seconds", "0.3"))])
    store = RecordingStore()
    outcome = run_experiment(plan, store, meters=meters)
    assert outcome.status == "succeeded"
    assert store.of("run_finished")[0].coverage is None


def test_the_window_ends_when_the_foreground_exits_not_after_its_leftovers_are_swept(
    marker, tmp_path, meters
):
    # The leader exits at once; its child and grandchild ignore SIGTERM, so sweeping
    # them takes the whole grace period. That time is not the training's: neither the
    # measured window nor the run's duration may include it.
    pidfile = tmp_path / "pids"
    argv = program("spawn_tree.py", str(pidfile), "--leader-exits", "--ignore-term")
    plan = make_plan(marker, tmp_path, [fg(tmp_path, argv)], grace=3.0)
    store = RecordingStore()
    began = time.monotonic()
    outcome = run_experiment(plan, store, meters=meters)
    assert time.monotonic() - began >= 3.0  # the sweep did wait out the grace
    [result] = store.of("run_finished")
    assert outcome.status == "failed"  # no success line
    window = result.energy.summaries["duration_s"]
    assert window is not None and window < 2.0
    assert result.duration_s < 2.0
    assert result.duration_s == pytest.approx(window, abs=0.3)
    assert "after its window ended" in Path(result.log_path).read_text()
    assert not any(alive(pid) for pid in read_pids(pidfile, 3))


def test_it_stops_the_groups_on_cancel_during_the_foreground_run(marker, tmp_path, meters):
    pidfile = tmp_path / "fg-pids"
    plan = make_plan(
        marker, tmp_path, [fg(tmp_path, program("spawn_tree.py", str(pidfile), "--escape"))],
        background=background(tmp_path, program("sleeper.py", "30"), startup_wait=0.2),
    )  # fmt: skip
    # Cancel once the foreground has spawned its tree AND the background has a run going
    # (on a loaded machine the loop's first training can start after the startup wait).
    store = RecordingStore(
        cancel_when=lambda s: pidfile.exists() and bool(s.of("background_run_started"))
    )
    outcome = run_experiment(plan, store, meters=meters)
    returned = time.monotonic()

    assert outcome.status == "cancelled"
    [result] = store.of("run_finished")
    assert result.status == "cancelled"
    assert returned - store.cancelled_at < 3.0  # poll + SIGTERM both groups, generous margin
    pids = read_pids(pidfile, 3)
    assert not any(alive(pid) for pid in pids)
    assert find_marked(marker) == []
    assert {reason for _, reason in store.of("group_ended")} == {"cancelled"}
    assert store.of("background_run_finished")[-1].stopped is True
    assert no_temp_dir_left(marker)


def test_it_stops_at_once_on_cancel_during_the_sleep_between_runs(marker, tmp_path, meters):
    runs = [fg(tmp_path, program("train.py", "--seconds", "0.3"), repeat=i) for i in range(2)]
    bg_pids = tmp_path / "bg-pids"
    plan = make_plan(
        marker, tmp_path, runs, sleep_between_runs=60,
        background=background(
            tmp_path, program("spawn_tree.py", str(bg_pids), "--escape"), startup_wait=0.2
        ),
    )  # fmt: skip
    store = RecordingStore(cancel_when=lambda s: bool(s.of("run_finished")))
    began = time.monotonic()
    outcome = run_experiment(plan, store, meters=meters)
    assert outcome.status == "cancelled"
    assert len(store.of("run_finished")) == 1
    assert time.monotonic() - store.cancelled_at < 3.0
    assert time.monotonic() - began < 30
    assert not any(alive(pid) for pid in read_pids(bg_pids, 3))
    assert not any(alive(g.leader_pid) for g in store.of("group_started"))
    assert find_marked(marker) == []


def test_it_stops_at_once_on_cancel_during_the_startup_wait(marker, tmp_path, meters):
    bg_pids = tmp_path / "bg-pids"
    plan = make_plan(
        marker, tmp_path, [fg(tmp_path, program("train.py"))],
        background=background(
            tmp_path, program("spawn_tree.py", str(bg_pids), "--escape"), startup_wait=60
        ),
    )  # fmt: skip
    store = RecordingStore(cancel_when=lambda s: bg_pids.exists())
    outcome = run_experiment(plan, store, meters=meters)
    assert outcome.status == "cancelled"
    assert store.of("run_started") == []
    assert time.monotonic() - store.cancelled_at < 3.0
    assert not any(alive(pid) for pid in read_pids(bg_pids, 3))
    assert not any(alive(g.leader_pid) for g in store.of("group_started"))
    assert find_marked(marker) == []
    assert no_temp_dir_left(marker)


def test_the_experiment_time_limit_stops_everything_from_the_runners_own_loop(
    marker, tmp_path, meters
):
    # Two 30 s runs under a 2 s limit: the runner stops the first run and the background
    # itself (no asynchronous exception from Celery) and ends the experiment in error.
    bg_pids = tmp_path / "bg-pids"
    runs = [fg(tmp_path, program("sleeper.py", "30"), repeat=i) for i in range(2)]
    plan = make_plan(
        marker, tmp_path, runs, max_seconds=2.0,
        background=background(
            tmp_path, program("spawn_tree.py", str(bg_pids), "--escape"), startup_wait=0.2
        ),
    )  # fmt: skip
    store = RecordingStore()
    began = time.monotonic()
    outcome = run_experiment(plan, store, meters=meters)

    assert outcome.status == "error"
    assert "time limit (2 s)" in outcome.message
    assert time.monotonic() - began < 2.0 + 3 * plan.grace + 3.0
    [result] = store.of("run_finished")  # the second run never started
    assert result.status == "cancelled"
    assert store.of("experiment_ended") == [("error", outcome.message)]
    assert not any(alive(pid) for pid in read_pids(bg_pids, 3))
    assert not any(alive(g.leader_pid) for g in store.of("group_started"))
    assert find_marked(marker) == []
    assert no_temp_dir_left(marker)


def test_a_timeout_kills_a_run_that_ignores_sigterm(marker, tmp_path, meters):
    plan = make_plan(
        marker, tmp_path, [fg(tmp_path, program("sleeper.py", "60", "--ignore-term"))],
        timeout=1.0, grace=0.5,
    )  # fmt: skip
    store = RecordingStore()
    outcome = run_experiment(plan, store, meters=meters)
    [result] = store.of("run_finished")
    assert (result.status, result.exit_code) == ("timeout", -9)
    assert 1.5 <= result.duration_s < 8
    assert outcome.status == "failed"
    assert "timeout" in Path(result.log_path).read_text()
    assert not alive(store.of("group_started")[0].leader_pid)
    assert find_marked(marker) == []


def test_a_failed_run_is_recorded_and_not_retried(marker, tmp_path, meters):
    runs = [
        fg(tmp_path, program("train.py", "--seconds", "0.1", "--exit", "2")),
        fg(tmp_path, program("train.py", "--seconds", "0.1", "--no-success-line"), repeat=1),
    ]
    plan = make_plan(marker, tmp_path, runs, max_retries=3, sleep_between_runs=0)
    store = RecordingStore()
    outcome = run_experiment(plan, store, meters=meters)
    assert outcome.status == "failed"
    assert outcome.message == "2 of 2 runs did not succeed"
    assert [(r.status, r.exit_code, r.key.attempt) for r in store.of("run_finished")] == [
        ("failed", 2, 1),
        ("failed", 0, 1),
    ]


def test_a_missing_program_is_an_error_of_the_run_not_retried(marker, tmp_path, meters):
    plan = make_plan(marker, tmp_path, [fg(tmp_path, [str(tmp_path / "nope")])], max_retries=2)
    store = RecordingStore()
    outcome = run_experiment(plan, store, meters=meters)
    [result] = store.of("run_finished")
    assert result.status == "error"
    assert "cannot start" in result.error
    assert result.energy.gpu.value is None and result.energy.gpu.method == "unavailable"
    assert outcome.status == "failed"


class FlakyCpuMeter(EstimateCpuMeter):
    """A CPU meter whose first start fails, as a host meter can (hardware double)."""

    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    def start(self, foreground_pid: int | None) -> None:
        self.starts += 1
        if self.starts == 1:
            raise OSError("powercap went away")
        super().start(foreground_pid)


def test_an_infrastructure_error_is_retried_with_a_new_attempt(marker, tmp_path, meters):
    flaky = dataclasses.replace(meters, cpu=FlakyCpuMeter())
    plan = make_plan(marker, tmp_path, [fg(tmp_path, program("train.py", "--seconds", "0.2"))])
    plan = dataclasses.replace(plan, max_retries=1)
    store = RecordingStore()
    outcome = run_experiment(plan, store, meters=flaky)
    assert outcome.status == "succeeded"  # the last attempt decides
    results = store.of("run_finished")
    assert [(r.key.attempt, r.status) for r in results] == [(1, "error"), (2, "succeeded")]
    assert "powercap went away" in results[0].error
    assert [kind for kind, _ in store.of("event")] == ["retry"]
    assert find_marked(marker) == []


def test_exhausted_retries_end_the_experiment_with_an_error(marker, tmp_path, meters):
    flaky = dataclasses.replace(meters, cpu=FlakyCpuMeter())
    runs = [fg(tmp_path, program("train.py"), repeat=i) for i in range(2)]
    store = RecordingStore()
    outcome = run_experiment(make_plan(marker, tmp_path, runs), store, meters=flaky)
    assert outcome.status == "error"
    assert "infrastructure error" in outcome.message and "powercap" in outcome.message
    assert len(store.of("run_finished")) == 1


def test_between_runs_stop_restarts_the_background_and_keeps_numbering(marker, tmp_path, meters):
    runs = [fg(tmp_path, program("train.py", "--seconds", "0.3"), repeat=i) for i in range(2)]
    plan = make_plan(
        marker, tmp_path, runs,
        background=background(
            tmp_path, program("sleeper.py", "30"), startup_wait=0.3, between_runs="stop"
        ),
    )  # fmt: skip
    store = RecordingStore()
    outcome = run_experiment(plan, store, meters=meters)
    assert outcome.status == "succeeded", outcome.message
    roles = [g.role for g in store.of("group_started")]
    assert roles == ["background", "foreground", "background", "foreground"]
    indices = [r.index for r in store.of("background_run_started")]
    assert indices == [1, 2]
    assert [r.stopped for r in store.of("background_run_finished")] == [True, True]
    assert [reason for _, reason in store.of("group_ended")].count("between runs") == 1
    assert find_marked(marker) == []


def test_a_crash_looping_background_is_reported(marker, tmp_path, meters):
    plan = make_plan(
        marker, tmp_path, [fg(tmp_path, program("train.py", "--seconds", "2.5"))],
        background=background(
            tmp_path, program("sleeper.py", "0", "--exit", "1"), restart_delay=0.05,
            crash_threshold_s=5.0, crash_runs=2, startup_wait=0.2,
        ),
    )  # fmt: skip
    store = RecordingStore()
    run_experiment(plan, store, meters=meters)
    kinds = [kind for kind, _ in store.of("event")]
    assert "background_crash_loop" in kinds
    failed = [r for r in store.of("background_run_finished") if r.exit_code == 1]
    assert len(failed) >= 2
    assert store.of("run_finished")[0].coverage.verdict == "insufficient"


def test_a_cancel_costs_one_grace_period_when_both_groups_ignore_sigterm(marker, tmp_path, meters):
    fg_pids, bg_pids = tmp_path / "fg-pids", tmp_path / "bg-pids"
    plan = make_plan(
        marker, tmp_path,
        [fg(tmp_path, program("spawn_tree.py", str(fg_pids), "--ignore-term"))],
        grace=3.0,
        background=background(
            tmp_path, program("spawn_tree.py", str(bg_pids), "--ignore-term"), startup_wait=0.3
        ),
    )  # fmt: skip
    store = RecordingStore(cancel_when=lambda s: fg_pids.exists() and bg_pids.exists())
    outcome = run_experiment(plan, store, meters=meters)
    took = time.monotonic() - store.cancelled_at
    assert outcome.status == "cancelled"
    # Both groups get SIGTERM together and are killed after one grace period each,
    # concurrently: well under the 6 s that stopping them one after the other takes
    # (the margin is for a loaded machine).
    assert 3.0 <= took < 5.5
    assert not any(alive(pid) for pid in read_pids(fg_pids, 3) + read_pids(bg_pids, 3))
    assert find_marked(marker) == []


def test_a_background_loop_that_dies_is_reported_and_its_training_swept(marker, tmp_path, meters):
    bg_pids = tmp_path / "bg-pids"

    def kill_the_loop(store: RecordingStore) -> bool:
        # Staged from outside, as the OOM killer would: SIGKILL the loop (not its
        # training, which lives in its own session and is now orphaned).
        groups = store.of("group_started")
        if groups and bg_pids.exists() and alive(groups[0].leader_pid):
            os.kill(groups[0].leader_pid, signal.SIGKILL)
        return False

    plan = make_plan(
        marker, tmp_path, [fg(tmp_path, program("train.py", "--seconds", "1.5"))],
        background=background(
            tmp_path, program("spawn_tree.py", str(bg_pids)), startup_wait=1.0
        ),
    )  # fmt: skip
    store = RecordingStore(cancel_when=kill_the_loop)
    outcome = run_experiment(plan, store, meters=meters)
    assert outcome.status == "succeeded", outcome.message
    assert "background_exited" in [kind for kind, _ in store.of("event")]
    assert "exited" in [reason for _, reason in store.of("group_ended")]
    [record] = store.of("background_run_finished")
    assert record.stopped is True and record.ended_at is not None  # closed by the runner
    assert not any(alive(pid) for pid in read_pids(bg_pids, 3))
    assert "leftover_processes" in [kind for kind, _ in store.of("event")]
    assert find_marked(marker) == []


def test_a_bad_meter_double_is_an_error_outcome_not_a_traceback(marker, tmp_path, monkeypatch):
    monkeypatch.setenv("WATTLAB_METER_DOUBLE", "synthetic:lots")
    plan = make_plan(marker, tmp_path, [fg(tmp_path, program("train.py"))])
    store = RecordingStore()
    outcome = run_experiment(plan, store)
    assert outcome.status == "error"
    assert "WATTLAB_METER_DOUBLE" in outcome.message
    # Nothing ran; the only report is how it ended.
    assert store.calls == [("experiment_ended", ("error", outcome.message))]


def test_the_engine_imports_nothing_from_django():
    modules = "workers.runner, workers.background, workers.procgroup, workers.foreground, "
    modules += "workers.buffered_store"
    code = f"import sys, {modules}, core.coverage; print(sorted(m for m in sys.modules "
    code += "if m.split('.')[0] in ('django', 'celery')))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


class Interrupted(BaseException):
    """Stands in for Celery's SoftTimeLimitExceeded, raised inside the worker's thread."""


class InterruptingStore(RecordingStore):
    """Raises from a heartbeat once the foreground run is under way."""

    def heartbeat(self) -> None:
        super().heartbeat()
        if self.of("run_started") and len(self.of("heartbeat")) >= 3:
            raise Interrupted("soft time limit")


def test_an_interruption_mid_run_still_records_the_run_and_its_group(marker, tmp_path, meters):
    plan = make_plan(
        marker, tmp_path, [fg(tmp_path, program("sleeper.py", "60"))], heartbeat_interval=0.2
    )
    store = InterruptingStore()
    with pytest.raises(Interrupted):
        run_experiment(plan, store, meters=meters)
    finished = store.of("run_finished")
    assert [r.status for r in finished] == ["error"]
    assert "soft time limit" in finished[0].error
    started = store.of("group_started")
    ended = [g for g, _ in store.of("group_ended")]
    assert [g.pgid for g in started] == [g.pgid for g in ended]
    assert find_marked(marker) == []


def test_a_metric_that_matches_no_number_is_reported_not_dropped(marker, tmp_path, meters):
    plan = make_plan(
        marker,
        tmp_path,
        [fg(tmp_path, program("train.py", "--seconds", "0.2"))],
        metric_patterns={"accuracy": r"accuracy:\s*([\d.]+)", "verdict": r"(Training) complete"},
    )
    store = RecordingStore()
    outcome = run_experiment(plan, store, meters=meters)
    assert outcome.status == "succeeded"
    assert store.of("run_finished")[0].metrics == {"accuracy": pytest.approx(0.6)}
    kinds = [kind for kind, message in store.of("event") if "verdict" in message]
    assert kinds == ["metric_unreadable"]


def test_the_heartbeat_goes_on_while_stops_wait_out_their_grace(marker, tmp_path, meters):
    # A foreground that times out and a background that both ignore SIGTERM: each stop
    # waits its whole 3 s grace. A heartbeat every 0.2 s must not pause for those 3 s,
    # or the reaper would take this healthy experiment for lost.
    fg_pids, bg_pids = tmp_path / "fg-pids", tmp_path / "bg-pids"
    plan = make_plan(
        marker, tmp_path,
        [fg(tmp_path, program("spawn_tree.py", str(fg_pids), "--ignore-term"))],
        timeout=1.5, grace=3.0, heartbeat_interval=0.2,
        background=background(
            tmp_path, program("spawn_tree.py", str(bg_pids), "--ignore-term"), startup_wait=0.3
        ),
    )  # fmt: skip
    store = RecordingStore()
    began = time.monotonic()
    outcome = run_experiment(plan, store, meters=meters)
    ended = time.monotonic()

    assert outcome.status == "failed"
    assert [r.status for r in store.of("run_finished")] == ["timeout"]
    assert ended - began > 1.5 + 3.0 + 3.0  # both stops really waited their grace
    beats = [began, *store.of("heartbeat"), ended]
    gaps = [later - earlier for earlier, later in zip(beats, beats[1:], strict=False)]
    # A heartbeat held through a grace leaves a gap of at least its 3 s; on a loaded
    # machine (make test's parallel runs) a 0.2 s interval still stretches to about 2 s.
    assert max(gaps) < 2.5, f"longest pause between heartbeats: {max(gaps):.2f} s"
    assert not any(alive(pid) for pid in read_pids(fg_pids, 3) + read_pids(bg_pids, 3))
    assert find_marked(marker) == []


def test_the_trainings_are_pinned_to_the_metered_gpu_by_uuid(
    marker, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 1 of issue 8: NVML's index 1 need not be CUDA's device 1; the foreground and
    the background get the metered GPU's UUID, in PCI-bus order."""
    fake_nvml(monkeypatch, count=2)
    meters = open_meters([1], double="", try_perf=False)
    show = [
        sys.executable,
        "-c",
        "import os; print('pin', os.environ['CUDA_VISIBLE_DEVICES'], "
        "os.environ['CUDA_DEVICE_ORDER'])",
    ]
    workload_env = {"CUDA_VISIBLE_DEVICES": "0"}  # what the workload thought it wanted
    run = RunPlan(0, 0, {}, ProgramSpec(show, str(tmp_path), env=workload_env))
    plan = make_plan(
        marker, tmp_path, [run], success_pattern=None,
        background=background(tmp_path, show, startup_wait=1.5),
    )  # fmt: skip
    store = RecordingStore()
    outcome = run_experiment(plan, store, meters=meters)
    meters.close()
    assert outcome.status == "succeeded", outcome.message
    (result,) = store.of("run_finished")
    assert "pin GPU-fake-uuid-1 PCI_BUS_ID" in Path(result.log_path).read_text()
    assert result.energy.gpu_uuid == "GPU-fake-uuid-1"
    bg_log = (tmp_path / "artifacts" / "background" / "run_1.log").read_text()
    assert "pin GPU-fake-uuid-1 PCI_BUS_ID" in bg_log


PRINT_PIN = [
    sys.executable,
    "-c",
    "import os; print('pinned to', os.environ.get('CUDA_VISIBLE_DEVICES')); "
    "print('Training complete')",
]


def test_a_training_on_an_unmeterable_gpu_is_still_pinned_to_it(marker, tmp_path, fake2):
    """Issue 19, 2.2: GPU 0 has MIG enabled: its meter is refused, yet its training must
    not land on CUDA's device 0 of the host, another worker's metered GPU."""
    fake2.devices[0].mig = True
    store = RecordingStore()
    plan = make_plan(marker, tmp_path, [fg(tmp_path, PRINT_PIN)], gpu_indices=[0])
    outcome = run_experiment(plan, store)
    assert outcome.status == "succeeded", outcome.message
    result = outcome.results[0]
    assert "pinned to GPU-fake-uuid-0" in Path(result.log_path).read_text()
    assert result.energy.gpu.value is None and result.energy.gpu.method == "unavailable"
    assert any("MIG enabled" in f for f in result.energy.gpu.flags)


def test_a_gpu_the_training_cannot_be_pinned_to_starts_nothing(marker, tmp_path, fake):
    plan = make_plan(marker, tmp_path, [fg(tmp_path, PRINT_PIN)], gpu_indices=[3])
    store = RecordingStore()
    outcome = run_experiment(plan, store)
    assert outcome.status == "error"
    assert "GPU 3 of this worker cannot be pinned" in outcome.message
    assert "run_started" not in store.names() and "group_started" not in store.names()


def test_only_meterable_gpus_get_a_worker_slot(fake2):
    fake2.devices[1].mig = True
    gpus = {g["index"]: g for g in nvml.list_gpus()}
    assert nvml.unmeterable(gpus[0]) == ""
    assert "MIG enabled" in nvml.unmeterable(gpus[1])
    assert "cannot read" in nvml.unmeterable({"index": 2, "error": "Insufficient Permissions"})
