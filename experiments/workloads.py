"""Workload files (YAML): what ``manage.py load_workloads DIR`` registers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from experiments.expfile import _describe
from experiments.models import Workload

#: argv items equal to this are replaced by the worker's own interpreter at run time,
#: so one workload file serves hosts whose virtual environments live elsewhere.
PYTHON_PLACEHOLDER = "{python}"


class WorkloadFileError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class WorkloadFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[-a-zA-Z0-9_]+$")
    description: str = ""
    workdir: str = "."
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    hyperparameters: list[dict[str, Any]] = Field(default_factory=list)
    metrics: dict[str, str] = Field(default_factory=dict)
    success_pattern: str = ""


def parse_workload_file(path: Path) -> WorkloadFile:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise WorkloadFileError([f"(file): cannot read it: {exc}"]) from None
    return validate_workload(raw)


def validate_workload(raw: Any) -> WorkloadFile:
    """Check a workload's description, wherever it comes from: a workload file
    (``load_workloads``) or the admin's form, so both refuse the same mistakes."""
    if not isinstance(raw, dict):
        raise WorkloadFileError(["(file): must be a mapping of keys (name, argv, ...)"])
    try:
        spec = WorkloadFile.model_validate(raw)
    except ValidationError as exc:
        raise WorkloadFileError([_describe(dict(e)) for e in exc.errors()]) from None
    errors: list[str] = []
    from experiments import mutation

    try:
        mutation.parse_space(spec.hyperparameters)
    except mutation.SpaceError as exc:
        errors.append(f"hyperparameters: {exc}")
    patterns = dict(spec.metrics)
    if spec.success_pattern:
        patterns["(success_pattern)"] = spec.success_pattern
    for name, pattern in patterns.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            key = "success_pattern" if name == "(success_pattern)" else f"metrics.{name}"
            errors.append(f"{key}: not a valid regular expression: {exc}")
    if errors:
        raise WorkloadFileError(errors)
    return spec


def workload_load(*, path: Path) -> tuple[Workload, bool]:
    """Create or update the workload a file describes; (workload, created)."""
    spec = parse_workload_file(path)
    workdir = (path.parent / spec.workdir).resolve()
    if not workdir.is_dir():
        raise WorkloadFileError([f"workdir: {workdir} is not a directory"])
    return Workload.objects.update_or_create(
        name=spec.name,
        defaults={
            "description": spec.description.strip(),
            "workdir": str(workdir),
            "argv": list(spec.argv),
            "env": dict(spec.env),
            "hyperparameters": list(spec.hyperparameters),
            "metric_patterns": dict(spec.metrics),
            "success_pattern": spec.success_pattern,
            "source": Workload.Source.FILE,
            "is_active": True,
        },
    )


def workloads_load_dir(*, directory: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Load every *.yaml / *.yml; (names loaded, {file: errors})."""
    loaded: list[str] = []
    failed: dict[str, list[str]] = {}
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for path in files:
        try:
            workload, _created = workload_load(path=path)
        except WorkloadFileError as exc:
            failed[str(path)] = exc.errors
            continue
        loaded.append(workload.name)
    return loaded, failed
