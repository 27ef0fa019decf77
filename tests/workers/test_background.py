"""The background loop as a real process group: restarts, logs, intervals, crash loops, stop."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from tests.workers.conftest import PY, alive, program, read_pids, wait_for
from workers.background import backoff_delay
from workers.procgroup import ProcessGroup, find_marked

REPO = Path(__file__).resolve().parents[2]


def start_loop(marker: str, tmp_path: Path, command: list[str], *options: str) -> ProcessGroup:
    argv = [
        PY, "-m", "workers.background",
        "--intervals", str(tmp_path / "intervals.jsonl"),
        "--log-dir", str(tmp_path / "bg"),
        "--workdir", str(tmp_path),
        *options, "--", *command,
    ]  # fmt: skip
    return ProcessGroup.start(
        argv, cwd=REPO, env={}, marker=marker, role="background", log_path=tmp_path / "loop.log"
    )


def events(tmp_path: Path) -> list[dict]:
    path = tmp_path / "intervals.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def ends(tmp_path: Path) -> list[dict]:
    return [e for e in events(tmp_path) if e["event"] == "end"]


def test_it_restarts_the_training_and_frames_every_run_log(marker, tmp_path):
    loop = start_loop(
        marker, tmp_path, program("sleeper.py", "0.3", "--say", "hello"),
        "--restart-delay", "0.2", "--crash-threshold", "0", "--grace", "1",
    )  # fmt: skip
    wait_for(lambda: len(ends(tmp_path)) >= 2, timeout=20, what="two runs")
    report = loop.stop(grace=5)
    assert (report.how, report.exit_code) == ("sigterm", 0)
    log = events(tmp_path)
    assert [e["event"] for e in log[:4]] == ["start", "end", "start", "end"]
    assert log[-1]["event"] == "exit"
    first_end = log[1]
    assert (first_end["run"], first_end["exit_code"], first_end["stopped"]) == (1, 0, False)
    gap = log[2]["epoch"] - first_end["epoch"]
    assert 0.2 <= gap < 2.0  # the restart delay, with room for a loaded machine
    lines = (tmp_path / "bg" / "run_1.log").read_text().splitlines()
    assert lines[0].startswith("# wattlab background run 1 started ")
    started = dt.datetime.fromisoformat(lines[0].rsplit(" ", 1)[1])
    assert started.utcoffset() == dt.timedelta(0)
    assert lines[1:3] == ["hello", "sleeper done"]
    assert lines[-1].startswith("# wattlab background run 1 ended ")
    assert lines[-1].endswith(" exit_code 0")
    assert find_marked(marker) == []


def test_a_failing_training_is_recorded_restarted_and_flagged_as_a_crash_loop(marker, tmp_path):
    loop = start_loop(
        marker, tmp_path, program("sleeper.py", "0", "--exit", "3"),
        "--restart-delay", "0.05", "--crash-threshold", "5", "--crash-runs", "2",
    )  # fmt: skip
    wait_for(lambda: len(ends(tmp_path)) >= 3, timeout=30, what="three failed runs")
    loop.stop(grace=5)
    assert [e["exit_code"] for e in ends(tmp_path)[:3]] == [3, 3, 3]
    crash = [e for e in events(tmp_path) if e["event"] == "crash_loop"]
    assert crash, events(tmp_path)
    assert crash[0]["consecutive_quick_runs"] == 2
    assert crash[0]["backoff_s"] == 2.0  # doubled from the 1 s floor
    if len(crash) > 1:
        assert crash[1]["backoff_s"] == 4.0


def test_a_missing_program_is_a_failed_run_not_the_end_of_the_loop(marker, tmp_path):
    loop = start_loop(
        marker, tmp_path, [str(tmp_path / "no-such-program")],
        "--restart-delay", "0.05", "--crash-threshold", "0",
    )  # fmt: skip
    wait_for(lambda: len(ends(tmp_path)) >= 2, timeout=20, what="two failed starts")
    loop.stop(grace=5)
    first = ends(tmp_path)[0]
    assert first["exit_code"] is None
    assert "could not start" in first["error"]
    assert "could not start" in (tmp_path / "bg" / "run_1.log").read_text()


def test_sigterm_stops_a_training_that_ignores_it_and_records_it_as_stopped(marker, tmp_path):
    pidfile = tmp_path / "pids"
    loop = start_loop(
        marker, tmp_path, program("spawn_tree.py", str(pidfile), "--ignore-term", "--escape"),
        "--grace", "0.5",
    )  # fmt: skip
    pids = read_pids(pidfile, 3)
    report = loop.stop(grace=5)
    assert (report.how, report.exit_code) == ("sigterm", 0)  # the loop itself obeyed
    assert not any(alive(pid) for pid in pids)
    last = ends(tmp_path)[-1]
    assert (last["run"], last["stopped"], last["exit_code"]) == (1, True, -9)
    assert (tmp_path / "bg" / "run_1.log").read_text().splitlines()[-1].endswith(" stopped")
    assert find_marked(marker) == []


def test_sigterm_during_the_restart_delay_exits_without_a_stopped_run(marker, tmp_path):
    loop = start_loop(
        marker, tmp_path, program("sleeper.py", "0"), "--restart-delay", "30",
        "--crash-threshold", "0",
    )  # fmt: skip
    wait_for(lambda: len(ends(tmp_path)) == 1, timeout=20, what="first run")
    report = loop.stop(grace=5)
    assert report.seconds < 2.0
    assert [e["event"] for e in events(tmp_path)] == ["start", "end", "exit"]


def test_it_numbers_runs_from_first_run(marker, tmp_path):
    loop = start_loop(marker, tmp_path, program("sleeper.py", "5"), "--first-run", "7")
    wait_for(lambda: events(tmp_path), timeout=20, what="a start")
    loop.stop(grace=5)
    assert events(tmp_path)[0]["run"] == 7
    assert (tmp_path / "bg" / "run_7.log").exists()


def test_it_rejects_a_missing_command_with_a_clear_message(marker, tmp_path):
    result = subprocess.run(
        [PY, "-m", "workers.background", "--intervals", "x", "--log-dir", "y", "--marker", "m"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "argv is required after --" in result.stderr


@pytest.mark.parametrize(
    ("quick", "expected"), [(0, 2.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 60.0)]
)
def test_backoff_doubles_after_the_crash_limit_and_is_capped(quick, expected):
    assert backoff_delay(2.0, quick, crash_runs=3) == expected


def test_quick_successful_runs_are_not_a_crash_loop_and_keep_the_restart_delay(marker, tmp_path):
    # A background training shorter than the crash threshold that exits 0 is a short
    # training, not a crash: every restart waits the restart delay, never a back-off.
    loop = start_loop(
        marker, tmp_path, program("sleeper.py", "0"),
        "--restart-delay", "0.3", "--crash-threshold", "5", "--crash-runs", "2",
    )  # fmt: skip
    wait_for(lambda: len(ends(tmp_path)) >= 5, timeout=30, what="five quick runs")
    loop.stop(grace=5)
    log = events(tmp_path)
    assert not [e for e in log if e["event"] == "crash_loop"], log
    starts = {e["run"]: e["epoch"] for e in log if e["event"] == "start"}
    finished = {e["run"]: e for e in ends(tmp_path)}
    assert all(finished[n]["exit_code"] == 0 for n in range(1, 5))
    gaps = [starts[n + 1] - finished[n]["epoch"] for n in range(1, 5)]
    assert all(0.3 <= gap < 1.0 for gap in gaps), gaps  # a back-off would be >= 2 s


def test_quick_failures_after_quick_successes_count_from_the_first_failure(marker, tmp_path):
    # Exit 0 for the first two runs, then exit 3: the crash loop is declared after two
    # consecutive quick failures (runs 3 and 4), not counted from run 1.
    script = tmp_path / "flaky.py"
    script.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(tmp_path / 'count')!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "sys.exit(0 if n <= 2 else 3)\n"
    )
    loop = start_loop(
        marker, tmp_path, [PY, str(script)],
        "--restart-delay", "0.1", "--crash-threshold", "5", "--crash-runs", "2",
    )  # fmt: skip
    wait_for(
        lambda: any(e["event"] == "crash_loop" for e in events(tmp_path)),
        timeout=30,
        what="a crash loop",
    )
    loop.stop(grace=5)
    crash = [e for e in events(tmp_path) if e["event"] == "crash_loop"]
    assert (crash[0]["run"], crash[0]["consecutive_quick_runs"]) == (4, 2)


def test_a_run_ends_when_its_training_does_not_after_the_sweep_of_its_leftovers(marker, tmp_path):
    """Issue 19, 2.7: the leader exits at once and leaves children that ignore SIGTERM;
    sweeping them takes the whole grace period, which is not the training's time."""
    pidfile = tmp_path / "pids"
    loop = start_loop(
        marker, tmp_path,
        program("spawn_tree.py", str(pidfile), "--leader-exits", "--ignore-term"),
        "--restart-delay", "30", "--crash-threshold", "0", "--grace", "3",
    )  # fmt: skip
    wait_for(lambda: len(ends(tmp_path)) >= 1, timeout=30, what="the first run's end")
    loop.stop(grace=10)
    start, end = events(tmp_path)[0], ends(tmp_path)[0]
    assert end["epoch"] - start["epoch"] < 2.0  # not the 3 s grace of the sweep
    assert end["duration_s"] < 2.0
    assert find_marked(marker) == []
