"""A run's GPU settings and clocks: what makes two runs' figures comparable.

The meter reads the power limit, the application clocks, the current clocks and the
clock event ("throttle") reasons once a second (:class:`GpuState`). A run records
them, flags a setting that changed during its window and a hardware or thermal
slowdown, and gets a short ``settings_key`` (model, power limit, application clocks)
that runs to be compared together share.
"""

from __future__ import annotations

import statistics
from typing import Any

from core.contract import SensorPeriods
from workers.energy.meters import GpuState

#: NVML's clocks event reasons (``nvmlClocksEventReason*`` in nvml.h).
EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu idle"),
    (0x2, "application clocks setting"),
    (0x4, "software power cap"),
    (0x8, "hardware slowdown"),
    (0x10, "sync boost"),
    (0x20, "software thermal slowdown"),
    (0x40, "hardware thermal slowdown"),
    (0x80, "hardware power brake slowdown"),
    (0x100, "display clock setting"),
)
#: Reasons that make a run's figures incomparable with one that ran without them.
SLOWDOWNS = frozenset(
    {
        "hardware slowdown",
        "software thermal slowdown",
        "hardware thermal slowdown",
        "hardware power brake slowdown",
    }
)
#: Settings (not readings): a change of one during the window is flagged.
SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("power_limit_w", "power limit", "W"),
    ("app_sm_clock_mhz", "application SM clock", "MHz"),
    ("app_mem_clock_mhz", "application memory clock", "MHz"),
)
CHANGED = "changed during the run"


def _distinct(values: list[float | None]) -> list[float]:
    out: list[float] = []
    for value in values:
        if value is not None and (not out or out[-1] != value):
            out.append(value)
    return out


def _spread(values: list[float | None]) -> dict[str, float] | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return {"min": min(known), "max": max(known), "mean": round(statistics.fmean(known), 1)}


def gpu_record(
    index: int, name: str, states: list[GpuState], periods: SensorPeriods | None
) -> tuple[dict[str, Any], list[str]]:
    """One GPU's record over the window and the flags it raises."""
    flags: list[str] = []
    record: dict[str, Any] = {"index": index, "name": name, "reads": len(states)}
    for attr, label, unit in SETTINGS:
        seen = _distinct([getattr(s, attr) for s in states])
        record[attr] = seen[0] if seen else None
        if len(seen) > 1:
            record[f"{attr}_seen"] = seen
            flags.append(
                f"GPU {index}: {label} {CHANGED}: "
                + " → ".join(f"{v:g} {unit}" for v in seen)
                + " (read once a second)"
            )
    record["sm_clock_mhz"] = _spread([s.sm_clock_mhz for s in states])
    record["mem_clock_mhz"] = _spread([s.mem_clock_mhz for s in states])
    masks = [s.event_reasons for s in states if s.event_reasons is not None]
    reasons: dict[str, float] = {}
    for bit, reason in EVENT_REASONS:
        hits = sum(1 for mask in masks if mask & bit)
        if hits:
            reasons[reason] = round(hits / len(masks), 3)
    record["clock_event_reasons"] = reasons
    slowed = {r: f for r, f in reasons.items() if r in SLOWDOWNS}
    if slowed:
        flags.append(
            f"GPU {index} slowed down: "
            + ", ".join(f"{r} in {100 * f:.0f} % of the 1 s reads" for r, f in slowed.items())
            + ": not comparable with a run that was not"
        )
    if periods is not None:
        record["sensor_periods"] = periods.to_dict()
    return record, flags


def settings_key(records: list[dict[str, Any]], changed: bool) -> str:
    """A short text that two runs on the same settings share (for grouping)."""
    parts = []
    for r in records:
        text = str(r.get("name") or f"GPU {r.get('index')}")
        if r.get("power_limit_w") is not None:
            text += f" · {r['power_limit_w']:g} W"
        sm, mem = r.get("app_sm_clock_mhz"), r.get("app_mem_clock_mhz")
        if sm is not None or mem is not None:
            text += " · app clocks " + "/".join("?" if v is None else f"{v:g}" for v in (sm, mem))
            text += " MHz"
        parts.append(text)
    key = " + ".join(parts)
    return f"{key} · {CHANGED}" if key and changed else key
