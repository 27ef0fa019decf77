"""Start, verify and stop process groups; never signal a stranger.

Every program the engine starts gets its own session and process group
(``start_new_session=True``), so one signal reaches the whole training tree, and it
carries :data:`~core.contract.ENV_MARKER` (the experiment), ``ENV_ROLE`` and ``ENV_GROUP`` (a
token unique to the group) in its environment. They let :func:`find_marked` catch
descendants that left the group (``setsid``, double forks) after their parent is gone.

Pids are reused, so before any signal we check that the pid still belongs to the
process we started: same pid *and* same start time (``psutil`` create time).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import psutil

from core.contract import ENV_GROUP, ENV_MARKER, ENV_ROLE, Role
from workers.training_env import TrainingUser, training_env

#: Two start times closer than this are the same process: psutil derives them from
#: clock ticks (10 ms) plus the boot time, so the same process reads back identically,
#: while a reused pid would need the whole pid space to wrap within this window.
CREATE_TIME_TOLERANCE_S: Final = 0.05
#: While a group stops we rescan /proc this often: short enough for sub-second stops,
#: long enough that a ten-second grace period does not busy a core.
_POLL_S: Final = 0.05
#: After SIGKILL the kernel needs a moment to tear processes down; past this the
#: group is stuck in uninterruptible sleep (D state) and we say so instead of hanging.
KILL_SETTLE_S: Final = 10.0

#: "terminated" and "already gone" end the recorded group; anything else leaves it
#: open, with the reason (a refusal, or processes left alone) for the admin to read.
TerminateResult = str


class StopError(RuntimeError):
    """Processes of a group survived SIGKILL (stuck in the kernel)."""


@dataclass(frozen=True)
class GroupIdentity:
    """What must be recorded to find (and safely signal) a group later."""

    pgid: int
    leader_pid: int
    leader_create_time: float


@dataclass(frozen=True)
class StopReport:
    """How a stop went: ``how`` is the strongest signal that was needed."""

    how: Literal["exited", "sigterm", "sigkill"]
    seconds: float
    exit_code: int | None


def child_env(
    extra: Mapping[str, str],
    *,
    marker: str,
    role: Role,
    group: str,
    base: Mapping[str, str] | None = None,
    user: TrainingUser | None = None,
) -> dict[str, str]:
    """The environment of a started program: the allow-listed part of ours
    (:mod:`workers.training_env`: never the worker's secrets), the spec's, and the
    engine's markers. ``base`` replaces the allow-listed part: an environment already
    cleaned (the background loop passes its own on to its trainings). ``user``: the
    user the program runs as, whose HOME, USER and LOGNAME it gets."""
    env = training_env() if base is None else dict(base)
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    env.update(extra)
    env[ENV_MARKER] = marker
    env[ENV_ROLE] = role
    env[ENV_GROUP] = group
    return env


def _read_stat(pid: int) -> tuple[str, int] | None:
    """(state, pgid) from /proc/<pid>/stat, None when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(b")") + 2 :].split()
    try:
        return rest[0].decode(), int(rest[2])
    except (IndexError, ValueError):
        return None


