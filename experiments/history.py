"""What a workload has already run: how often each configuration was measured (the
preview says it), and the configurations a file that skips them avoids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from experiments.models import Experiment, Run, Workload
from experiments.mutation import Param, SpaceError, config_key, format_value, parse_space

#: Runs that never measured their configuration do not use it up.
_NOT_MEASURED = (Run.Status.CANCELLED, Run.Status.ERROR)


def _space_of(workload: Workload) -> list[Param]:
    try:
        return parse_space(workload.hyperparameters)
    except SpaceError:
        # A workload whose space no longer parses still has a history; its keys are
        # then built from the values alone (config_key copes without a space).
        return []


def full_configuration(space: list[Param], values: Mapping[str, object]) -> dict[str, object]:
    """Defaults overlaid with a run's values. The earlier profiler recorded only the
    values it mutated, so an imported run needs the defaults filled in to compare."""
    config: dict[str, object] = {p.name: p.default for p in space}
    by_name = {p.name: p for p in space}
    for name, value in values.items():
        param = by_name.get(name)
        if param is not None:
            try:
                value = format_value(param, value)
            except SpaceError:
                pass
        config[name] = value
    return config


def configuration_key(space: list[Param], values: Mapping[str, object]) -> str:
    """The ``config_key`` of a configuration, its defaults filled in."""
    return config_key(full_configuration(space, values), space or None)


def configuration_keys(space: list[Param], configs: Iterable[Mapping[str, object]]) -> set[str]:
    return {configuration_key(space, c) for c in configs}


def configuration_counts(
    *, workload: Workload, mode: str, space: list[Param] | None = None
) -> Counter[str]:
    """How many runs of each configuration (by ``config_key``) this workload measured,
    is measuring or has queued in ``mode``; parallel and solo are separate histories.
    Imported runs count. ``space``: the workload's, parsed by the caller (it is parsed
    here otherwise)."""
    space = _space_of(workload) if space is None else space
    runs = (
        Run.objects.filter(experiment__foreground_workload=workload, experiment__mode=mode)
        .exclude(status__in=_NOT_MEASURED)
        .values_list("hyperparameters", flat=True)
    )
    counts: Counter[str] = Counter(configuration_key(space, hp) for hp in runs)
    # Configurations planned by experiments still queued or running, whose runs may
    # not all exist yet, are taken too: two submissions that skip what was run must not
    # pick the same one.
    plans = Experiment.objects.filter(
        foreground_workload=workload, mode=mode, status__in=Experiment.ACTIVE_STATUSES
    ).values_list("plan", flat=True)
    for plan in plans:
        for entry in plan or []:
            if isinstance(entry, dict) and isinstance(entry.get("hyperparameters"), dict):
                key = configuration_key(space, entry["hyperparameters"])
                counts[key] = max(counts[key], 1)
    return counts


def seen_configuration_keys(
    *, workload: Workload, mode: str, space: list[Param] | None = None
) -> set[str]:
    """``config_key``s of every configuration this workload ran (or has queued) in
    ``mode``: what ``skip_configurations_run`` skips."""
    return set(configuration_counts(workload=workload, mode=mode, space=space))


def typical_run_seconds(*, workload: Workload, mode: str) -> tuple[float, int] | None:
    """(median duration, how many runs) of this workload's succeeded runs in ``mode``,
    imported ones included; None without any. An estimate for planning how long an
    experiment takes: a run's timeout is only its ceiling."""
    durations: list[float] = sorted(
        d
        for d in Run.objects.filter(
            experiment__foreground_workload=workload,
            experiment__mode=mode,
            status=Run.Status.SUCCEEDED,
            duration_s__isnull=False,
        ).values_list("duration_s", flat=True)
        if d is not None
    )
    if not durations:
        return None
    n = len(durations)
    middle = n // 2
    median = durations[middle] if n % 2 else (durations[middle - 1] + durations[middle]) / 2
    return float(median), n
