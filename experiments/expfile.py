"""The experiment file (YAML or JSON): parsed and checked for shape here.

Whether the values fit the registered workloads (ranges, choices, names of the
parameters to mutate) is checked by ``experiments.services`` against the database;
this module needs nothing but the text, so the command line and the web form report
the same messages.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# HOST or HOST:GPU; a hostname is letters, digits, dots, dashes and underscores.
_TARGET = re.compile(r"^(any|[A-Za-z0-9_.-]+(:\d+)?)$")


class ExperimentFileError(ValueError):
    """The text is not a valid experiment file. ``errors``: one line per problem,
    each naming the key path (``foreground.hyperparameters.epochs: ...``)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as ``runs_per_conifg`` must not be ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


HyperValue = int | float | str | bool


class ForegroundSpec(_Strict):
    workload: str = Field(min_length=1, max_length=200)
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict)
    mutate: list[str] = Field(default_factory=list)

    @field_validator("mutate")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once")
        return value


class BackgroundSpec(_Strict):
    workload: str = Field(min_length=1, max_length=200)
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict)
    restart_delay: float = Field(default=2.0, ge=0, le=3600)
    startup_wait: float = Field(default=5.0, ge=0, le=3600)
    between_runs: Literal["keep", "stop"] = "keep"


class ExperimentFile(_Strict):
    name: str = Field(min_length=1, max_length=200)
    foreground: ForegroundSpec
    configurations: int = Field(default=1, ge=1, le=1000)
    runs_per_config: int = Field(default=1, ge=1, le=100)
    # The database column is a signed 64-bit integer (a larger seed would be a 500).
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    sleep_between_runs: float = Field(default=60.0, ge=0, le=24 * 3600)
    timeout: float = Field(default=3600.0, gt=0)
    max_retries: int = Field(default=0, ge=0, le=10)
    background: BackgroundSpec | None = None
    target: str = "any"
    strategy: Literal["together", "one_at_a_time"] = "together"

    @field_validator("target")
    @classmethod
    def _target_shape(cls, value: str) -> str:
        if not _TARGET.match(value):
            raise ValueError("must be any, HOST or HOST:GPU (for example gpu01:0)")
        return value

    @property
    def mode(self) -> str:
        return "parallel" if self.background is not None else "solo"

    def target_parts(self) -> tuple[str | None, int | None]:
        """(host, gpu index) of the target; (None, None) for any."""
        if self.target == "any":
            return None, None
        host, _, gpu = self.target.partition(":")
        return host, int(gpu) if gpu else None


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    if kind == "missing":
        return f"{path}: is required"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    value = error.get("input")
    if kind in {"greater_than_equal", "greater_than"}:
        return f"{path}: {value!r} is below the minimum {_limit(error)}"
    if kind in {"less_than_equal", "less_than"}:
        return f"{path}: {value!r} is above the maximum {_limit(error)}"
    if kind == "literal_error":
        return f"{path}: {value!r} is not one of {_limit(error, 'expected')}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{path}: {value!r} is not valid ({message.lower()})"
    return f"{path}: {message}"


def _limit(error: dict[str, Any], key: str = "") -> str:
    ctx = error.get("ctx") or {}
    if key:
        return str(ctx.get(key, ""))
    for name in ("ge", "gt", "le", "lt"):
        if name in ctx:
            return str(ctx[name])
    return ""


def _load(text: str, filename: str) -> Any:
    if filename.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExperimentFileError(
                [f"(file): not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
            ) from None
    try:
        # YAML 1.2 reads JSON too, so a file without a suffix may be either.
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ExperimentFileError([f"(file): not valid YAML{where}: {problem}"]) from None


def parse_experiment_text(text: str, *, filename: str = "") -> ExperimentFile:
    """Parse YAML or JSON text into an :class:`ExperimentFile`.

    Raises :class:`ExperimentFileError` listing every problem found.
    """
    raw = _load(text, filename)
    if raw is None:
        raise ExperimentFileError(["(file): is empty"])
    if not isinstance(raw, dict):
        raise ExperimentFileError(
            [f"(file): must be a mapping of keys (name, foreground, ...), not {type(raw).__name__}"]
        )
    bad_keys = [str(key) for key in raw if not isinstance(key, str)]
    if bad_keys:
        raise ExperimentFileError([f"{key}: keys must be text" for key in bad_keys])
    try:
        return ExperimentFile.model_validate(raw)
    except ValidationError as exc:
        raise ExperimentFileError([_describe(dict(err)) for err in exc.errors()]) from None


def experiment_file_from_dict(raw: dict[str, Any]) -> ExperimentFile:
    """Validate an already-parsed mapping (the web form builds one)."""
    try:
        return ExperimentFile.model_validate(raw)
    except ValidationError as exc:
        raise ExperimentFileError([_describe(dict(err)) for err in exc.errors()]) from None
