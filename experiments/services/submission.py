"""Submitting an experiment: check the file against the registered workloads, draw its
configurations, store it and send it (after commit). The form, the upload, the API,
``manage.py submit``, the legacy importer, Re-run, "same configurations, other mode" and
Compare's "add runs" all end here.

The same file gives the same configurations whatever the history holds: the draw is a
function of the workload's space, the fixed values, the mutate list, the strategy, the
count and the seed. Skipping configurations already run is the file's choice
(``skip_configurations_run: true``), and ``configurations_from: <code>`` takes another
experiment's configurations exactly, so parallel against solo pairs by design.

Each workload's hyperparameter space is parsed once per submission (``_Submission``) and
handed to everything that needs it: the checks, the sampling notes, the history and the
plan.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from experiments import history, mutation
from experiments.expfile import ExperimentFile, experiment_file_from_dict
from experiments.models import Experiment, Host, Run, Workload
from experiments.mutation import Param
from experiments.services.dispatch import _dispatch

Errors = dict[str, list[str]]


@dataclass
class PlanPreview:
    """What a submission would run. ``available``: configurations the space can supply
    (less those already run when the file skips them); None: a continuous range makes
    the supply practically unlimited."""

    configurations: list[dict[str, Any]] = field(default_factory=list)
    available: int | None = 0
    errors: Errors = field(default_factory=dict)
    #: Said, never refused: fixed values outside the sampling range, duration notes.
    warnings: Errors = field(default_factory=dict)
    #: Runs of each planned configuration already measured (or queued) in this mode.
    already_run: list[int] = field(default_factory=list)
    #: With skipping: the configurations the same file draws without it that were
    #: already run, and so were skipped.
    skipped: list[dict[str, Any]] = field(default_factory=list)
    skip: bool = False
    #: The experiment the configurations come from (``configurations_from``).
    source: Experiment | None = None


def _add(errors: Errors, key: str, message: str) -> None:
    errors.setdefault(key, []).append(message)


@dataclass
class _Submission:
    """One submission's checks, with each workload's space parsed once."""

    spec: ExperimentFile
    legacy_file: bool = False
    errors: Errors = field(default_factory=dict)
    warnings: Errors = field(default_factory=dict)
    workload: Workload | None = None
    space: list[Param] | None = None
    #: The experiment named by ``configurations_from``, and its configurations.
    source: Experiment | None = None
    source_configurations: list[dict[str, Any]] = field(default_factory=list)
    _spaces: dict[int, list[Param] | None] = field(default_factory=dict)

    def space_of(self, workload: Workload, key: str) -> list[Param] | None:
        if workload.pk not in self._spaces:
            try:
                self._spaces[workload.pk] = mutation.parse_space(workload.hyperparameters)
            except mutation.SpaceError as exc:
                self._spaces[workload.pk] = None
                _add(self.errors, key, f"workload {workload.name!r} is misconfigured: {exc}")
        return self._spaces[workload.pk]

    @property
    def configurations(self) -> int:
        return len(self.source_configurations) if self.source else self.spec.configurations


def _active_workload(name: str, key: str, errors: Errors) -> Workload | None:
    workload = Workload.objects.filter(name=name).first()
    if workload is None:
        known = ", ".join(Workload.objects.filter(is_active=True).values_list("name", flat=True))
        _add(errors, key, f"no workload named {name!r} is registered (known: {known or 'none'})")
        return None
    if not workload.is_active:
        _add(errors, key, f"workload {name!r} is retired and takes no new experiments")
        return None
    return workload


def _check_part(
    sub: _Submission,
    *,
    prefix: str,
    workload: Workload,
    values: dict[str, Any],
    mutate: list[str],
) -> list[Param] | None:
    space = sub.space_of(workload, f"{prefix}.workload")
    if space is None:
        return None
    for name, problem in mutation.check_values(space, values).items():
        _add(sub.errors, f"{prefix}.hyperparameters.{name}", problem)
    # Fixed values outside the sampling range: a boundary test on purpose, or a slip
    # worth a look; said, never refused.
    for name, note in mutation.outside_sampling_range(space, values).items():
        _add(sub.warnings, f"{prefix}.hyperparameters.{name}", note)
    known = {param.name for param in space}
    for name in mutate:
        if name not in known:
            _add(
                sub.errors,
                f"{prefix}.mutate",
                f"{name!r} is not a parameter of {workload.name} "
                f"(parameters: {', '.join(sorted(known)) or 'none'})",
            )
        elif name in values:
            _add(sub.errors, f"{prefix}.mutate", f"{name!r} is both fixed and mutated; pick one")
    return space


def _check_target(spec: ExperimentFile, errors: Errors) -> None:
    hostname, gpu = spec.target_parts()
    if hostname is None:
        return
    host = Host.objects.filter(hostname=hostname).first()
    if host is None:
        _add(errors, "target", f"no host named {hostname!r} has registered a worker")
        return
    if gpu is not None and gpu not in {g.get("index") for g in host.gpus}:
        indices = ", ".join(str(g.get("index")) for g in host.gpus) or "none"
        _add(errors, "target", f"host {hostname} has no GPU {gpu} (GPUs: {indices})")


#: Keys ``configurations_from`` replaces: the configurations come from the other
#: experiment, so these would say something that does not happen.
_FROM_REPLACES = ("configurations", "strategy")


def _check_source(sub: _Submission) -> None:
    """``configurations_from``: the other experiment exists, is of the same workload,
    and the file does not also say how to draw configurations."""
    spec = sub.spec
    code = spec.configurations_from
    if code is None:
        return
    key = "configurations_from"
    try:
        source = Experiment.objects.filter(code=uuid.UUID(code)).first()
    except ValueError:
        source = None
    if source is None:
        _add(sub.errors, key, f"no experiment has the code {code}")
        return
    drawn = (
        ("hyperparameters", spec.foreground.hyperparameters),
        ("mutate", spec.foreground.mutate),
    )
    conflicting = [f"foreground.{k}" for k, v in drawn if v]
    conflicting += [k for k in _FROM_REPLACES if k in spec.model_fields_set]
    conflicting += ["seed"] if spec.seed is not None else []
    conflicting += ["skip_configurations_run"] if spec.skip_configurations_run else []
    if conflicting:
        _add(
            sub.errors,
            key,
            f"takes the configurations of {source.name} ({code}) as they are: leave out "
            + ", ".join(conflicting),
        )
    if source.foreground_workload_id != (sub.workload.pk if sub.workload else None):
        _add(
            sub.errors,
            key,
            f"{source.name} ({code}) trained {source.foreground_workload.name}, "
            f"not {spec.foreground.workload}",
        )
        return
    from experiments.selectors import experiment_configurations

    sub.source = source
    sub.source_configurations = [dict(c) for c in experiment_configurations(source)]
    if not sub.source_configurations:
        _add(sub.errors, key, f"{source.name} ({code}) has no configurations to take")
    elif sub.space is not None:
        for i, values in enumerate(sub.source_configurations):
            for name, problem in mutation.check_values(sub.space, values).items():
                _add(sub.errors, key, f"configuration {i}: {name}: {problem}")


def _check(spec: ExperimentFile, *, legacy_file: bool = False) -> _Submission:
    """Everything a submission is refused or told for, each space parsed once."""
    sub = _Submission(spec=spec, legacy_file=legacy_file)
    errors = sub.errors
    _check_workloads(sub)
    if spec.timeout > settings.WATTLAB_MAX_RUN_SECONDS:
        _add(
            errors,
            "timeout",
            f"{spec.timeout:g} is above the maximum {settings.WATTLAB_MAX_RUN_SECONDS} "
            "seconds per run",
        )
    _check_source(sub)
    if not spec.foreground.mutate and spec.configurations > 1 and not sub.source:
        _add(
            errors,
            "configurations",
            f"{spec.configurations} configurations need at least one parameter in "
            "foreground.mutate (without it every configuration is the same)",
        )
    _check_target(spec, errors)
    if spec.is_slurm:
        from experiments.slurm.options import check_slurm_spec

        for key, message in check_slurm_spec(spec):
            _add(errors, key, message)
    if sub.workload is not None:
        _duration_check(sub, sub.workload)
    return sub


def _duration_check(sub: _Submission, workload: Workload) -> None:
    """Errors and warnings about how long the experiment may take.

    ``configurations x runs x (retries + 1) x (timeout + sleep)`` is a ceiling, not an
    estimate: the timeout is there to stop a hung run. It is only said. What is
    checked is the expected duration from this workload's earlier runs in this mode
    (imported ones included) where there are any: above the limit the worker's soft
    time limit would stop the experiment part way, so a native submission is refused;
    a file the earlier profiler ran is imported with a warning (it ran that long
    there). The broker does not need the experiment to fit: a second delivery finds it
    claimed (see ``experiment_claim``)."""
    spec = sub.spec
    limit = settings.WATTLAB_MAX_EXPERIMENT_SECONDS
    runs = sub.configurations * spec.runs_per_config
    worst = runs * (spec.max_retries + 1) * (spec.timeout + spec.sleep_between_runs)
    typical = history.typical_run_seconds(workload=workload, mode=spec.mode)
    refused = False
    if typical is not None:
        median, n = typical
        expected = runs * median + (runs - 1) * spec.sleep_between_runs
        if expected > limit:
            message = (
                f"expected about {expected:.0f} s ({runs} runs at the median {median:.0f} s "
                f"of {n} earlier runs of {workload.name} in {spec.mode} mode, plus the "
                f"sleeps), above the {limit} s a worker gives an experiment before it "
                "stops it (WATTLAB_MAX_EXPERIMENT_SECONDS)"
            )
            refused = not sub.legacy_file
            _add(sub.errors if refused else sub.warnings, "configurations", message)
    if worst > limit and not refused:
        _add(
            sub.warnings,
            "timeout",
            f"at most {worst:g} s if every run used its whole timeout and every retry; "
            f"the worker stops an experiment after {limit} s"
            + ("" if typical else " (no earlier runs of this workload to estimate from)"),
        )


@dataclass
class _Plan:
    configurations: list[dict[str, Any]]
    available: int | None
    errors: Errors
    skipped: list[dict[str, Any]] = field(default_factory=list)


def _draw(
    spec: ExperimentFile, space: list[Param], seen: set[str]
) -> tuple[list[dict[str, Any]], int | None]:
    fixed = dict(spec.foreground.hyperparameters)
    mutate = list(spec.foreground.mutate)
    available = mutation.count_available(
        space, fixed=fixed, mutate=mutate, strategy=spec.strategy, seen=seen
    )
    configs = mutation.plan_configurations(
        space,
        fixed=fixed,
        mutate=mutate,
        n=spec.configurations,
        seed=spec.seed,
        strategy=spec.strategy,
        seen=seen,
    )
    return [dict(c) for c in configs], available


def _plan(sub: _Submission, *, explain: bool = False) -> _Plan:
    """The configurations to run. ``explain`` (the preview): also which configurations
    the skipping passed over."""
    spec = sub.spec
    assert sub.workload is not None and sub.space is not None
    if sub.source is not None:
        return _Plan([dict(c) for c in sub.source_configurations], None, {})
    seen: set[str] = set()
    if spec.skip_configurations_run:
        seen = history.seen_configuration_keys(
            workload=sub.workload, mode=spec.mode, space=sub.space
        )
    try:
        configs, available = _draw(spec, sub.space, seen)
    except mutation.SpaceExhausted as exc:
        return _Plan([], exc.available, {"configurations": [str(exc)]})
    except mutation.SpaceError as exc:
        return _Plan([], 0, {"foreground.mutate": [str(exc)]})
    skipped: list[dict[str, Any]] = []
    if explain and seen and spec.foreground.mutate:
        # What the same file draws without skipping, less what it still draws: the
        # configurations already run that the skipping passed over.
        try:
            plain, _ = _draw(spec, sub.space, set())
        except mutation.SpaceError:
            plain = []
        kept = {history.configuration_key(sub.space, c) for c in configs}
        skipped = [
            c
            for c in plain
            if (key := history.configuration_key(sub.space, c)) in seen and key not in kept
        ]
    return _Plan(configs, available, {}, skipped)


def experiment_plan_preview(*, spec: ExperimentFile, legacy_file: bool = False) -> PlanPreview:
    """What a submission would run, and what it would be refused for. ``legacy_file``:
    an entry of a file the earlier profiler ran (its expected duration only warns)."""
    sub = _check(spec, legacy_file=legacy_file)
    preview = PlanPreview(
        errors=sub.errors,
        warnings=sub.warnings,
        skip=spec.skip_configurations_run,
        source=sub.source,
    )
    if sub.errors or sub.workload is None or sub.space is None:
        return preview
    plan = _plan(sub, explain=True)
    preview.configurations = plan.configurations
    preview.available = plan.available
    preview.errors = plan.errors
    preview.skipped = plan.skipped
    counts = history.configuration_counts(workload=sub.workload, mode=spec.mode, space=sub.space)
    preview.already_run = [
        counts.get(history.configuration_key(sub.space, c), 0) for c in plan.configurations
    ]
    return preview


def experiment_submit(
    *, owner: Any, spec: ExperimentFile, source: str = "web", legacy_file: bool = False
) -> Experiment:
    """Validate against the registered workloads, plan, store and enqueue (after commit).

    Raises ``ValidationError`` whose ``message_dict`` is keyed by experiment-file key
    paths (``foreground.hyperparameters.epochs``). The experiment returned carries what
    the submission was told but not refused for in ``notes`` (not stored)."""
    sub = _check(spec, legacy_file=legacy_file)
    if sub.errors or sub.workload is None or sub.space is None:
        raise ValidationError(sub.errors or {"foreground.workload": ["is not usable"]})
    plan = _plan(sub)
    if plan.errors:
        raise ValidationError(plan.errors)
    entries = [
        {"index": i, "hyperparameters": values} for i, values in enumerate(plan.configurations)
    ]
    experiment = _create_experiment(
        owner=owner, spec=spec, source=source, plan=entries, template=sub.source
    )
    if sub.source is not None:
        _note(
            experiment,
            f"configurations taken from {sub.source.name} ({sub.source.code}), "
            f"{sub.source.mode} mode",
        )
    experiment.notes = sub.warnings
    return experiment


def _note(experiment: Experiment, message: str) -> None:
    """An event said on the experiment's page (where its configurations came from)."""
    event = {"at": timezone.now().isoformat(), "kind": "plan", "message": message[:2000]}
    experiment.events = [*experiment.events, event]
    Experiment.objects.filter(pk=experiment.pk).update(events=experiment.events)


