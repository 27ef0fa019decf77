"""The earlier profiler's experiment files (``settings/*.json``) as Wattlab experiments.

How its entries map (see docs/legacy.md):

* ``mutation``: every run of the profiler drew a new configuration, so its run count
  becomes the number of configurations (each run once), the listed parameters
  re-sampled together; ``["all"]`` means every parameter of the workload.
* ``default``: one baseline configuration (its ``hyperparameters`` fixed), repeated
  run-count times.
* ``parallel``: the ``foreground`` block is a mutation or default entry as above, the
  ``background`` block the workload kept busy beside it.

The run count is the entry's ``runs_per_config``, else the foreground block's, else the
file's. Entries without ``repo`` (or ``repository``) and no foreground are comments;
unknown keys (``comment``, ``governor``, ``historical_csvs`` ...) are ignored. The
profiler skipped configurations its history held, and its files rely on that: each
entry imports with ``skip_configurations_run: true`` (deduplicated against the stored
and imported history), which a Wattlab file leaves off by default.

Every file the profiler ran imports as it ran it (docs/legacy.md, "Experiment files"):
a mode it did not know is mutation, ``repository`` is ``repo``, hyperparameters the
registry does not list are dropped with a warning, fixed values outside the sampling
range are kept (noted), and renamed models map with ``model_aliases``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.expfile import ExperimentFile, ExperimentFileError, experiment_file_from_dict
from experiments.legacy.workloads import legacy_workload
from experiments.models import Workload
from experiments.mutation import SpaceError, parse_space

MODES = ("mutation", "default", "parallel")
MAX_RETRIES = 10  # the experiment file's own limit
NOTE_MUTATION = "the profiler ran every mode other than parallel and default as mutation"


class LegacySettingsError(ValueError):
    """The file cannot be imported; ``errors`` name the entry and key of each problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass
class PlannedExperiment:
    index: int  # position in the file's ``experiments`` list
    mode: str  # the profiler's: mutation | default | parallel
    repository: str
    model: str
    background: str  # "repo/model" or ""
    spec: ExperimentFile
    #: How the entry was read where the profiler's file says something Wattlab's
    #: format does not (a mode it ran as mutation, ``repository``, a model alias).
    readings: list[str] = field(default_factory=list)
    #: What was changed on the way in (hyperparameters the registry does not list).
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Context:
    errors: list[str]
    readings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    model_aliases: Mapping[str, str] = field(default_factory=dict)


