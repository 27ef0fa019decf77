"""The compose test's clock: each step's time, printed as it ends and once more in a
table at the end (``make test-compose`` shows both; the README quotes them)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Steps:
    def __init__(self) -> None:
        self.times: list[tuple[str, float, str]] = []
        self._started = time.monotonic()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = ""
        finally:
            seconds = time.monotonic() - started
            self.times.append((name, seconds, outcome))
            _say(f"[compose] {name}: {seconds:.1f} s" + (f" ({outcome})" if outcome else ""))

    def report(self) -> str:
        width = max((len(name) for name, _s, _o in self.times), default=10)
        lines = ["", "compose test, time per step:"]
        for name, seconds, outcome in self.times:
            lines.append(f"  {name:<{width}}  {seconds:7.1f} s {outcome}".rstrip())
        total = time.monotonic() - self._started
        lines.append(f"  {'total':<{width}}  {total:7.1f} s")
        return "\n".join(lines)

    def print_report(self) -> None:
        _say(self.report())


def _say(text: str) -> None:
    # Past pytest's capture: the times are the point of the run's output.
    print(text, file=sys.__stderr__, flush=True)