def read_environ(pid: int) -> set[bytes] | None:
    """The ``NAME=value`` entries of a process's environment; None when it cannot be
    read (gone, another user's process, or a pid from another pid namespace)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return set(raw.split(b"\0"))


def _environ_has(pid: int, pairs: Sequence[bytes]) -> bool:
    entries = read_environ(pid)
    # Unreadable: gone, or another user's process: not ours either way.
    return entries is not None and all(pair in entries for pair in pairs)


def _all_pids() -> Iterable[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def _ancestors_and_self() -> set[int]:
    """This process and its ancestors: a marked process never signals its own parents."""
    pids = {os.getpid()}
    try:
        for parent in psutil.Process().parents():
            pids.add(parent.pid)
    except psutil.Error:
        pass
    return pids


def find_marked(marker: str, role: Role | None = None, *, group: str | None = None) -> list[int]:
    """Live (non-zombie) processes whose environment carries this experiment's marker
    (and the given role / group token).

    Excludes the calling process and its ancestors: a marked process sweeping its
    experiment never signals itself.
    """
    pairs = [f"{ENV_MARKER}={marker}".encode()]
    if role is not None:
        pairs.append(f"{ENV_ROLE}={role}".encode())
    if group is not None:
        pairs.append(f"{ENV_GROUP}={group}".encode())
    return _scan(pairs)


def _scan(pairs: list[bytes], pgid: int | None = None) -> list[int]:
    """One pass over /proc: live processes in ``pgid`` or carrying all ``pairs`` in
    their environment, never this process or its ancestors."""
    mine = _ancestors_and_self()
    found = []
    for pid in _all_pids():
        if pid in mine:
            continue
        stat = _read_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        if (pgid is not None and stat[1] == pgid) or _environ_has(pid, pairs):
            found.append(pid)
    return found


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    found = []
    for pid in _all_pids():
        stat = _read_stat(pid)
        if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
            found.append(pid)
    return found


def create_time_of(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def same_process(pid: int, create_time: float) -> bool:
    """True when ``pid`` is still the process that started at ``create_time``."""
    current = create_time_of(pid)
    return current is not None and abs(current - create_time) <= CREATE_TIME_TOLERANCE_S


def _signal_pid(pid: int, sig: int) -> None:
    # psutil refuses to signal a pid whose create time changed since we looked it up,
    # which closes the window between finding a process and signalling it.
    try:
        psutil.Process(pid).send_signal(sig)
    except psutil.Error:
        pass


class ProcessGroup:
    """A program running in its own session; the engine holds the Popen (the leader)."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        identity: GroupIdentity,
        *,
        marker: str,
        role: Role,
        log_path: Path | None,
        token: str = "",
    ) -> None:
        self.popen = popen
        self.token = token
        self.identity = identity
        self.marker = marker
        self.role = role
        self.log_path = log_path
        self._term_sent_at: float | None = None
        # pid -> create time of every process a scan found carrying our token.
        self._seen: dict[int, float] = {}

    @property
    def pid(self) -> int:
        return self.identity.leader_pid

    @property
    def pgid(self) -> int:
        return self.identity.pgid

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None,
        env: Mapping[str, str],
        marker: str,
        role: Role,
        log_path: str | os.PathLike[str] | None,
        base_env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> ProcessGroup:
        """Start ``argv`` in a new session; stdout and stderr go to ``log_path`` (appended).

        ``user``: run it as that account (the worker must be root or that user). The
        log is opened here, so the program needs no right to the log folder.
        ``OSError`` from the exec (missing program, no memory) propagates: the caller
        decides whether it is the workload's fault or the host's.
        """
        if isinstance(argv, str) or not argv:
            raise ValueError("argv must be a non-empty list of strings, not a shell string")
        try:
            who = TrainingUser.lookup(user) if user else None
        except ValueError as exc:
            raise PermissionError(errno.EPERM, f"cannot run it as {user!r}: {exc}") from None
        token = uuid.uuid4().hex
        log = None
        path = Path(log_path) if log_path is not None else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            log = path.open("ab")
        try:
            popen = subprocess.Popen(  # noqa: S603 (argv list, no shell)
                list(argv),
                cwd=cwd,
                env=child_env(env, marker=marker, role=role, group=token, base=base_env, user=who),
                stdin=subprocess.DEVNULL,
                stdout=log if log is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                **(who.popen_args() if who is not None else {}),
            )
        finally:
            if log is not None:
                log.close()  # the child holds its own descriptor
        # The leader cannot be reaped before we call wait/poll, so its pid and start
        # time are stable here even if it has already exited.
        create_time = create_time_of(popen.pid)
        if create_time is None:  # pragma: no cover - only if psutil cannot read /proc
            create_time = time.time()
        identity = GroupIdentity(
            pgid=popen.pid, leader_pid=popen.pid, leader_create_time=create_time
        )
        return cls(popen, identity, marker=marker, role=role, log_path=path, token=token)

    def leader_exited(self) -> bool:
        """Has the leader ended? Checked without reaping it (``WNOWAIT``).

        An unreaped leader pins its pid and pgid numbers, so until we reap it every
        member of the pgid is provably ours and ``killpg`` is safe.
        """
        if self.popen.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def wait_exit(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the leader to end, without reaping it.

        A pidfd wakes us the moment it ends (exact end times); where the kernel has no
        pidfd we poll.
        """
        if self.leader_exited():
            return True
        deadline = time.monotonic() + timeout
        try:
            fd = os.pidfd_open(self.pid)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                poller.poll(max(0.0, timeout) * 1000.0)
            finally:
                os.close(fd)
            return self.leader_exited()
        while time.monotonic() < deadline:
            time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
            if self.leader_exited():
                return True
        return False

    def remaining(self) -> list[int]:
        """Live processes of this group: members of the pgid, and descendants that left
        it (found by this group's token). One pass over /proc."""
        pairs = [
            f"{ENV_MARKER}={self.marker}".encode(),
            f"{ENV_ROLE}={self.role}".encode(),
            f"{ENV_GROUP}={self.token}".encode(),
        ]
        # Leader reaped: the pgid number is no longer pinned, so members must also
        # carry our token; before that every member of the pgid is ours.
        pinned = self.popen.returncode is None
        found = set(_scan(pairs, self.pgid if pinned else None))
        for pid in found - self._seen.keys():
            if (created := create_time_of(pid)) is not None:
                self._seen[pid] = created
        # A process in its last steps of exiting has released its memory: its environ
        # reads empty, so the token scan misses it while it is not yet a zombie. Keep
        # counting every process we once found until it is a zombie, gone or reused.
        for pid, created in list(self._seen.items()):
            if pid in found:
                continue
            stat = _read_stat(pid)
            if stat is None or stat[0] in ("Z", "X") or not same_process(pid, created):
                del self._seen[pid]
            else:
                found.add(pid)
        return sorted(found)

    def _signal_all(self, sig: int) -> None:
        signalled_group = False
        if self.popen.returncode is None:
            # The leader (alive or a zombie we hold) pins the pgid: killpg cannot reach
            # a stranger and also reaches forks we have not seen yet.
            try:
                os.killpg(self.pgid, sig)
                signalled_group = True
            except (ProcessLookupError, PermissionError):
                pass
        for pid in self.remaining():
            # Signal each process once: a second SIGTERM can land while a program that
            # handled the first is shutting down with default handlers restored.
            if signalled_group and (stat := _read_stat(pid)) is not None and stat[1] == self.pgid:
                continue
            _signal_pid(pid, sig)

    def terminate(self) -> None:
        """Send SIGTERM now without waiting; a later :meth:`stop` counts grace from here.

        Lets the runner start stopping the background while it stops the foreground,
        so a cancel costs one grace period, not two.
        """
        if self._term_sent_at is None:
            self._signal_all(signal.SIGTERM)
            self._term_sent_at = time.monotonic()

    def stop(self, grace: float = 10.0, on_wait: Callable[[], None] | None = None) -> StopReport:
        """SIGTERM, ``grace`` seconds, SIGKILL; return once no process of the group is left.

        Also sweeps what a leader that has already exited left behind (grandchildren).
        The leader is reaped only at the end, so the pgid stays ours throughout.
        ``on_wait`` is called between polls (the runner's heartbeat); see :class:`_Waiter`.
        """
        began = time.monotonic()
        if not self.remaining():
            return StopReport("exited", time.monotonic() - began, self.popen.wait())
        self.terminate()
        waiter = _Waiter(on_wait)
        how: Literal["sigterm", "sigkill"] = "sigterm"
        assert self._term_sent_at is not None
        deadline = self._term_sent_at + grace
        while self.remaining():
            if time.monotonic() >= deadline:
                how = "sigkill"
                break
            waiter.sleep()
        if how == "sigkill":
            settle = time.monotonic() + KILL_SETTLE_S
            while True:
                self._signal_all(signal.SIGKILL)
                if not self.remaining():
                    break
                if time.monotonic() >= settle:
                    raise StopError(f"processes {self.remaining()} survived SIGKILL")
                waiter.sleep()
        report = StopReport(how, time.monotonic() - began, self.popen.wait())
        waiter.reraise()
        return report


class _Waiter:
    """One poll's sleep of a stop, then ``on_wait()``.

    A stop can take its whole grace period (a training that ignores SIGTERM); the
    runner's heartbeat must go on meanwhile, or the reaper takes a healthy experiment
    for lost. An error from ``on_wait`` (a failing store, Celery's soft time limit) is
    held until the stop has finished, so a group is never left half stopped.
    """

    def __init__(self, on_wait: Callable[[], None] | None) -> None:
        self.on_wait = on_wait
        self.error: BaseException | None = None

    def sleep(self) -> None:
        time.sleep(_POLL_S)
        if self.on_wait is not None and self.error is None:
            try:
                self.on_wait()
            except BaseException as exc:  # re-raised by reraise(), after the stop
                self.error = exc

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error


def _terminate(
    alive: Callable[[], list[int]], grace: float, on_wait: Callable[[], None] | None = None
) -> None:
    """SIGTERM what ``alive()`` lists, wait ``grace``, SIGKILL until it lists nothing."""
    waiter = _Waiter(on_wait)
    for pid in alive():
        _signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        waiter.sleep()
    settle = time.monotonic() + KILL_SETTLE_S
    while left := alive():
        for pid in left:
            _signal_pid(pid, signal.SIGKILL)
        if time.monotonic() >= settle:
            raise StopError(f"processes {left} survived SIGKILL")
        waiter.sleep()
    waiter.reraise()


def sweep_marked(
    marker: str,
    *,
    role: Role | None = None,
    grace: float = 10.0,
    on_wait: Callable[[], None] | None = None,
) -> list[int]:
    """Terminate every process carrying the experiment ``marker``; return the pids found.

    The last step of an experiment: whatever escaped its group (or outlived a killed
    background loop) is found by its environment and stopped.
    """
    found = find_marked(marker, role)
    if found:
        _terminate(lambda: find_marked(marker, role), grace, on_wait)
    return found


def _refusal(identity: GroupIdentity, marker: str | None) -> str:
    """Why a recorded identity must not be signalled at all ("" when it may be)."""
    if not marker:
        return "refused: no experiment marker to check the processes against"
    if identity.pgid <= 1 or identity.leader_pid <= 1:
        # kill(-1) is every process we may signal; 0 is our own group; 1 is init.
        return "refused: pid and pgid must be above 1"
    if identity.pgid == os.getpgid(0) or identity.leader_pid in _ancestors_and_self():
        return "refused: that is the worker's own process group"
    return ""


def terminate_recorded(
    identity: GroupIdentity,
    *,
    marker: str | None,
    grace: float = 10.0,
    role: Role | None = None,
) -> TerminateResult:
    """Terminate a group from its recorded identity (admin: orphaned groups).

    The recorded row can be stale or wrong (pids and pgids are reused), so nothing is
    signalled unless it is provably the experiment's: a live leader must have the
    recorded start time, still lead the recorded pgid and carry the experiment
    ``marker``; every process signalled carries the marker, whether it is in the group
    or left it (found by ``marker``, and ``role`` when given: without it, every
    leftover of the experiment goes). A process of the group without the marker is
    left alone and named in the result.
    """
    refusal = _refusal(identity, marker)
    if refusal or marker is None:
        return refusal
    pairs = [f"{ENV_MARKER}={marker}".encode()]
    leader_ctime = create_time_of(identity.leader_pid)
    leader_stat = _read_stat(identity.leader_pid)
    # A zombie leader has ended; whoever holds it will reap it.
    leader_alive = leader_ctime is not None and leader_stat is not None and leader_stat[0] != "Z"
    if leader_alive and leader_ctime is not None and leader_stat is not None:
        if abs(leader_ctime - identity.leader_create_time) > CREATE_TIME_TOLERANCE_S:
            return "pid reused: refused"
        if leader_stat[1] != identity.pgid:
            return f"refused: the leader is in process group {leader_stat[1]}, not {identity.pgid}"
        if not _environ_has(identity.leader_pid, pairs):
            return "refused: the leader does not carry the experiment's marker"
    mine = _ancestors_and_self()

    def alive() -> list[int]:
        found = {
            pid
            for pid in group_members(identity.pgid)
            if pid not in mine and _environ_has(pid, pairs)
        }
        found.update(find_marked(marker, role))
        return sorted(found)

    if not alive():
        unmarked = [pid for pid in group_members(identity.pgid) if pid not in mine]
        if unmarked:
            return (
                f"refused: the {len(unmarked)} process(es) in group {identity.pgid} are not marked"
            )
        return "already gone"
    _terminate(alive, grace)
    unmarked = [pid for pid in group_members(identity.pgid) if pid not in mine]
    if unmarked:
        return (
            f"stopped the experiment's processes; left {len(unmarked)} unmarked process(es) "
            f"of group {identity.pgid} alone: {unmarked[:10]}"
        )
    return "terminated"
