"""Pure energy arithmetic: trapezoid integrals, counter differences, summaries."""

from __future__ import annotations

from collections.abc import Sequence


def trapezoid_j(times_s: Sequence[float], power_w: Sequence[float | None]) -> float | None:
    """Energy in joules from power samples at their real timestamps (trapezoid rule).

    Samples with no power reading are skipped (the neighbours are joined), so a
    missed read costs accuracy, never a silent zero. None when fewer than two
    readings exist: one sample spans no time.
    """
    points = [(t, p) for t, p in zip(times_s, power_w, strict=True) if p is not None]
    if len(points) < 2:
        return None
    total = 0.0
    for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False):
        total += (t1 - t0) * (p0 + p1) / 2.0
    return total


def legacy_one_second_sum_j(power_w: Sequence[float]) -> float:
    """What the earlier profiler did: each sample counted as exactly one second.

    Kept only to show its error in the benchmark; never used for a figure.
    """
    return float(sum(power_w))


def counter_delta(previous: int, current: int, max_range: int | None) -> int:
    """Increase of a monotonically growing counter that wraps to 0 after ``max_range``.

    RAPL's ``energy_uj`` wraps at ``max_energy_range_uj``; one wrap between two reads
    is the most we can recover, which is why the sampler polls far more often than
    the fastest wrap (minutes at full power).
    """
    if current >= previous:
        return current - previous
    if max_range is None or max_range <= 0:
        raise ValueError(
            f"counter went backwards ({previous} -> {current}) and no wrap range is known"
        )
    return (max_range - previous) + current


def summary(values: Sequence[float | None]) -> tuple[float | None, float | None, float | None]:
    """(average, maximum, minimum) of the readings that exist; Nones when there are none."""
    present = [v for v in values if v is not None]
    if not present:
        return None, None, None
    return sum(present) / len(present), max(present), min(present)
