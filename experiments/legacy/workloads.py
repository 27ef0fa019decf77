"""The earlier profiler's ``models_config.json`` as Wattlab workloads."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils.text import slugify

from core.metrics import check_patterns
from experiments.models import Workload
from experiments.mutation import SpaceError, parse_space


class LegacyConfigError(ValueError):
    """models_config.json cannot be used; the message names repository and key."""


@dataclass
class WorkloadSpec:
    repository: str
    model: str
    name: str
    workdir: str
    argv: list[str]
    hyperparameters: list[dict[str, Any]]
    metric_patterns: dict[str, str] = field(default_factory=dict)


def workload_name(repository: str, model: str) -> str:
    """``MRT-OAST``/``default`` -> ``mrt-oast-default`` (one workload per repo+model)."""
    return slugify(f"{repository}-{model}")


def _space(repository: str, raw: Any) -> list[dict[str, Any]]:
    where = f"{repository}.supported_hyperparams"
    if not isinstance(raw, dict):
        raise LegacyConfigError(f"{where}: must be an object of parameters")
    space: list[dict[str, Any]] = []
    for name, item in raw.items():
        if not isinstance(item, dict):
            raise LegacyConfigError(f"{where}.{name}: must be an object")
        rng = item.get("range")
        if not (isinstance(rng, list) and len(rng) == 2):
            raise LegacyConfigError(f"{where}.{name}.range: must be [low, high]")
        space.append(
            {
                "name": name,
                "flag": item.get("flag"),
                "type": item.get("type"),
                "default": item.get("default"),
                "min": rng[0],
                "max": rng[1],
                "choices": [],
                "distribution": item.get("distribution") or "uniform",
                "description": "",
                # The profiler's range is where it sampled; a value written in an
                # experiment file was passed as it was. No hard bounds beyond the type
                # until staff set them.
                "bounds": [None, None],
            }
        )
    try:
        parse_space(space)
    except SpaceError as exc:
        raise LegacyConfigError(f"{where}: {exc}") from None
    return space


def parse_models_config(data: Any, *, root: Path) -> list[WorkloadSpec]:
    """One spec per repository and model, with argv as the profiler built it:
    ``<root>/<path>/<train_script>``, the model flag and model, then the required
    arguments (each a string of words, e.g. ``-d d2a``)."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise LegacyConfigError("(file): must be an object with a 'models' object")
    specs: list[WorkloadSpec] = []
    for repository, entry in data["models"].items():
        if not isinstance(entry, dict):
            raise LegacyConfigError(f"{repository}: must be an object")
        for key in ("path", "train_script", "models"):
            if key not in entry:
                raise LegacyConfigError(f"{repository}.{key}: is required")
        path, script = entry["path"], entry["train_script"]
        if not isinstance(path, str) or not isinstance(script, str) or not script:
            raise LegacyConfigError(f"{repository}.path/train_script: must be text")
        models = entry["models"]
        if not isinstance(models, list) or not models:
            raise LegacyConfigError(f"{repository}.models: must be a non-empty list")
        workdir = os.path.normpath(root / path)
        program = os.path.normpath(os.path.join(workdir, script))
        model_flag = entry.get("model_flag")
        if model_flag is not None and not isinstance(model_flag, str):
            raise LegacyConfigError(f"{repository}.model_flag: must be text")
        required = entry.get("required_args") or {}
        if not isinstance(required, dict):
            raise LegacyConfigError(f"{repository}.required_args: must be an object")
        extra: list[str] = []
        for key, words in required.items():
            if not isinstance(words, str):
                raise LegacyConfigError(f"{repository}.required_args.{key}: must be text")
            try:
                extra += shlex.split(words)
            except ValueError as exc:
                raise LegacyConfigError(f"{repository}.required_args.{key}: {exc}") from None
        space = _space(repository, entry.get("supported_hyperparams", {}))
        patterns = (entry.get("performance_metrics") or {}).get("log_patterns") or {}
        if not isinstance(patterns, dict):
            raise LegacyConfigError(f"{repository}.performance_metrics.log_patterns: not an object")
        bad = check_patterns(patterns)
        if bad:
            name, why = next(iter(bad.items()))
            raise LegacyConfigError(f"{repository}.performance_metrics.log_patterns.{name}: {why}")
        for model in models:
            if not isinstance(model, str) or not model:
                raise LegacyConfigError(f"{repository}.models: {model!r} is not a model name")
            argv = [program]
            # Without a model flag the profiler passed no model (single-model repos).
            if model_flag:
                argv += [model_flag, model]
            specs.append(
                WorkloadSpec(
                    repository=repository,
                    model=model,
                    name=workload_name(repository, model),
                    workdir=workdir,
                    argv=argv + extra,
                    hyperparameters=space,
                    metric_patterns=dict(patterns),
                )
            )
    return specs


def load_models_config(path: Path, *, root: Path) -> list[WorkloadSpec]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LegacyConfigError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise LegacyConfigError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    return parse_models_config(data, root=root)


def legacy_workload(repository: str, model: str) -> Workload | None:
    return Workload.objects.filter(legacy_repository=repository, legacy_model=model).first()


@transaction.atomic
def import_workloads(specs: list[WorkloadSpec]) -> tuple[int, int]:
    """Create or update one workload per spec; (created, updated). Matching is by
    repository and model, so re-running updates and a placeholder left by the results
    import (inactive, no argv) becomes the real, active workload."""
    created = updated = 0
    for spec in specs:
        fields = {
            "workdir": spec.workdir,
            "argv": spec.argv,
            "hyperparameters": spec.hyperparameters,
            "metric_patterns": spec.metric_patterns,
            "source": Workload.Source.LEGACY,
            "is_active": True,
            "description": f"{spec.repository} / {spec.model}, from the earlier profiler",
        }
        workload = legacy_workload(spec.repository, spec.model)
        if workload is None:
            clash = Workload.objects.filter(name=spec.name).first()
            if clash is not None:
                raise LegacyConfigError(
                    f"{spec.repository}/{spec.model}: a workload named {spec.name!r} "
                    "already exists and is not this repository and model"
                )
            Workload.objects.create(
                name=spec.name,
                legacy_repository=spec.repository,
                legacy_model=spec.model,
                **fields,
            )
            created += 1
            continue
        fields["hyperparameters"] = _keep_staff_bounds(workload, spec.hyperparameters)
        for key, value in fields.items():
            setattr(workload, key, value)
        workload.save()
        updated += 1
    return created, updated


def _keep_staff_bounds(workload: Workload, space: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hard bounds staff set on an imported workload survive a re-import (the profiler's
    registry has none); a new sampling range still has to fit inside them."""
    set_by_staff = {
        p.get("name"): p["bounds"]
        for p in workload.hyperparameters
        if isinstance(p, dict) and p.get("bounds") not in (None, [None, None])
    }
    merged = [
        {**p, "bounds": set_by_staff[p["name"]]} if p["name"] in set_by_staff else p for p in space
    ]
    try:
        parse_space(merged)
    except SpaceError as exc:
        raise LegacyConfigError(
            f"{workload.legacy_repository}/{workload.legacy_model}: {exc} "
            "(bounds set in the admin; widen them or clear them first)"
        ) from None
    return merged
