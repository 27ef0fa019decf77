import threading
import time

import pytest

from workers.energy.sampler import Sampler


def test_it_ticks_at_the_requested_rate_on_deadlines_without_drift() -> None:
    stamps: list[float] = []
    sampler = Sampler(stamps.append, hz=50.0)
    start = time.monotonic()
    sampler.start(start)
    time.sleep(1.0)
    sampler.stop()
    assert not sampler.running
    # Loaded shared machine: generous bounds on the count.
    assert 35 <= len(stamps) <= 51
    assert stamps == sorted(stamps)
    # Tick i serves deadline start + (i + 1 + skipped before it) / 50: never early,
    # and on average late by far less than a period (no accumulated drift).
    served = len(stamps) + sampler.skipped
    assert stamps[-1] >= start + served / 50.0 - 1e-6 - (1 / 50.0)
    if sampler.skipped == 0:
        lateness = [s - (start + (i + 1) / 50.0) for i, s in enumerate(stamps)]
        assert min(lateness) >= -1e-6
        assert sum(lateness) / len(lateness) < 0.01


def test_a_slow_tick_skips_missed_deadlines_instead_of_bursting() -> None:
    stamps: list[float] = []

    def tick(now: float) -> None:
        stamps.append(now)
        if len(stamps) == 2:
            time.sleep(0.35)  # seven periods at 20 Hz

    sampler = Sampler(tick, hz=20.0)
    sampler.start()
    time.sleep(0.8)
    sampler.stop()
    assert sampler.skipped >= 5
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert min(gaps[2:]) > 0.02  # no catch-up burst after the stall


def test_it_records_the_threads_own_cpu_time() -> None:
    def busy(now: float) -> None:
        end = time.thread_time() + 0.01
        while time.thread_time() < end:
            pass

    sampler = Sampler(busy, hz=20.0)
    sampler.start()
    time.sleep(0.5)
    sampler.stop()
    assert sampler.cpu_s >= 0.01 * (sampler.ticks - 1)


def test_stop_returns_promptly_and_runs_in_one_named_thread() -> None:
    names: set[str] = set()
    sampler = Sampler(lambda now: names.add(threading.current_thread().name), hz=1.0)
    sampler.start()
    time.sleep(0.05)
    begun = time.monotonic()
    sampler.stop()
    assert time.monotonic() - begun < 0.5
    assert names <= {"energy-sampler"}


def test_an_error_in_a_tick_is_kept_for_the_report() -> None:
    def fail(now: float) -> None:
        raise RuntimeError("meter exploded")

    sampler = Sampler(fail, hz=50.0)
    sampler.start()
    time.sleep(0.1)
    sampler.stop()
    assert isinstance(sampler.error, RuntimeError)


@pytest.mark.parametrize("hz", [0, -1, 5000])
def test_an_impossible_rate_is_refused(hz: float) -> None:
    with pytest.raises(ValueError, match="hz"):
        Sampler(lambda now: None, hz=hz)