def _create_experiment(
    *,
    owner: Any,
    spec: ExperimentFile,
    source: str,
    plan: list[dict[str, Any]],
    template: Experiment | None = None,
) -> Experiment:
    """Store the experiment and send it after commit. ``template``: the experiment whose
    configurations it takes (its fixed values and mutate list are recorded with them)."""
    fg = Workload.objects.get(name=spec.foreground.workload)
    bg = Workload.objects.get(name=spec.background.workload) if spec.background else None
    how = template or spec
    with transaction.atomic():
        _check_queued_runs_cap(owner, len(plan) * spec.runs_per_config)
        experiment = Experiment.objects.create(
            owner=owner if owner is not None and owner.is_authenticated else None,
            name=spec.name,
            mode=spec.mode,
            source=source,
            foreground_workload=fg,
            fg_hyperparameters=dict(template.fg_hyperparameters)
            if template
            else dict(spec.foreground.hyperparameters),
            mutate=list(template.mutate) if template else list(spec.foreground.mutate),
            strategy=how.strategy,
            configurations=len(plan),
            seed=how.seed,
            runs_per_config=spec.runs_per_config,
            sleep_between_runs=spec.sleep_between_runs,
            timeout=spec.timeout,
            max_retries=spec.max_retries,
            background_workload=bg,
            bg_hyperparameters=dict(spec.background.hyperparameters) if spec.background else {},
            restart_delay=spec.background.restart_delay if spec.background else 2.0,
            startup_wait=spec.background.startup_wait if spec.background else 5.0,
            between_runs=spec.background.between_runs if spec.background else "keep",
            target=spec.target,
            submitted_config=spec.model_dump(mode="json"),
            plan=plan,
            total_runs=len(plan) * spec.runs_per_config,
        )
        # Enqueue only once the row is visible to the worker that will claim it.
        transaction.on_commit(lambda: _dispatch(experiment))
    return experiment


