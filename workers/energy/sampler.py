"""One thread that calls a function at a fixed rate on the monotonic clock.

Deadlines are ``start + k * period`` (never ``last + period``), so the rate does not
drift with the time each tick takes. A tick that finds itself more than one period
late skips the deadlines it missed instead of firing a burst; the count of skipped
ticks is kept so a report can say the sampling was irregular.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class Sampler:
    def __init__(
        self, tick: Callable[[float], None], hz: float = 10.0, name: str = "energy-sampler"
    ):
        if not (0 < hz <= 1000):
            raise ValueError(f"sample rate hz must be between 0 and 1000, got {hz!r}")
        self.period_s = 1.0 / hz
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.ticks = 0
        self.skipped = 0
        #: CPU seconds the sampler thread used (time.thread_time inside the thread):
        #: the monitoring overhead figure.
        self.cpu_s = 0.0
        self.error: BaseException | None = None
        self._start = 0.0

    def start(self, start_monotonic: float | None = None) -> None:
        self._start = time.monotonic() if start_monotonic is None else start_monotonic
        self._thread.start()

    def _run(self) -> None:
        cpu0 = time.thread_time()
        k = 1
        try:
            while True:
                deadline = self._start + k * self.period_s
                delay = deadline - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                if self._stop.is_set():
                    break
                now = time.monotonic()
                self._tick(now)
                self.ticks += 1
                self.cpu_s = time.thread_time() - cpu0
                # Next deadline strictly in the future; the ones we slept through are skipped.
                next_k = max(
                    k + 1, math.floor((time.monotonic() - self._start) / self.period_s) + 1
                )
                self.skipped += next_k - k - 1
                k = next_k
        except BaseException as exc:  # noqa: BLE001 - reported by stop(), never silent
            self.error = exc
        finally:
            self.cpu_s = time.thread_time() - cpu0

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
