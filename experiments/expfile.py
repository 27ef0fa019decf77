"""The experiment file (YAML or JSON): parsed and checked for shape here.

Whether the values fit the registered workloads (ranges, choices, names of the
parameters to mutate) is checked by ``experiments.services`` against the database;
this module needs nothing but the text, so the command line and the web form report
the same messages.
"""

from __future__ import annotations

import json
import re
import reprlib
import uuid
from collections import Counter
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from experiments import names
from experiments.names import has_control_characters  # noqa: F401 (the forms import it here)
from experiments.yaml_core import CoreLoader

# HOST or HOST:GPU; a hostname is letters, digits, dots, dashes and underscores. A GPU
# index has at most four digits (a 5000-digit one would not even convert to an int).
# ``slurm`` and ``slurm:PARTITION`` send the experiment to a Slurm cluster instead.
# One pattern for the file and the API's schema (ASCII digits only: ``\d`` would take
# any script's digits).
TARGET_PATTERN = (
    r"^(any|slurm(:[A-Za-z0-9_.-]{1,64})?|[A-Za-z0-9][A-Za-z0-9._-]{0,252}(:[0-9]{1,4})?)$"
)
_TARGET = re.compile(TARGET_PATTERN)
_SLURM_TARGET = re.compile(r"^slurm(:(?P<partition>[A-Za-z0-9_.-]{1,64}))?$")
#: A Slurm account, QoS or partition name: what Slurm itself accepts, no spaces.
SlurmName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]

#: The largest experiment file read anywhere (upload, pasted text, API, command line):
#: a real one is a few hundred bytes; this bounds the parser's time and memory.
MAX_TEXT_BYTES = 256 * 1024
#: Nesting deeper than this is refused before it reaches a recursive parser.
MAX_DEPTH = 20
#: At most this many characters of a submitted value are echoed in an error message.
ECHO_CHARS = 60
#: More parameters to mutate than any workload declares.
MAX_MUTATE = 100

_echo = reprlib.Repr()
_echo.maxstring = ECHO_CHARS
_echo.maxother = ECHO_CHARS
_echo.maxlong = 40
_echo.maxlevel = 2
_echo.maxlist = _echo.maxdict = _echo.maxtuple = _echo.maxset = 4


def echo(value: Any) -> str:
    """A short repr of a submitted value for an error message: never megabytes."""
    try:
        text = _echo.repr(value)
    except (ValueError, RecursionError):  # an int with more digits than str() allows
        text = f"<{type(value).__name__}>"
    if len(text) > ECHO_CHARS + 10:
        text = text[:ECHO_CHARS] + "..."
    return text