def _check_queued_runs_cap(owner: Any, new_runs: int) -> None:
    """One user may not fill every GPU's queue: refuse a submission that would take
    their queued and running runs past ``WATTLAB_MAX_QUEUED_RUNS_PER_USER``.

    The owner's row is locked first, so two submissions at once cannot both slip
    under the cap. A submission without an owner (the command line run on the server
    by an operator) is not capped.
    """
    cap = settings.WATTLAB_MAX_QUEUED_RUNS_PER_USER
    if owner is None or not getattr(owner, "is_authenticated", False) or cap <= 0:
        return
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    pending = Experiment.objects.filter(
        owner=owner, status__in=Experiment.ACTIVE_STATUSES
    ).aggregate(total=Sum("total_runs"), done=Sum("runs_done"))
    waiting = (pending["total"] or 0) - (pending["done"] or 0)
    if waiting + new_runs > cap:
        raise ValidationError(
            {
                "configurations": [
                    f"this experiment has {new_runs} run(s) and you already have {waiting} "
                    f"queued or running; the limit is {cap} per user. Ask for fewer "
                    "configurations or runs, or wait for your experiments to finish."
                ]
            }
        )


def experiment_rerun(*, experiment: Experiment, by: Any) -> Experiment:
    """The same configurations again (not a new sample), owned by ``by``."""
    spec = experiment_file_from_dict(experiment.submitted_config)
    sub = _Submission(spec=spec)
    _check_parts_only(sub)
    if sub.errors:
        raise ValidationError(sub.errors)
    return _create_experiment(
        owner=by, spec=spec, source=experiment.source, plan=experiment.plan, template=experiment
    )