def _count(value: Any, where: str, errors: list[str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        errors.append(f"{where}: {value!r} is not a positive whole number")
        return None
    return int(value)


def _repo(block: dict[str, Any]) -> Any:
    """Older files wrote ``repository`` (beside ``experiment_id``) for ``repo``."""
    return block["repo"] if "repo" in block else block.get("repository")


def _registry_models(repo: str) -> str:
    """What the registry has, for an error about a name it does not have."""
    workloads = Workload.objects.filter(is_active=True).exclude(legacy_repository="")
    models = sorted(workloads.filter(legacy_repository=repo).values_list("legacy_model", flat=True))
    if models:
        return f"the registry has these models for {repo}: {', '.join(models)}"
    repos = sorted(set(workloads.values_list("legacy_repository", flat=True)))
    return f"the registry has these repositories: {', '.join(repos) or 'none'}"


def _workload(block: dict[str, Any], where: str, ctx: _Context) -> tuple[Workload | None, str]:
    """(workload, model name as registered); errors name the entry and key."""
    errors = ctx.errors
    repo, model = _repo(block), block.get("model")
    if "repo" not in block and "repository" in block:
        ctx.readings.append(f"{where}.repository: read as repo")
    if not isinstance(repo, str) or not repo:
        errors.append(f"{where}.repo: is required (a repository name)")
        return None, ""
    if not isinstance(model, str) or not model:
        errors.append(f"{where}.model: is required (a model name)")
        return None, ""
    if model in ctx.model_aliases:
        alias = ctx.model_aliases[model]
        ctx.readings.append(f"{where}.model: {model!r} read as {alias!r} (--model-alias)")
        model = alias
    workload = legacy_workload(repo, model)
    if workload is None or not workload.is_active:
        errors.append(
            f"{where}: no workload for repository {repo!r} and model {model!r}; "
            f"{_registry_models(repo)} (a renamed model: map it with "
            f"--model-alias {model}=NEW; a missing registry: import the profiler's "
            "models_config.json with import_legacy_workloads first)"
        )
        return None, model
    return workload, model


def _hyperparameters(
    block: dict[str, Any], workload: Workload | None, where: str, ctx: _Context
) -> dict[str, Any]:
    """The block's fixed values, less the names the workload does not have: the
    profiler left those off the command line without a word; here each is a warning."""
    values = block.get("hyperparameters") or {}
    if not isinstance(values, dict):
        ctx.errors.append(f"{where}.hyperparameters: must be an object of name: value")
        return {}
    if workload is None:
        return dict(values)
    try:
        known = [p.name for p in parse_space(workload.hyperparameters)]
    except SpaceError:
        return dict(values)  # reported where the space is used
    kept = {}
    for name, value in values.items():
        if name in known:
            kept[name] = value
        else:
            ctx.warnings.append(
                f"{where}.hyperparameters.{name}: not a parameter of {workload.name}, "
                f"dropped as the profiler dropped it (known: {', '.join(known)})"
            )
    return kept


def _mutate(block: dict[str, Any], workload: Workload, where: str, errors: list[str]) -> list[str]:
    mutate = block.get("mutate", ["all"])  # the profiler's default
    if not isinstance(mutate, list) or not all(isinstance(m, str) for m in mutate):
        errors.append(f"{where}.mutate: must be a list of parameter names")
        return []
    try:
        names = [p.name for p in parse_space(workload.hyperparameters)]
    except SpaceError as exc:
        errors.append(f"{where}: workload {workload.name} has a broken space: {exc}")
        return []
    if mutate == ["all"]:
        return names
    unknown = [m for m in mutate if m not in names]
    if unknown:
        errors.append(
            f"{where}.mutate: {', '.join(unknown)} not a parameter of {workload.name} "
            f"(known: {', '.join(names)})"
        )
        return []
    return list(dict.fromkeys(mutate))


def _entry_mode(entry: dict[str, Any], top_mode: Any, where: str, ctx: _Context) -> str:
    """The profiler's rule: the entry's ``mode``, else the file's, else mutation; any
    mode but parallel and default runs as mutation (files say "nonparallel",
    "batch", or nothing). An entry with a foreground block and no mode is parallel."""
    if "mode" in entry:
        mode, source = entry["mode"], f"{where}.mode"
    elif "foreground" in entry:
        return "parallel"
    elif top_mode is not None:
        mode, source = top_mode, f"{where}: the file's mode"
    else:
        ctx.readings.append(f"{where}: no mode here or in the file: read as mutation")
        return "mutation"
    if mode in MODES:
        return str(mode)
    ctx.readings.append(f"{source} {mode!r} read as mutation ({NOTE_MUTATION})")
    return "mutation"


def _foreground_mode(block: dict[str, Any], where: str, ctx: _Context) -> str:
    """A parallel entry's foreground: mutation unless it says otherwise (the profiler's
    default); any mode but mutation ran its fixed hyperparameters, as default."""
    mode = block.get("mode", "mutation")
    if "mode" not in block:
        ctx.readings.append(f"{where}: no mode: read as mutation (the profiler's default)")
    if mode in ("mutation", "default"):
        return str(mode)
    ctx.readings.append(
        f"{where}.mode: {mode!r} read as default (the profiler ran the foreground's "
        "hyperparameters as they are unless its mode was mutation)"
    )
    return "default"


def convert_settings(
    data: Any,
    *,
    filename: str,
    timeout: float = 3 * 3600.0,
    sleep_between_runs: float = 60.0,
    target: str = "any",
    model_aliases: Mapping[str, str] | None = None,
) -> list[PlannedExperiment]:
    """One ``ExperimentFile`` per entry; raises LegacySettingsError listing every problem."""
    if not isinstance(data, dict):
        raise LegacySettingsError(["(file): must be an object (the profiler's settings file)"])
    entries = data.get("experiments")
    if not isinstance(entries, list):
        raise LegacySettingsError(
            ["experiments: is required, a list of entries (is this the profiler's settings file?)"]
        )
    errors: list[str] = []
    top_runs = _count(data.get("runs_per_config"), "runs_per_config", errors)
    retries = data.get("max_retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        errors.append(f"max_retries: {retries!r} is not a whole number of 0 or more")
        retries = 0
    if retries > MAX_RETRIES:
        errors.append(f"max_retries: {retries} is above Wattlab's maximum {MAX_RETRIES}")
    top_mode = data.get("mode")
    base_name = str(data.get("experiment_name") or Path(filename).stem)
    planned: list[PlannedExperiment] = []
    comments = 0
    for index, entry in enumerate(entries):
        where = f"experiments[{index}]"
        if not isinstance(entry, dict):
            errors.append(f"{where}: must be an object")
            continue
        if "repo" not in entry and "repository" not in entry and "foreground" not in entry:
            comments += 1
            continue  # a comment entry
        ctx = _Context(errors=errors, model_aliases=model_aliases or {})
        mode = _entry_mode(entry, top_mode, where, ctx)
        n_errors = len(errors)
        fg_block: dict[str, Any] = entry
        fg_where = where
        bg_block: dict[str, Any] | None = None
        if mode == "parallel":
            fg_raw, bg_raw = entry.get("foreground"), entry.get("background")
            fg_where = f"{where}.foreground"
            if not isinstance(fg_raw, dict):
                errors.append(f"{fg_where}: is required for a parallel entry (an object)")
                continue
            if not isinstance(bg_raw, dict):
                errors.append(f"{where}.background: is required for a parallel entry (an object)")
                continue
            fg_block, bg_block = fg_raw, bg_raw
            fg_mode = _foreground_mode(fg_block, fg_where, ctx)
        else:
            fg_mode = mode
        runs = _count(entry.get("runs_per_config"), f"{where}.runs_per_config", errors)
        if runs is None and mode == "parallel":
            runs = _count(fg_block.get("runs_per_config"), f"{fg_where}.runs_per_config", errors)
        runs = runs or top_runs or 1
        workload, fg_model = _workload(fg_block, fg_where, ctx)
        fixed = _hyperparameters(fg_block, workload, fg_where, ctx)
        mutate: list[str] = []
        if workload is not None and fg_mode == "mutation":
            if "mutate" not in fg_block:
                ctx.readings.append(f"{fg_where}: no mutate: every parameter (the profiler's)")
            mutate = _mutate(fg_block, workload, fg_where, errors)
            # A value listed both as fixed and to mutate is mutated (as the profiler did).
            fixed = {k: v for k, v in fixed.items() if k not in mutate}
        background = None
        bg_label = ""
        if bg_block is not None:
            bg_workload, bg_model = _workload(bg_block, f"{where}.background", ctx)
            bg_values = _hyperparameters(bg_block, bg_workload, f"{where}.background", ctx)
            if bg_workload is not None:
                background = {"workload": bg_workload.name, "hyperparameters": bg_values}
                bg_label = f"{_repo(bg_block)}/{bg_model}"
        if len(errors) > n_errors or workload is None:
            continue
        fg_repo = _repo(fg_block)
        raw = {
            "name": f"{base_name} #{index}: {fg_repo}/{fg_model} {mode}"[:200],
            "foreground": {"workload": workload.name, "hyperparameters": fixed, "mutate": mutate},
            # The profiler drew a new configuration for every run of a mutation entry.
            "configurations": runs if fg_mode == "mutation" else 1,
            "runs_per_config": 1 if fg_mode == "mutation" else runs,
            # A fixed seed per file and entry: the preview shows what --submit plans.
            "seed": zlib.crc32(f"{Path(filename).name}:{index}".encode()),
            "sleep_between_runs": sleep_between_runs,
            "timeout": timeout,
            "max_retries": min(retries, MAX_RETRIES),
            "target": target,
            "strategy": "together",
            # The profiler drew only configurations its CSVs did not hold: a file it
            # ran relies on that, so it imports skipping the ones already run.
            "skip_configurations_run": True,
        }
        if background is not None:
            raw["background"] = background
        try:
            spec = experiment_file_from_dict(raw)
        except ExperimentFileError as exc:
            errors += [f"{where}: {e}" for e in exc.errors]
            continue
        planned.append(
            PlannedExperiment(
                index=index,
                mode=mode,
                repository=fg_repo,
                model=fg_model,
                background=bg_label,
                spec=spec,
                readings=ctx.readings,
                warnings=ctx.warnings,
            )
        )
    if errors:
        raise LegacySettingsError(errors)
    if not planned:
        raise LegacySettingsError(
            [
                f"experiments: has no entries to import: its {comments} entries name no "
                "repository (repo or repository) and no foreground block, which makes "
                "them comments"
            ]
        )
    return planned


def load_settings(path: Path, **options: Any) -> list[PlannedExperiment]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LegacySettingsError([f"{path}: no such file"]) from None
    except UnicodeDecodeError as exc:
        raise LegacySettingsError([f"{path}: not UTF-8 text ({exc.reason})"]) from None
    except json.JSONDecodeError as exc:
        raise LegacySettingsError(
            [f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
        ) from None
    return convert_settings(data, filename=path.name, **options)
