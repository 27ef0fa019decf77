"""One foreground run with real programs: status, metrics, timeout, cancel, cleanup."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from core.contract import InfrastructureError, ProgramSpec
from tests.workers.conftest import alive, program, read_pids
from workers.foreground import ProgramError, run_foreground
from workers.procgroup import find_marked

PATTERNS = {"accuracy": r"accuracy:\s*([\d.]+)", "loss": r"loss ([\d.]+)"}


def run(marker: str, tmp_path: Path, argv: list[str], **options):
    values = dict(
        marker=marker,
        log_path=tmp_path / "run.log",
        timeout=30.0,
        grace=1.0,
        cancel_requested=lambda: False,
        metric_patterns=PATTERNS,
        success_pattern="Training complete",
    )
    values.update(options)
    return run_foreground(ProgramSpec(argv, str(tmp_path), {"LR_ENV": "1"}), **values)


def test_a_successful_run_has_its_metrics_times_and_exit_code(marker, tmp_path):
    result = run(marker, tmp_path, program("train.py", "--seconds", "0.6", "--lr", "0.2"))
    assert (result.status, result.exit_code) == ("succeeded", 0)
    assert result.metrics == {
        "accuracy": pytest.approx(0.7),
        "loss": pytest.approx(1 / 6, abs=1e-3),
    }
    assert result.started_at.utcoffset().total_seconds() == 0
    elapsed = (result.ended_at - result.started_at).total_seconds()
    assert elapsed == pytest.approx(result.duration_s, abs=1e-3)
    assert 0.6 <= result.duration_s < 10
    assert "Training complete" in result.log_path.read_text()


def test_exit_zero_without_the_success_line_is_a_failure(marker, tmp_path):
    result = run(marker, tmp_path, program("train.py", "--seconds", "0", "--no-success-line"))
    assert (result.status, result.exit_code) == ("failed", 0)
    assert "accuracy" in result.metrics  # metrics are still read from a failed run


def test_a_non_zero_exit_is_a_failure(marker, tmp_path):
    result = run(marker, tmp_path, program("train.py", "--seconds", "0", "--exit", "4"))
    assert (result.status, result.exit_code) == ("failed", 4)


def test_cancel_is_honoured_within_a_second_and_leaves_nothing(marker, tmp_path):
    pidfile = tmp_path / "pids"
    asked: list[float] = []

    def cancel() -> bool:
        if not asked and pidfile.exists():
            asked.append(time.monotonic())
        return bool(asked)

    result = run(marker, tmp_path, program("spawn_tree.py", str(pidfile)), cancel_requested=cancel)
    done = time.monotonic()
    assert result.status == "cancelled"
    assert done - asked[0] < 1.0
    assert not any(alive(pid) for pid in read_pids(pidfile, 3))
    assert find_marked(marker) == []
    assert "# wattlab: cancelled" in result.log_path.read_text()


def test_the_timeout_stops_the_run(marker, tmp_path):
    result = run(marker, tmp_path, program("sleeper.py", "30"), timeout=0.5)
    assert result.status == "timeout"
    assert result.exit_code == -15
    assert 0.5 <= result.duration_s < 5


def test_on_tick_is_called_while_the_run_goes_on(marker, tmp_path):
    ticks: list[float] = []
    run(marker, tmp_path, program("sleeper.py", "1"), on_tick=lambda: ticks.append(1.0))
    assert len(ticks) >= 2


def test_a_failing_on_started_stops_the_group_and_propagates(marker, tmp_path):
    pidfile = tmp_path / "pids"

    def broken(group) -> None:
        read_pids(pidfile, 3)
        raise InfrastructureError("meter gone")

    with pytest.raises(InfrastructureError, match="meter gone"):
        run(marker, tmp_path, program("spawn_tree.py", str(pidfile)), on_started=broken)
    assert not any(alive(pid) for pid in read_pids(pidfile, 3))
    assert find_marked(marker) == []


def test_a_missing_program_is_a_program_error(marker, tmp_path):
    with pytest.raises(ProgramError, match="cannot start"):
        run(marker, tmp_path, [str(tmp_path / "missing")])


def test_a_missing_working_directory_is_a_program_error(marker, tmp_path):
    with pytest.raises(ProgramError, match="cannot start"):
        run_foreground(
            ProgramSpec(program("sleeper.py", "0"), str(tmp_path / "nowhere")),
            marker=marker, log_path=tmp_path / "run.log", timeout=5, grace=1,
            cancel_requested=lambda: False,
        )  # fmt: skip


def test_on_exited_comes_when_the_leader_exits_before_the_leftovers_are_stopped(marker, tmp_path):
    pidfile = tmp_path / "pids"
    exited: list[float] = []
    began = time.monotonic()
    result = run(
        marker, tmp_path, program("spawn_tree.py", str(pidfile), "--leader-exits", "--ignore-term"),
        grace=2.0, on_exited=lambda: exited.append(time.monotonic()),
    )  # fmt: skip
    done = time.monotonic()
    assert len(exited) == 1
    assert done - exited[0] >= 2.0  # the sweep came after, and took the grace period
    assert result.duration_s == pytest.approx(exited[0] - began, abs=0.2)
    assert not any(alive(pid) for pid in read_pids(pidfile, 3))


def test_on_exited_comes_after_the_stop_on_a_timeout(marker, tmp_path):
    exited: list[float] = []
    began = time.monotonic()
    result = run(
        marker, tmp_path, program("sleeper.py", "30", "--ignore-term"), timeout=0.5, grace=1.0,
        on_exited=lambda: exited.append(time.monotonic()),
    )  # fmt: skip
    assert result.status == "timeout"
    assert len(exited) == 1
    assert exited[0] - began >= 1.5  # the training ran until SIGKILL ended it
    assert result.duration_s == pytest.approx(exited[0] - began, abs=0.2)


def test_a_training_killed_by_a_signal_while_a_stop_is_asked_for_was_cancelled(marker, tmp_path):
    """A Slurm job's end signals every process of the job at once: the training may be
    gone before the runner sees the stop it was asked for. It was stopped, not failed."""
    killed: list[int] = []

    def kill_soon(group) -> None:
        def kill() -> None:
            time.sleep(0.5)
            os.kill(group.pid, signal.SIGTERM)
            killed.append(group.pid)

        threading.Thread(target=kill, daemon=True).start()

    # The stop is asked for only once the training is dead: the run's own loop saw
    # the exit first.
    result = run(
        marker,
        tmp_path,
        program("sleeper.py", "30"),
        on_started=kill_soon,
        cancel_requested=lambda: bool(killed) and not alive(killed[0]),
    )
    assert (result.status, result.exit_code) == ("cancelled", -signal.SIGTERM)
    assert find_marked(marker) == []


def test_a_training_killed_by_a_signal_with_no_stop_asked_for_failed(marker, tmp_path):
    def kill_soon(group) -> None:
        threading.Timer(0.5, os.kill, (group.pid, signal.SIGTERM)).start()

    result = run(marker, tmp_path, program("sleeper.py", "30"), on_started=kill_soon)
    assert (result.status, result.exit_code) == ("failed", -signal.SIGTERM)
