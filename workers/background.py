"""The background loop: keep a training running on the GPU, forever, until SIGTERM.

Run as its own process group by the runner::

    python -m workers.background --intervals FILE --log-dir DIR --restart-delay 2 \\
        [--workdir D] [--grace 10] -- python train.py --epochs 3

Each run writes ``run_N.log`` framed by a first and a last line giving the run number,
its start / end (ISO 8601, UTC) and its exit code; every start and end is appended at
once to the intervals file as one JSON line, so the worker can record background runs
while they happen. A failed run is recorded and restarted (the earlier tool's loop
died at the first failure). Quick *failing* runs several times in a row are a crash
loop: the loop backs off exponentially and writes a ``crash_loop`` line. A quick run
that exits 0 is a short training, not a crash: it restarts after the restart delay.
On SIGTERM (or SIGINT) it stops the current training's group, records that run as
stopped and exits 0.

The training's environment is this process's own, which the runner has already cut
down to the allow-list (``workers.training_env``) and to which it added the workload's
variables and the experiment marker. With ``--user`` the trainings run as that account
while the loop itself stays the worker's (it writes the intervals file and the logs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

from core.contract import ENV_MARKER
from workers.procgroup import ProcessGroup

MAX_BACKOFF_S: Final = 60.0
_POLL_S: Final = 0.1


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class LoopConfig:
    argv: list[str]
    intervals: Path
    log_dir: Path
    workdir: str | None = None
    restart_delay: float = 2.0
    grace: float = 10.0
    crash_threshold_s: float = 5.0
    crash_runs: int = 3
    first_run: int = 1
    marker: str = ""
    user: str | None = None


def backoff_delay(restart_delay: float, consecutive_quick: int, crash_runs: int) -> float:
    """Sleep before the next start: the restart delay, doubled per quick run past the limit."""
    if consecutive_quick < crash_runs:
        return restart_delay
    base = max(restart_delay, 1.0)  # a zero restart delay must still back off
    return min(MAX_BACKOFF_S, base * 2.0 ** (consecutive_quick - crash_runs + 1))


class BackgroundLoop:
    def __init__(self, config: LoopConfig) -> None:
        self.config = config
        self.stopping = threading.Event()

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        # Only sets a flag: the main loop does the stopping, never a signal handler.
        self.stopping.set()

    def _append(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, sort_keys=True) + "\n"
        # Open, write, close: each line reaches the file at once, whole, in one write.
        with self.config.intervals.open("a", encoding="utf-8") as out:
            out.write(line)

    def run(self) -> int:
        cfg = self.config
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        cfg.intervals.parent.mkdir(parents=True, exist_ok=True)
        number = cfg.first_run - 1
        quick = 0
        while not self.stopping.is_set():
            number += 1
            duration, stopped, failed = self._one_run(number)
            if stopped:
                break
            # Only a quick *failure* counts towards a crash loop: a short background
            # training that succeeds must keep its restart delay, or the coverage of
            # short runs falls far below L / (L + d).
            quick = quick + 1 if failed and duration < cfg.crash_threshold_s else 0
            delay = backoff_delay(cfg.restart_delay, quick, cfg.crash_runs)
            if quick >= cfg.crash_runs:
                self._append(
                    {
                        "event": "crash_loop",
                        "run": number,
                        "consecutive_quick_runs": quick,
                        "backoff_s": delay,
                        "at": utc_now().isoformat(),
                    }
                )
            self.stopping.wait(delay)
        self._append({"event": "exit", "at": utc_now().isoformat()})
        return 0

    def _one_run(self, number: int) -> tuple[float, bool, bool]:
        """Start, wait, record one run; returns (seconds it lasted, stopped by us, failed)."""
        cfg = self.config
        log_path = cfg.log_dir / f"run_{number}.log"
        started = utc_now()
        began = time.monotonic()
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"# wattlab background run {number} started {started.isoformat()}\n")
        start_event: dict[str, Any] = {
            "event": "start",
            "run": number,
            "at": started.isoformat(),
            "epoch": started.timestamp(),
            "log": str(log_path),
        }
        error = ""
        exit_code: int | None = None
        stopped = False
        ended_at: dt.datetime | None = None
        duration = 0.0
        try:
            group = ProcessGroup.start(
                cfg.argv,
                cwd=cfg.workdir,
                env={},
                marker=cfg.marker,
                role="background",
                log_path=log_path,
                # Already cut down by the runner, and holding the workload's own
                # variables, which the allow-list alone would drop.
                base_env=os.environ,
                user=cfg.user,
            )
        except OSError as exc:
            # A missing program is a failed run like any other: recorded, then retried
            # (with back-off once it is a crash loop), never the end of the loop.
            error = f"could not start {cfg.argv[0]!r}: {exc}"
            self._append(start_event)
        else:
            start_event.update(pid=group.pid, pgid=group.pgid)
            self._append(start_event)
            # wait_exit wakes the moment the training ends (exact end times); the
            # stop flag is checked between waits.
            while not group.wait_exit(_POLL_S):
                if self.stopping.is_set():
                    stopped = True
                    break
            if not stopped:
                # The run ends when its training does: what the sweep below waits for
                # (leftovers given up to the grace period) must not count as covered.
                ended_at, duration = utc_now(), time.monotonic() - began
            # Also sweeps what an exited training left behind (dataloader workers...).
            exit_code = group.stop(cfg.grace).exit_code
        if ended_at is None:
            # Stopped by us (it ran until the stop ended it) or never started.
            ended_at, duration = utc_now(), time.monotonic() - began
        ended = ended_at
        with log_path.open("a", encoding="utf-8") as log:
            if error:
                log.write(f"{error}\n")
            log.write(
                f"# wattlab background run {number} ended {ended.isoformat()}"
                f" exit_code {exit_code}{' stopped' if stopped else ''}\n"
            )
        end_event: dict[str, Any] = {
            "event": "end",
            "run": number,
            "at": ended.isoformat(),
            "epoch": ended.timestamp(),
            "exit_code": exit_code,
            "stopped": stopped,
            "duration_s": duration,
        }
        if error:
            end_event["error"] = error
        self._append(end_event)
        return duration, stopped, bool(error) or exit_code != 0


def parse_args(argv: Sequence[str]) -> LoopConfig:
    parser = argparse.ArgumentParser(prog="python -m workers.background", description=__doc__)
    parser.add_argument("--intervals", required=True, type=Path, help="JSON-lines file")
    parser.add_argument("--log-dir", required=True, type=Path)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--restart-delay", type=float, default=2.0)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--crash-threshold", type=float, default=5.0)
    parser.add_argument("--crash-runs", type=int, default=3)
    parser.add_argument("--first-run", type=int, default=1)
    parser.add_argument(
        "--marker", default=os.environ.get(ENV_MARKER, ""), help=f"default: ${ENV_MARKER}"
    )
    parser.add_argument("--user", default=None, help="run the trainings as this user")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- argv of the training")
    args = parser.parse_args(list(argv))
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("the training's argv is required after --")
    if not args.marker:
        parser.error(f"set {ENV_MARKER} in the environment or pass --marker")
    for name in ("restart_delay", "grace", "crash_threshold"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.crash_runs < 1:
        parser.error("--crash-runs must be at least 1")
    return LoopConfig(
        argv=command,
        intervals=args.intervals,
        log_dir=args.log_dir,
        workdir=args.workdir,
        restart_delay=args.restart_delay,
        grace=args.grace,
        crash_threshold_s=args.crash_threshold,
        crash_runs=args.crash_runs,
        first_run=args.first_run,
        marker=args.marker,
        user=args.user or None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    loop = BackgroundLoop(parse_args(sys.argv[1:] if argv is None else argv))
    signal.signal(signal.SIGTERM, loop.request_stop)
    signal.signal(signal.SIGINT, loop.request_stop)
    code = loop.run()
    # Everything is recorded: a late signal while Python shuts down (when its default
    # handlers are back) must not turn a clean exit into "killed by SIGTERM".
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(main())