def _check_workloads(sub: _Submission) -> None:
    """The foreground and background workloads and their values (each space parsed
    once)."""
    spec = sub.spec
    fg = _active_workload(spec.foreground.workload, "foreground.workload", sub.errors)
    if fg is not None:
        sub.workload = fg
        sub.space = _check_part(
            sub,
            prefix="foreground",
            workload=fg,
            values=dict(spec.foreground.hyperparameters),
            mutate=list(spec.foreground.mutate),
        )
    if spec.background is not None:
        bg = _active_workload(spec.background.workload, "background.workload", sub.errors)
        if bg is not None:
            _check_part(
                sub,
                prefix="background",
                workload=bg,
                values=dict(spec.background.hyperparameters),
                mutate=[],
            )


def _check_parts_only(sub: _Submission) -> None:
    """The workloads, values and target of a file whose configurations are already
    chosen (Re-run, "add runs")."""
    _check_workloads(sub)
    _check_target(sub.spec, sub.errors)


# --- Same configurations, other mode; Compare's "add runs" --------------------------


def other_mode_text(*, experiment: Experiment) -> str:
    """An experiment file that runs this experiment's configurations in the other mode
    (``configurations_from``), for the user to read and submit. A solo experiment's
    parallel twin takes its background from the workload's latest parallel experiment,
    else runs the same workload in the background at its defaults (said in a comment)."""
    import yaml

    solo = experiment.mode == Experiment.Mode.PARALLEL
    spec: dict[str, Any] = {
        "name": f"{experiment.name} ({'solo' if solo else 'parallel'})"[:200],
        "foreground": {"workload": experiment.foreground_workload.name},
        "configurations_from": str(experiment.code),
        "runs_per_config": experiment.runs_per_config,
        "sleep_between_runs": experiment.sleep_between_runs,
        "timeout": experiment.timeout,
        "max_retries": experiment.max_retries,
        "target": experiment.target,
    }
    comment = (
        f"# The configurations of {experiment.name} ({experiment.code}), "
        f"{'alone on the GPU' if solo else 'with a background training beside them'}.\n"
    )
    if not solo:
        background, said = _background_for(experiment.foreground_workload)
        spec["background"] = background
        comment += f"# {said}\n"
    return comment + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)


