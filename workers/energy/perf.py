"""CPU energy through ``perf stat -a -e power/energy-pkg/,power/energy-ram/`` (fallback).

perf reads the same RAPL counters through the ``power`` PMU when sysfs is closed to
this user but perf events are not. It counts system wide, so the figure includes the
background. We run ``perf stat`` with no command (it counts until SIGINT), then read
the summary it prints on stderr.

perf needs some milliseconds (more on a loaded host) to open its events. So that it
counts from the window's start and not from whenever it got ready, it starts with its
events disabled (``-D -1``) and :meth:`PerfCpuMeter.start` enables them over
``--control`` and waits for perf's ``ack``. A perf without ``--control`` (before 5.9)
is started plainly, and the figure says how much of the window it missed (the
window's length against perf's own "seconds time elapsed").
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from workers.energy.meters import CpuMethod, CpuReading, MeterUnavailable
from workers.energy.rapl import WHOLE_MACHINE_FLAG

PKG_EVENT = "power/energy-pkg/"
RAM_EVENT = "power/energy-ram/"

# "         29,115.66 Joules power/energy-pkg/   " (grouping depends on the locale)
_COUNTER_LINE = re.compile(
    r"^\s*(?P<value>[\d.,']+|<not supported>|<not counted>)\s+"
    r"(?:(?P<unit>\S*Joules)\s+)?(?P<event>\S+)"
)
_ELAPSED_LINE = re.compile(r"^\s*(?P<value>[\d.,]+)\s+seconds time elapsed")

#: How long start() waits for perf to say its counters are on.
READY_TIMEOUT_S = 5.0
#: A counting window shorter than ours by more than this is flagged.
LATE_TOLERANCE_S = 0.05


@dataclass
class PerfResult:
    joules: dict[str, float | None]  # event -> joules; None = "<not supported>"/"<not counted>"
    elapsed_s: float | None


def _number(text: str) -> float:
    # perf groups thousands with the locale's separator (',' or "'"); we start it
    # under LC_ALL=C, but recorded outputs came from en_US.
    return float(text.replace(",", "").replace("'", ""))


def parse_perf_stat(text: str) -> PerfResult:
    """Parse the human-readable summary ``perf stat`` writes to stderr."""
    joules: dict[str, float | None] = {}
    elapsed: float | None = None
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = _ELAPSED_LINE.match(line)
        if m:
            elapsed = _number(m.group("value"))
            continue
        m = _COUNTER_LINE.match(line)
        if not m or not m.group("event").startswith("power/"):
            continue
        raw = m.group("value")
        joules[m.group("event")] = None if raw.startswith("<") else _number(raw)
    return PerfResult(joules, elapsed)


def _perf_binary(given: str | None = None) -> str:
    if given:
        return given
    path = shutil.which("perf") or ("/usr/bin/perf" if os.path.exists("/usr/bin/perf") else "")
    if not path:
        raise MeterUnavailable("perf is not installed")
    return path


def _c_locale() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    return env


def perf_error_reason(stderr: str, returncode: int) -> str:
    """perf's error in one line for a figure's flags: its first two lines, without the
    ``\\___`` pointer art under the event name."""
    lines = [ln.strip().lstrip("\\_").strip() for ln in stderr.splitlines()]
    kept = [ln for ln in lines if ln][:2]
    return ": ".join(kept) or f"exit code {returncode}"


def probe_events(timeout_s: float = 5.0) -> list[str]:
    """The energy events perf can count here; MeterUnavailable with perf's reason if none."""
    perf = _perf_binary()
    true = shutil.which("true") or "/bin/true"
    found: list[str] = []
    reason = ""
    for event in (PKG_EVENT, RAM_EVENT):
        try:
            done = subprocess.run(
                [perf, "stat", "-a", "-e", event, "--", true],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=_c_locale(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MeterUnavailable(f"perf could not be run: {exc}") from exc
        parsed = parse_perf_stat(done.stderr)
        if done.returncode == 0 and parsed.joules.get(event) is not None:
            found.append(event)
        elif not reason:
            reason = perf_error_reason(done.stderr, done.returncode)
    if PKG_EVENT not in found:
        raise MeterUnavailable(f"perf cannot count {PKG_EVENT}: {reason}")
    return found


class PerfCpuMeter:
    method: CpuMethod = "perf"
    whole_machine = True

    def __init__(self, events: list[str] | None = None, *, perf: str | None = None) -> None:
        self._perf = _perf_binary(perf)
        self._events = events if events is not None else probe_events()
        self.device = "perf stat -a " + ",".join(self._events)
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: Path | None = None
        #: perf prints its totals only when it stops: no running figure to plot.
        self.updated_at: float | None = None
        self._ctl = -1
        self._began = 0.0
        #: perf counted from start() (enabled over --control); else it started late.
        self.aligned = False
        #: The window (start() to the SIGINT) and what perf says it counted.
        self.window_s: float | None = None
        self.counted_s: float | None = None

    def _spawn(self, out: str, control: tuple[int, int] | None) -> subprocess.Popen[bytes]:
        argv = [self._perf, "stat", "-a", "-e", ",".join(self._events), "-o", out]
        fds: tuple[int, ...] = ()
        if control is not None:
            argv += ["-D", "-1", "--control", f"fd:{control[0]},{control[1]}"]
            fds = control
        # perf writes its summary to the -o file when it gets SIGINT.
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_c_locale(),
            pass_fds=fds,
        )

    def _start_enabled(self, out: str) -> subprocess.Popen[bytes] | None:
        """perf with its events off, then on: returns once perf acknowledged, or None
        (this perf has no --control, or it did not answer in time)."""
        ctl_r, ctl_w = os.pipe()
        ack_r, ack_w = os.pipe()
        try:
            proc = self._spawn(out, (ctl_r, ack_w))
        finally:
            os.close(ctl_r)
            os.close(ack_w)
        try:
            os.write(ctl_w, b"enable\n")
            ready, _, _ = select.select([ack_r], [], [], READY_TIMEOUT_S)
            answer = os.read(ack_r, 64) if ready else b""
        except OSError:  # perf already gone: the write end of our pipe is closed
            answer = b""
        finally:
            os.close(ack_r)
        if answer.startswith(b"ack"):
            self._ctl = ctl_w  # kept open until stop: EOF on it would end perf's control
            return proc
        os.close(ctl_w)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        return None

    def start(self, foreground_pid: int | None) -> None:
        fd, name = tempfile.mkstemp(prefix="wattlab-perf-", suffix=".txt")
        os.close(fd)
        self._out = Path(name)
        self.window_s = self.counted_s = None
        self._proc = self._start_enabled(name)
        self.aligned = self._proc is not None
        if self._proc is None:
            self._proc = self._spawn(name, None)
        self._began = time.monotonic()

    def poll(self) -> None:
        """perf keeps its own 64-bit totals; nothing to do while it runs."""

    def total(self) -> CpuReading:
        # perf only reports at the end; "not known yet" is None, not 0 J.
        return CpuReading(None, None, [WHOLE_MACHINE_FLAG])

    def stop(self) -> CpuReading:
        proc, out = self._proc, self._out
        self._proc = self._out = None
        if proc is None or out is None:
            return CpuReading(None, None, ["perf was not started"])
        try:
            self.window_s = time.monotonic() - self._began
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return CpuReading(None, None, ["perf did not stop on SIGINT"])
            result = parse_perf_stat(out.read_text(errors="replace"))
        finally:
            out.unlink(missing_ok=True)
            if self._ctl >= 0:
                os.close(self._ctl)
                self._ctl = -1
        self.counted_s = result.elapsed_s
        flags = [WHOLE_MACHINE_FLAG]
        late = self._late_flag()
        if late:
            flags.append(late)
        pkg = result.joules.get(PKG_EVENT)
        ram = result.joules.get(RAM_EVENT)
        if pkg is None:
            flags.append(f"perf reported no value for {PKG_EVENT}")
        return CpuReading(pkg, ram, flags)

    def _late_flag(self) -> str:
        if self.window_s is None or self.counted_s is None:
            return ""
        missed = self.window_s - self.counted_s
        if missed <= LATE_TOLERANCE_S:
            return ""
        why = "" if self.aligned else " (this perf has no --control to start it in step)"
        return (
            f"perf counted {self.counted_s:.2f} s of the {self.window_s:.2f} s window: "
            f"it started {missed:.2f} s late{why}, so the run's first {missed:.2f} s "
            "is not in the figure"
        )
