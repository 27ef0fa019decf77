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
file's. Entries without ``repo`` (and no foreground) are comments; unknown keys
(``comment``, ``governor``, ``historical_csvs`` ...) are ignored: Wattlab always
deduplicates against the stored (and imported) history.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.expfile import ExperimentFile, ExperimentFileError, experiment_file_from_dict
from experiments.legacy.workloads import legacy_workload
from experiments.models import Workload
from experiments.mutation import SpaceError, parse_space

MODES = ("mutation", "default", "parallel")
MAX_RETRIES = 10  # the experiment file's own limit


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


def _count(value: Any, where: str, errors: list[str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        errors.append(f"{where}: {value!r} is not a positive whole number")
        return None
    return int(value)


def _workload(block: dict[str, Any], where: str, errors: list[str]) -> Workload | None:
    repo, model = block.get("repo"), block.get("model")
    if not isinstance(repo, str) or not repo:
        errors.append(f"{where}.repo: is required (a repository name)")
        return None
    if not isinstance(model, str) or not model:
        errors.append(f"{where}.model: is required (a model name)")
        return None
    workload = legacy_workload(repo, model)
    if workload is None or not workload.is_active:
        errors.append(
            f"{where}: no workload for repository {repo!r} and model {model!r} "
            "(import the profiler's models_config.json with import_legacy_workloads first)"
        )
        return None
    return workload


def _hyperparameters(block: dict[str, Any], where: str, errors: list[str]) -> dict[str, Any]:
    values = block.get("hyperparameters") or {}
    if not isinstance(values, dict):
        errors.append(f"{where}.hyperparameters: must be an object of name: value")
        return {}
    return dict(values)


def _mutate(block: dict[str, Any], workload: Workload, where: str, errors: list[str]) -> list[str]:
    mutate = block.get("mutate")
    if mutate is None:
        errors.append(f"{where}.mutate: is required for a mutation entry")
        return []
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


def convert_settings(
    data: Any,
    *,
    filename: str,
    timeout: float = 3 * 3600.0,
    sleep_between_runs: float = 60.0,
    target: str = "any",
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
    for index, entry in enumerate(entries):
        where = f"experiments[{index}]"
        if not isinstance(entry, dict):
            errors.append(f"{where}: must be an object")
            continue
        if "repo" not in entry and "foreground" not in entry:
            continue  # a comment entry
        mode = entry.get("mode", top_mode if "foreground" not in entry else "parallel")
        if mode not in MODES:
            errors.append(f"{where}.mode: {mode!r} is not one of {', '.join(MODES)}")
            continue
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
        fg_mode = fg_block.get("mode", "mutation" if "mutate" in fg_block else "default")
        if mode == "parallel" and fg_mode not in ("mutation", "default"):
            errors.append(f"{fg_where}.mode: {fg_mode!r} is not mutation or default")
            continue
        if mode != "parallel":
            fg_mode = mode
        runs = _count(entry.get("runs_per_config"), f"{where}.runs_per_config", errors)
        if runs is None and mode == "parallel":
            runs = _count(fg_block.get("runs_per_config"), f"{fg_where}.runs_per_config", errors)
        runs = runs or top_runs or 1
        workload = _workload(fg_block, fg_where, errors)
        fixed = _hyperparameters(fg_block, fg_where, errors)
        mutate: list[str] = []
        if workload is not None and fg_mode == "mutation":
            mutate = _mutate(fg_block, workload, fg_where, errors)
            # A value listed both as fixed and to mutate is mutated (as the profiler did).
            fixed = {k: v for k, v in fixed.items() if k not in mutate}
        background = None
        bg_label = ""
        if bg_block is not None:
            bg_workload = _workload(bg_block, f"{where}.background", errors)
            bg_values = _hyperparameters(bg_block, f"{where}.background", errors)
            if bg_workload is not None:
                background = {"workload": bg_workload.name, "hyperparameters": bg_values}
                bg_label = f"{bg_block['repo']}/{bg_block['model']}"
        if len(errors) > n_errors or workload is None:
            continue
        raw = {
            "name": f"{base_name} #{index}: {fg_block['repo']}/{fg_block['model']} {mode}"[:200],
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
                repository=fg_block["repo"],
                model=fg_block["model"],
                background=bg_label,
                spec=spec,
            )
        )
    if errors:
        raise LegacySettingsError(errors)
    if not planned:
        raise LegacySettingsError(["experiments: has no entries to import (only comments?)"])
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
