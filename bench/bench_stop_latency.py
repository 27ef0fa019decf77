"""Stop latency: from a cancel request to no process of the experiment left.

Runs real parallel experiments through ``workers.runner.run_experiment`` (a foreground
and a background training, each its own process group) and asks for a cancel while
the foreground runs; the latency is from the first ``cancel_requested()`` that answers
True to ``run_experiment`` returning, after which no process carrying the experiment's
marker may remain (checked). Two programs: one that obeys SIGTERM (target < 1 s) and
one that ignores it in both groups (target: grace + 0.5 s).

    .venv/bin/python bench/bench_stop_latency.py [--repeats 3] [--grace 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.contract import BackgroundPlan, ExperimentPlan, ProgramSpec, RunPlan  # noqa: E402
from workers.energy.session import open_meters  # noqa: E402
from workers.procgroup import find_marked  # noqa: E402
from workers.runner import run_experiment  # noqa: E402

SLEEPER = str(REPO / "tests" / "workers" / "programs" / "sleeper.py")


class CancellingStore:
    """Asks for a cancel ``after`` seconds into the foreground run; records nothing else."""

    def __init__(self, after: float) -> None:
        self.after = after
        self.fg_started: float | None = None
        self.cancelled_at: float | None = None

    def cancel_requested(self) -> bool:
        if self.cancelled_at is None and self.fg_started is not None:
            if time.monotonic() - self.fg_started >= self.after:
                self.cancelled_at = time.monotonic()
        return self.cancelled_at is not None

    def group_started(self, group: Any) -> None:
        if group.role == "foreground":
            self.fg_started = time.monotonic()

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None  # heartbeat, run_*, background_*, event


def one(ignore_term: bool, grace: float, tmp: Path, meters: Any) -> float:
    code = f"bench-stop-{uuid.uuid4()}"
    extra = ["--ignore-term"] if ignore_term else []
    spec = ProgramSpec([sys.executable, SLEEPER, "60", *extra], str(tmp))
    plan = ExperimentPlan(
        code=code,
        runs=[RunPlan(0, 0, {}, spec)],
        artifacts_dir=str(tmp / code),
        grace=grace,
        background=BackgroundPlan(program=spec, startup_wait=0.5),
    )
    store = CancellingStore(after=1.0)
    outcome = run_experiment(plan, store, meters=meters)
    took = time.monotonic() - (store.cancelled_at or 0.0)
    assert outcome.status == "cancelled", outcome
    left = find_marked(code)
    assert not left, f"processes left: {left}"
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grace", type=float, default=2.0)
    args = parser.parse_args()
    meters = open_meters([0], double="synthetic:100", try_perf=False)
    tmp = Path(tempfile.mkdtemp(prefix="wattlab-bench-stop-"))
    try:
        for ignore, target in ((False, 1.0), (True, args.grace + 0.5)):
            times = [one(ignore, args.grace, tmp, meters) for _ in range(args.repeats)]
            label = "ignores SIGTERM" if ignore else "obeys SIGTERM"
            print(
                f"{label:16} grace {args.grace:g} s: median {statistics.median(times):.3f} s, "
                f"max {max(times):.3f} s over {len(times)} (target < {target:g} s) "
                f"{'OK' if max(times) < target else 'MISSED'}"
            )
    finally:
        meters.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