class ExperimentFileError(ValueError):
    """The text is not a valid experiment file. ``errors``: one line per problem,
    each naming the key path (``foreground.hyperparameters.epochs: ...``)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as ``runs_per_conifg`` must not be ignored.
    # inf and nan are no timeouts, delays or hyperparameter values.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


HyperValue = int | float | Annotated[str, StringConstraints(max_length=1000)] | bool
ParamName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Params = dict[ParamName, HyperValue]
#: More hyperparameters than any workload declares.
MAX_PARAMS = 100


class ForegroundSpec(_Strict):
    workload: str = Field(min_length=1, max_length=200)
    hyperparameters: dict[ParamName, HyperValue] = Field(
        default_factory=dict, max_length=MAX_PARAMS
    )
    mutate: list[ParamName] = Field(default_factory=list, max_length=MAX_MUTATE)

    @field_validator("mutate")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted(name for name, n in Counter(value).items() if n > 1)
        if repeated:
            shown = ", ".join(_short(name) for name in repeated[:5])
            more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
            raise ValueError(f"lists {shown}{more} more than once")
        return value


class BackgroundSpec(_Strict):
    workload: str = Field(min_length=1, max_length=200)
    hyperparameters: dict[ParamName, HyperValue] = Field(
        default_factory=dict, max_length=MAX_PARAMS
    )
    restart_delay: float = Field(default=2.0, ge=0, le=3600)
    startup_wait: float = Field(default=5.0, ge=0, le=3600)
    between_runs: Literal["keep", "stop"] = "keep"


class SlurmSpec(_Strict):
    """The ``slurm:`` block: what the Slurm job asks for. Everything is optional; the
    time limit is derived from the experiment's expected duration when not given
    (``experiments.slurm.options``). ``options`` are extra ``sbatch`` options, each
    ``--name`` or ``--name=value``, allowed only where staff listed the name
    (``WATTLAB_SLURM_ALLOWED_OPTIONS``, checked at submit)."""

    account: SlurmName | None = None
    qos: SlurmName | None = None
    gpus: int = Field(default=0, ge=0, le=64)
    cpus: int | None = Field(default=None, ge=1, le=4096)
    #: sbatch's --mem: a number of MiB, or with a unit (K, M, G, T).
    memory: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,8}[KMGT]?$")] | None = None
    #: Minutes (Slurm's resolution); at most a year.
    time_limit: int | None = Field(default=None, ge=1, le=366 * 24 * 60)
    options: list[
        Annotated[str, StringConstraints(pattern=r"^--[a-z][a-z0-9-]{0,40}(=[^\s,]{1,200})?$")]
    ] = Field(default_factory=list, max_length=20)


class ExperimentFile(_Strict):
    name: str = Field(min_length=1, max_length=200)
    foreground: ForegroundSpec
    configurations: int = Field(default=1, ge=1, le=1000)
    runs_per_config: int = Field(default=1, ge=1, le=100)
    # The database column is a signed 64-bit integer (a larger seed would be a 500).
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    sleep_between_runs: float = Field(default=60.0, ge=0, le=24 * 3600)
    # Below a second a run cannot even start its program; the runs would only churn.
    timeout: float = Field(default=3600.0, ge=1)
    max_retries: int = Field(default=0, ge=0, le=10)
    background: BackgroundSpec | None = None
    target: str = "any"
    strategy: Literal["together", "one_at_a_time"] = "together"
    slurm: SlurmSpec | None = None
    #: Draw only configurations this workload has not run (or queued) in this mode. Off
    #: by default: the same file then gives the same configurations whatever the
    #: history holds (a solo file and a parallel file with the same draw pair).
    skip_configurations_run: bool = False
    #: Run the configurations of another experiment (its code) exactly, instead of
    #: drawing them: parallel against solo by design.
    configurations_from: str | None = Field(default=None, max_length=36)

    @field_validator("configurations_from")
    @classmethod
    def _code_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be an experiment's code (a UUID)") from None

    @field_validator("target")
    @classmethod
    def _target_shape(cls, value: str) -> str:
        if not _TARGET.fullmatch(value):
            raise ValueError(
                "must be any, HOST or HOST:GPU (for example gpu01:0), slurm or slurm:PARTITION"
            )
        return value

    @field_validator("slurm")
    @classmethod
    def _slurm_block_needs_slurm_target(
        cls, value: SlurmSpec | None, info: ValidationInfo
    ) -> SlurmSpec | None:
        # ``target`` is declared first, so it is in info.data when it was valid.
        target = info.data.get("target", "any")
        if value is not None and not _SLURM_TARGET.match(target):
            raise ValueError(f"only for target slurm or slurm:PARTITION (target is {target})")
        return value

    @property
    def mode(self) -> str:
        return "parallel" if self.background is not None else "solo"

    @property
    def is_slurm(self) -> bool:
        return _SLURM_TARGET.match(self.target) is not None

    @property
    def slurm_partition(self) -> str:
        """The partition a Slurm target names ("" = the cluster's default)."""
        match = _SLURM_TARGET.match(self.target)
        return (match.group("partition") or "") if match else ""

    def target_parts(self) -> tuple[str | None, int | None]:
        """(host, gpu index) of the target; (None, None) for any and for Slurm."""
        if self.target == "any" or self.is_slurm:
            return None, None
        host, _, gpu = self.target.partition(":")
        return host, int(gpu) if gpu else None


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(echo(p) if not isinstance(p, str) else _short(p) for p in error["loc"])
    path = path or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    if kind == "missing":
        return f"{path}: is required"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    value = echo(error.get("input"))
    if kind in {"greater_than_equal", "greater_than"}:
        return f"{path}: {value} is below the minimum {_limit(error)}"
    if kind in {"less_than_equal", "less_than"}:
        return f"{path}: {value} is above the maximum {_limit(error)}"
    if kind == "literal_error":
        return f"{path}: {value} is not one of {_limit(error, 'expected')}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{path}: {value} is not valid ({message.lower()})"
    if kind == "finite_number":
        return f"{path}: {value} is not a finite number"
    if kind == "string_pattern_mismatch":
        field = next((p for p in reversed(error["loc"]) if isinstance(p, str)), "")
        return f"{path}: {value} is not valid ({_PATTERN_HINTS.get(field, message.lower())})"
    return f"{path}: {message}"


#: What a value with a pattern must look like, by field name.
_PATTERN_HINTS = {
    "account": "a Slurm account: letters, digits, '.', '_' and '-'",
    "qos": "a Slurm QoS: letters, digits, '.', '_' and '-'",
    "memory": "MiB, or a number with a unit K, M, G or T, for example 16G",
    "options": "an sbatch option --name or --name=value, without spaces or commas",
}


def _limit(error: dict[str, Any], key: str = "") -> str:
    ctx = error.get("ctx") or {}
    if key:
        return str(ctx.get(key, ""))
    for name in ("ge", "gt", "le", "lt"):
        if name in ctx:
            return str(ctx[name])
    return ""


def _short(text: str) -> str:
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "..."


#: YAML 1.2's core schema on libyaml (experiments/yaml_core.py says why not PyYAML's).
_YAML_LOADER: Any = CoreLoader
#: More nodes than any experiment file has, far fewer than exhaust memory.
MAX_NODES = 20_000


def _check_yaml_events(text: str) -> None:
    """Refuse aliases, tags, deep nesting and too many nodes before anything is built.

    An alias repeats a node without repeating its text, so nine levels of them turn
    a few hundred bytes into gigabytes (the "billion laughs"); an experiment file has
    no use for them, nor for tags (``!!binary`` carried NUL and ESC into names). The
    event stream is flat, so this pass itself cannot recurse.
    """
    loader = _YAML_LOADER(text)
    try:
        depth = nodes = 0
        while loader.check_event():
            event = loader.get_event()
            problem = ""
            if isinstance(event, yaml.AliasEvent):
                problem = "aliases (*name) are not allowed in experiment files"
            elif isinstance(event, yaml.NodeEvent) and (tag := getattr(event, "tag", None)):
                tag = str(tag).replace("tag:yaml.org,2002:", "!!")
                problem = f"tags ({_short(tag)}) are not allowed in experiment files"
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    problem = f"nested deeper than {MAX_DEPTH} levels"
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    problem = f"more than {MAX_NODES} values"
            if problem:
                raise yaml.composer.ComposerError(None, None, problem, event.start_mark)
    finally:
        loader.dispose()


def _load(text: str, filename: str) -> Any:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise ExperimentFileError(
            [f"(file): {size} bytes, larger than the {MAX_TEXT_BYTES // 1024} KiB allowed"]
        )
    try:
        if filename.endswith(".json"):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ExperimentFileError(
                    [f"(file): not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
                ) from None
        try:
            # YAML 1.2 reads JSON too, so a file without a suffix may be either.
            _check_yaml_events(text)
            return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - core schema only
        except yaml.YAMLError as exc:
            where = ""
            mark = getattr(exc, "problem_mark", None)
            if mark is not None:
                where = f" at line {mark.line + 1}, column {mark.column + 1}"
            problem = getattr(exc, "problem", None) or str(exc)
            raise ExperimentFileError(
                [f"(file): not valid YAML{where}: {_short(str(problem))}"]
            ) from None
    except RecursionError:
        raise ExperimentFileError([f"(file): nested deeper than {MAX_DEPTH} levels"]) from None
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, ExperimentFileError):
            raise
        # Python refuses to convert integers of more than 4300 digits.
        raise ExperimentFileError([f"(file): a value cannot be read: {_short(str(exc))}"]) from None


def decode_experiment_bytes(data: bytes) -> str:
    """The text of an uploaded or named file, or a clear error about its encoding."""
    if len(data) > MAX_TEXT_BYTES:
        raise ExperimentFileError(
            [f"(file): larger than the {MAX_TEXT_BYTES // 1024} KiB an experiment file may be"]
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ExperimentFileError(["(file): is UTF-16 text, not UTF-8: save it as UTF-8"])
    if b"\0" in data:
        raise ExperimentFileError(["(file): is a binary file, not YAML or JSON text"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExperimentFileError(
            [f"(file): is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"]
        ) from None


def _bad_characters(raw: Any) -> list[str]:
    """Key paths whose key or text holds a character ``experiments.names`` refuses
    (control, lone surrogate, invisible formatting), and nesting past
    :data:`MAX_DEPTH`. Iterative, so no input can exhaust the stack."""
    problems: list[str] = []
    stack: list[tuple[str, Any, int]] = [("", raw, 0)]
    while stack and len(problems) < 5:
        path, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            problems.append(f"{path or '(file)'}: nested deeper than {MAX_DEPTH} levels")
            continue
        if isinstance(value, str):
            if message := names.problem(value):
                problems.append(f"{path or '(file)'}: {echo(value)} {message}")
        elif isinstance(value, dict):
            for key, item in value.items():
                name = _short(key) if isinstance(key, str) else echo(key)
                child = f"{path}.{name}" if path else name
                if isinstance(key, str) and (message := names.problem(key)):
                    # echo: the key itself may not even be printable (a lone surrogate)
                    shown = f"{path}.{echo(key)}" if path else echo(key)
                    problems.append(f"{shown}: the key {message}")
                    continue
                stack.append((child, item, depth + 1))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                stack.append((f"{path}.{i}" if path else str(i), item, depth + 1))
    return problems


def _validate(raw: Any) -> ExperimentFile:
    if raw is None:
        raise ExperimentFileError(["(file): is empty"])
    if not isinstance(raw, dict):
        raise ExperimentFileError(
            [f"(file): must be a mapping of keys (name, foreground, ...), not {type(raw).__name__}"]
        )
    bad_keys = [echo(key) for key in raw if not isinstance(key, str)]
    if bad_keys:
        raise ExperimentFileError([f"{key}: keys must be text" for key in bad_keys[:5]])
    problems = _bad_characters(raw)
    if problems:
        raise ExperimentFileError(problems)
    try:
        return ExperimentFile.model_validate(raw)
    except ValidationError as exc:
        raise ExperimentFileError([_describe(dict(err)) for err in exc.errors()[:20]]) from None


def parse_experiment_text(text: str, *, filename: str = "") -> ExperimentFile:
    """Parse YAML or JSON text into an :class:`ExperimentFile`.

    Raises :class:`ExperimentFileError` listing every problem found.
    """
    return _validate(_load(text, filename))


def experiment_file_from_dict(raw: dict[str, Any]) -> ExperimentFile:
    """Validate an already-parsed mapping (the web form and the API build one)."""
    return _validate(raw)