def _background_for(
    workload: Workload, among: list[int] | None = None
) -> tuple[dict[str, Any], str]:
    """The background block of the latest parallel experiment of ``workload`` (among the
    given experiments when any), else the workload itself at its defaults."""
    parallel = Experiment.objects.filter(
        foreground_workload=workload,
        mode=Experiment.Mode.PARALLEL,
        background_workload__isnull=False,
    ).select_related("background_workload")
    if among:
        parallel = parallel.filter(id__in=among)
    latest = parallel.order_by("-created_at", "-id").first()
    if latest is not None and latest.background_workload is not None:
        return (
            {
                "workload": latest.background_workload.name,
                "hyperparameters": dict(latest.bg_hyperparameters),
                "restart_delay": latest.restart_delay,
                "startup_wait": latest.startup_wait,
                "between_runs": latest.between_runs,
            },
            f"The background of {latest.name} ({latest.code}).",
        )
    return (
        {"workload": workload.name},
        f"No parallel experiment of {workload.name} yet: the background is "
        f"{workload.name} at its defaults; change it to what shares your GPUs.",
    )


#: Modes "add runs" accepts.
ADD_MODES = ("solo", "parallel", "both")


def experiment_add_runs(
    *,
    owner: Any,
    workload: Workload,
    configurations: list[dict[str, Any]],
    runs: int,
    mode: str,
) -> list[Experiment]:
    """Queue exactly ``configurations`` again, ``runs`` runs each, solo, parallel or
    both (one experiment per mode): Compare's "add runs". The timing and target come
    from the latest experiment of the workload in that mode that ran one of these
    configurations, a parallel experiment's background too."""
    if mode not in ADD_MODES:
        raise ValidationError({"mode": [f"{mode!r} is not one of {', '.join(ADD_MODES)}"]})
    if not configurations:
        raise ValidationError({"configurations": ["no configuration to add runs to"]})
    modes: list[str] = ["solo", "parallel"] if mode == "both" else [mode]
    # The configurations are checked against the space before anything reads with them.
    try:
        space = mutation.parse_space(workload.hyperparameters)
    except mutation.SpaceError as exc:
        raise ValidationError(
            {"workload": [f"workload {workload.name!r} is misconfigured: {exc}"]}
        ) from None
    errors: Errors = {}
    for i, values in enumerate(configurations):
        for name, problem in mutation.check_values(space, values).items():
            _add(errors, "configurations", f"configuration {i}: {name}: {problem}")
    if errors:
        raise ValidationError(errors)
    created = []
    with transaction.atomic():
        for m in modes:
            spec = _add_runs_spec(workload, configurations, runs, m)
            sub = _Submission(spec=spec)
            sub._spaces[workload.pk] = space  # parsed once for this submission
            _check_parts_only(sub)
            if sub.errors:
                raise ValidationError(sub.errors)
            plan = [{"index": i, "hyperparameters": dict(c)} for i, c in enumerate(configurations)]
            experiment = _create_experiment(owner=owner, spec=spec, source="web", plan=plan)
            _note(
                experiment,
                f"{runs} more run{'s' if runs != 1 else ''} of {len(plan)} "
                f"configuration{'s' if len(plan) != 1 else ''} chosen on Compare",
            )
            created.append(experiment)
    return created


