"""Process groups with real child processes: start, stop, grandchildren, strangers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from core.contract import ENV_MARKER, ENV_ROLE
from tests.workers.conftest import PY, alive, program, read_pids, wait_for
from workers.procgroup import (
    GroupIdentity,
    ProcessGroup,
    find_marked,
    group_members,
    terminate_recorded,
)


def start(argv: list[str], marker: str, tmp_path: Path, role: str = "foreground") -> ProcessGroup:
    return ProcessGroup.start(
        argv,
        cwd=tmp_path,
        env={"EXTRA": "1"},
        marker=marker,
        role=role,  # type: ignore[arg-type]
        log_path=tmp_path / "logs" / "out.log",
    )


def test_it_starts_the_program_in_its_own_group_with_marker_and_log(marker, tmp_path):
    script = (
        "import os; print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid(), os.getcwd(),"
        f" os.environ['EXTRA'], os.environ['{ENV_MARKER}'], os.environ['{ENV_ROLE}'])"
    )
    group = start([PY, "-c", script], marker, tmp_path)
    wait_for(group.leader_exited, what="exit")
    assert group.pgid == group.pid
    assert group.identity.leader_create_time == pytest.approx(
        psutil.Process(group.pid).create_time(), abs=0.05
    )
    report = group.stop(grace=1)
    assert report.exit_code == 0
    line = (tmp_path / "logs" / "out.log").read_text().strip()
    assert line == f"True True {tmp_path} 1 {marker} foreground"


def test_it_refuses_a_shell_string(marker, tmp_path):
    with pytest.raises(ValueError, match="argv"):
        start("echo hi", marker, tmp_path)  # type: ignore[arg-type]


def test_it_stops_the_group_with_its_grandchildren(marker, tmp_path):
    pidfile = tmp_path / "pids"
    group = start(program("spawn_tree.py", str(pidfile)), marker, tmp_path)
    pids = read_pids(pidfile, 3)
    assert set(group_members(group.pgid)) == set(pids)
    report = group.stop(grace=1)
    assert report.how == "sigterm"
    assert not any(alive(pid) for pid in pids)
    assert find_marked(marker) == []


def test_it_finds_a_grandchild_that_left_the_group_by_its_marker(marker, tmp_path):
    pidfile = tmp_path / "pids"
    group = start(program("spawn_tree.py", str(pidfile), "--escape"), marker, tmp_path)
    leader, child, grandchild = read_pids(pidfile, 3)
    wait_for(lambda: os.getpgid(grandchild) != group.pgid, what="setsid")
    assert grandchild not in group_members(group.pgid)
    assert grandchild in find_marked(marker)
    group.stop(grace=1)
    assert not any(alive(pid) for pid in (leader, child, grandchild))
    assert find_marked(marker) == []


def test_it_kills_a_tree_that_ignores_sigterm_after_the_grace_period(marker, tmp_path):
    pidfile = tmp_path / "pids"
    group = start(program("spawn_tree.py", str(pidfile), "--ignore-term"), marker, tmp_path)
    pids = read_pids(pidfile, 3)
    began = time.monotonic()
    report = group.stop(grace=0.5)
    took = time.monotonic() - began
    assert report.how == "sigkill"
    assert report.exit_code == -9
    assert took >= 0.5
    assert not any(alive(pid) for pid in pids)
    assert find_marked(marker) == []


def test_it_sweeps_grandchildren_left_by_a_leader_that_exited(marker, tmp_path):
    pidfile = tmp_path / "pids"
    group = start(program("spawn_tree.py", str(pidfile), "--leader-exits"), marker, tmp_path)
    leader, child, grandchild = read_pids(pidfile, 3)
    wait_for(group.leader_exited, what="leader exit")
    assert alive(child) and alive(grandchild)
    report = group.stop(grace=1)
    assert report.exit_code == 0
    assert not alive(child) and not alive(grandchild)


def test_stop_of_an_exited_program_reports_its_exit_code(marker, tmp_path):
    group = start(program("sleeper.py", "0", "--exit", "3"), marker, tmp_path)
    wait_for(group.leader_exited, what="exit")
    report = group.stop(grace=1)
    assert (report.how, report.exit_code) == ("exited", 3)


def _stranger(*extra: str) -> subprocess.Popen[bytes]:
    """A process Wattlab did not start: its own session, no marker."""
    return subprocess.Popen(
        [PY, "-c", "import time; time.sleep(30)", *extra], start_new_session=True
    )


def _identity_of(pid: int, pgid: int | None = None) -> GroupIdentity:
    return GroupIdentity(
        pgid if pgid is not None else os.getpgid(pid), pid, psutil.Process(pid).create_time()
    )


@pytest.mark.parametrize(
    "shift, expected",
    [
        # A recorded start time that is not its own: what a reused pid looks like.
        (-100.0, "pid reused: refused"),
        # pid, pgid and start time match (an edited or wrong row): only the marker
        # tells it is not the experiment's.
        (0.0, "refused: the leader does not carry the experiment's marker"),
    ],
)
def test_terminate_recorded_spares_a_stranger(marker, shift, expected):
    stranger = _stranger()
    try:
        real = _identity_of(stranger.pid)
        identity = GroupIdentity(real.pgid, real.leader_pid, real.leader_create_time + shift)
        assert terminate_recorded(identity, marker=marker, grace=0.5) == expected
        time.sleep(0.2)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_terminate_recorded_stops_a_live_group_and_then_finds_it_gone(marker, tmp_path):
    pidfile = tmp_path / "pids"
    group = start(program("spawn_tree.py", str(pidfile), "--escape"), marker, tmp_path)
    pids = read_pids(pidfile, 3)
    assert terminate_recorded(group.identity, marker=marker, grace=1) == "terminated"
    group.popen.wait(5)
    assert not any(alive(pid) for pid in pids)
    assert terminate_recorded(group.identity, marker=marker, grace=1) == "already gone"


def test_terminate_recorded_needs_the_marker_for_a_group_without_its_leader(marker, tmp_path):
    pidfile = tmp_path / "pids"
    group = start(program("spawn_tree.py", str(pidfile), "--leader-exits"), marker, tmp_path)
    leader, child, grandchild = read_pids(pidfile, 3)
    group.popen.wait(5)  # reaped: the pgid number is no longer pinned by our leader
    assert terminate_recorded(group.identity, marker=None, grace=1).startswith("refused: no")
    assert alive(child)
    assert terminate_recorded(group.identity, marker=marker, grace=1) == "terminated"
    assert not alive(child) and not alive(grandchild)


def test_terminate_recorded_refuses_a_pgid_its_leader_is_not_in(marker, tmp_path):
    # Our leader is real, but the recorded pgid is a stranger's group.
    ours = start(program("sleeper.py", "30"), marker, tmp_path)
    stranger = _stranger()
    try:
        identity = _identity_of(ours.pid, pgid=stranger.pid)
        result = terminate_recorded(identity, marker=marker, grace=0.5)
        assert result == f"refused: the leader is in process group {ours.pid}, not {stranger.pid}"
        time.sleep(0.2)
        assert stranger.poll() is None and alive(ours.pid)
    finally:
        stranger.kill()
        stranger.wait()
        ours.stop(grace=1)


@pytest.mark.parametrize("pgid, pid", [(0, 0), (-1, -1), (0, 4242), (4242, 1)])
def test_terminate_recorded_refuses_pids_and_pgids_of_one_or_less(marker, pgid, pid):
    result = terminate_recorded(GroupIdentity(pgid, pid, 0.0), marker=marker, grace=0.1)
    assert result == "refused: pid and pgid must be above 1"


def test_terminate_recorded_refuses_the_workers_own_group(marker, tmp_path):
    # Run in a child so that a regression kills the child, not the test runner. The
    # child carries the marker, as a worker started by the engine could.
    script = (
        "import os, psutil, sys\n"
        "from workers.procgroup import GroupIdentity, terminate_recorded\n"
        "me = GroupIdentity(os.getpgid(0), os.getpid(), psutil.Process().create_time())\n"
        "print(terminate_recorded(me, marker=sys.argv[1], grace=0.5), flush=True)\n"
    )
    env = {**os.environ, ENV_MARKER: marker, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [PY, "-c", script, marker], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "refused: that is the worker's own process group"


def test_terminate_recorded_signals_only_marked_members_of_the_group(marker, tmp_path):
    # The leader starts a child with an empty environment: in the group, unmarked.
    pidfile = tmp_path / "child"
    script = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], env={})\n"
        f"open({str(pidfile)!r}, 'w').write(str(c.pid))\n"
        "time.sleep(30)\n"
    )
    group = start([PY, "-c", script], marker, tmp_path)
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="child pid")
    child = int(pidfile.read_text())
    try:
        result = terminate_recorded(group.identity, marker=marker, grace=1)
        assert result.startswith("stopped the experiment's processes; left 1 unmarked")
        group.popen.wait(5)
        assert alive(child)
    finally:
        os.kill(child, 9)


def test_stopping_one_group_leaves_another_group_of_the_same_experiment_alone(marker, tmp_path):
    # Same experiment, same role: only the group token tells them apart once a
    # descendant has left its process group.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start(
        program("spawn_tree.py", str(tmp_path / "a" / "pids"), "--escape"), marker, tmp_path / "a"
    )
    b = start(
        program("spawn_tree.py", str(tmp_path / "b" / "pids"), "--escape"), marker, tmp_path / "b"
    )
    a_pids = read_pids(tmp_path / "a" / "pids", 3)
    b_pids = read_pids(tmp_path / "b" / "pids", 3)
    a.stop(grace=1)
    assert not any(alive(pid) for pid in a_pids)
    assert all(alive(pid) for pid in b_pids)
    b.stop(grace=1)
    assert not any(alive(pid) for pid in b_pids)


def test_terminate_recorded_with_a_role_spares_the_experiments_other_role(marker, tmp_path):
    (tmp_path / "fg").mkdir()
    (tmp_path / "bg").mkdir()
    fg = start(
        program("spawn_tree.py", str(tmp_path / "fg" / "pids"), "--escape"), marker, tmp_path / "fg"
    )
    bg = start(
        program("spawn_tree.py", str(tmp_path / "bg" / "pids"), "--escape"),
        marker, tmp_path / "bg", role="background",
    )  # fmt: skip
    fg_pids = read_pids(tmp_path / "fg" / "pids", 3)
    bg_pids = read_pids(tmp_path / "bg" / "pids", 3)
    result = terminate_recorded(fg.identity, marker=marker, role="foreground", grace=1)
    assert result == "terminated"
    assert not any(alive(pid) for pid in fg_pids)
    assert all(alive(pid) for pid in bg_pids)
    bg.stop(grace=1)
    fg.popen.wait(5)


def test_stop_calls_on_wait_while_it_waits_and_raises_its_error_only_once_done(marker, tmp_path):
    pidfile = tmp_path / "pids"
    group = start(program("spawn_tree.py", str(pidfile), "--ignore-term"), marker, tmp_path)
    pids = read_pids(pidfile, 3)
    calls: list[float] = []

    def failing_heartbeat() -> None:
        calls.append(time.monotonic())
        raise RuntimeError("store unreachable")

    with pytest.raises(RuntimeError, match="store unreachable"):
        group.stop(grace=0.5, on_wait=failing_heartbeat)
    # Called once, its error held while the stop went on to SIGKILL the whole tree.
    assert len(calls) == 1
    assert not any(alive(pid) for pid in pids)
    assert find_marked(marker) == []


def test_stop_calls_on_wait_between_polls_for_the_whole_grace(marker, tmp_path):
    pidfile = tmp_path / "pids"
    group = start(program("spawn_tree.py", str(pidfile), "--ignore-term"), marker, tmp_path)
    read_pids(pidfile, 3)
    calls: list[float] = []
    report = group.stop(grace=1.0, on_wait=lambda: calls.append(time.monotonic()))
    assert report.how == "sigkill"
    # A poll is 0.1 s: ten in a 1 s grace on an idle machine; while the suite keeps both
    # cores busy a poll takes up to 0.3 s (four calls seen). What matters is below.
    assert len(calls) >= 3
    # Throughout the grace, not once at either end: it spans most of it with no long gap
    # (when the first call comes after the SIGTERM depends on the machine's load).
    assert calls[-1] - calls[0] > 0.5
    assert max(b - a for a, b in zip(calls, calls[1:], strict=False)) < 0.5
