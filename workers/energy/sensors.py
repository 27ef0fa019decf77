"""How often a GPU's sensors really update, observed rather than assumed.

NVML's energy counter advances about every 100 ms on A100/H100-class boards, and their
power is sampled only part of the time; a reading between two updates repeats the
last one. A window a few update periods long can be off by one update at each edge,
so the worker observes both periods for its GPU when it starts (the Host row keeps
them), the plan carries them to every measurement, and a window shorter than
:data:`FEW_PERIODS` of them is flagged.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from core.contract import SensorPeriods
from workers.energy import nvml
from workers.energy.meters import MeterUnavailable

#: A window shorter than this many update periods of the sensor its figure rests on
#: is flagged: one update more or less at each edge is then more than 2 / FEW_PERIODS.
FEW_PERIODS = 10
#: How long the worker watches its GPU at start, and how often it reads it meanwhile.
OBSERVE_S = 1.0
POLL_S = 0.002


def _median_gap(changes: list[float]) -> float | None:
    gaps = [b - a for a, b in zip(changes, changes[1:], strict=False)]
    return statistics.median(gaps) if gaps else None


def observe_update_periods(
    indices: list[int], seconds: float = OBSERVE_S, poll_s: float = POLL_S
) -> dict[int, SensorPeriods]:
    """Each GPU's energy-counter and power update periods: the median time between two
    readings that differ, polled every ``poll_s`` for ``seconds``. A GPU NVML cannot
    open is left out; a quantity that never changed has period None."""
    meters: list[nvml.NvmlGpuMeter] = []
    try:
        nvml.init()
    except MeterUnavailable:
        return {}
    for index in indices:
        try:
            meters.append(nvml.NvmlGpuMeter(index))
        except MeterUnavailable:
            continue
    last: dict[int, tuple[Any, Any]] = {}
    changes: dict[int, tuple[list[float], list[float]]] = {m.index: ([], []) for m in meters}
    reads = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for meter in meters:
                energy, power = meter.read_energy_power()
                now = time.monotonic()
                before = last.get(meter.index)
                if before is not None:
                    if energy is not None and energy != before[0]:
                        changes[meter.index][0].append(now)
                    if power is not None and power != before[1]:
                        changes[meter.index][1].append(now)
                last[meter.index] = (energy, power)
            reads += 1
            time.sleep(poll_s)
    finally:
        for meter in meters:
            meter.close()
    return {
        index: SensorPeriods(
            counter_s=_median_gap(counter),
            power_s=_median_gap(power),
            observed_s=seconds,
            reads=reads,
        )
        for index, (counter, power) in changes.items()
    }