def _add_runs_spec(
    workload: Workload, configurations: list[dict[str, Any]], runs: int, mode: str
) -> ExperimentFile:
    ids = list(
        Run.objects.filter(
            experiment__foreground_workload=workload,
            experiment__mode=mode,
            hyperparameters__in=configurations,
        )
        .values_list("experiment_id", flat=True)
        .distinct()[:200]
    )
    template = (
        Experiment.objects.filter(foreground_workload=workload, mode=mode, id__in=ids)
        .order_by("-created_at", "-id")
        .first()
        or Experiment.objects.filter(foreground_workload=workload, mode=mode)
        .order_by("-created_at", "-id")
        .first()
    )
    n = len(configurations)
    raw: dict[str, Any] = {
        "name": f"{workload.name}: {runs} more {mode} run{'s' if runs != 1 else ''} of "
        f"{n} configuration{'s' if n != 1 else ''}",
        "foreground": {"workload": workload.name},
        "runs_per_config": runs,
    }
    if template is not None:
        raw.update(
            {
                "sleep_between_runs": template.sleep_between_runs,
                "timeout": template.timeout,
                "max_retries": template.max_retries,
                "target": template.target,
            }
        )
    if mode == Experiment.Mode.PARALLEL:
        if template is None or template.background_workload is None:
            raise ValidationError(
                {
                    "mode": [
                        f"no parallel experiment of {workload.name} to take a background "
                        "from: submit one first (an experiment's page offers the same "
                        "configurations in the other mode)"
                    ]
                }
            )
        raw["background"], _said = _background_for(workload, among=[template.id])
    return experiment_file_from_dict(raw)
