"""The example experiment file the new-experiment page shows beside the upload: built
from the workloads registered here, so that it submits as it stands (a fixed example
named workloads this installation does not have)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: How many configurations the example asks for where a parameter can give them.
CONFIGURATIONS = 3


def _mutable(param: dict[str, Any]) -> bool:
    """Whether mutating the parameter gives CONFIGURATIONS distinct values."""
    kind = param.get("type")
    low, high = param.get("min"), param.get("max")
    if kind == "float":
        return isinstance(low, int | float) and isinstance(high, int | float) and high > low
    if kind == "int":
        return isinstance(low, int) and isinstance(high, int) and high - low + 1 >= CONFIGURATIONS
    if kind == "choice":
        return len(param.get("choices") or []) >= CONFIGURATIONS
    return False


def _to_mutate(workload: Any) -> str:
    """A parameter worth sweeping: a continuous one first, else any that has the room."""
    params = [p for p in workload.hyperparameters or [] if isinstance(p, dict) and p.get("name")]
    for kind in ("float", "int", "choice"):
        for param in params:
            if param.get("type") == kind and _mutable(param):
                return str(param["name"])
    return ""


def sample_experiment_file(workloads: Sequence[Any]) -> str:
    """YAML for a parallel sweep of the first registered workload (its background the
    next one, or itself), or "" where there is none."""
    if not workloads:
        return ""
    foreground = workloads[0]
    background = workloads[1] if len(workloads) > 1 else workloads[0]
    mutate = _to_mutate(foreground)
    lines = [
        f"name: {foreground.name}-sweep",
        "foreground:",
        f"  workload: {foreground.name}",
    ]
    if mutate:
        lines += [
            f"  mutate: [{mutate}]     # drawn from its range; others keep their defaults",
            "strategy: together      # or one_at_a_time",
            f"configurations: {CONFIGURATIONS}",
            "seed: 7                 # the same file, the same configurations",
            "# skip_configurations_run: true   # draw only ones not run yet in this mode",
            "# configurations_from: CODE       # or run another experiment's, exactly",
        ]
    else:
        lines.append("configurations: 1")
    lines += [
        "runs_per_config: 3",
        "background:             # leave it out for a solo experiment",
        f"  workload: {background.name}",
        "  restart_delay: 2",
        "  startup_wait: 5",
    ]
    return "\n".join(lines) + "\n"
