"""Hyperparameter spaces, sampling and dedup keys. Pure: no Django, no I/O.

A workload's ``hyperparameters`` (a list of dicts, see ``Workload``) is parsed into
``Param`` objects once; everything else works on those.

Two faults of the earlier profiler shape this module:

* it passed floats to the training with 6 decimals but recorded them at full
  precision, so the record did not say what ran. Here a float is formatted once
  (``format_value``: 6 significant digits, which keeps small learning rates such as
  1.5e-05 that 6 decimals would flatten) and the formatted value is both recorded and
  passed (``argv_text`` is the shortest text that parses back to exactly that float);
* integers read back from CSV as floats (``5.0``) never matched ``5`` in its
  deduplication. ``config_key`` compares canonical texts, so ``5``, ``5.0`` and ``"5"``
  are one configuration.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, cast

ParamType = Literal["int", "float", "choice"]
Distribution = Literal["uniform", "log_uniform"]
Strategy = Literal["together", "one_at_a_time"]
Value = int | float | str | bool | None

#: Floats are passed with this many significant digits (see the module docstring).
FLOAT_DIGITS = 6
#: Discrete spaces up to this many configurations are enumerated to count exactly.
ENUMERATE_LIMIT = 50_000
#: Rejection sampling tries at least this many draws before declaring a space spent.
MIN_ATTEMPTS = 2_000
ATTEMPTS_PER_CONFIG = 100

_TYPES = ("int", "float", "choice")
_DISTRIBUTIONS = ("uniform", "log_uniform")


class SpaceError(ValueError):
    """A hyperparameter space, a value or a request that cannot be used as given."""


class SpaceExhausted(SpaceError):
    """The space cannot supply the configurations asked for; says how many it can."""

    def __init__(self, *, available: int, requested: int, exact: bool, detail: str = "") -> None:
        self.available = available
        self.requested = requested
        self.exact = exact
        if exact:
            msg = (
                f"only {available} new configuration{'s' if available != 1 else ''} "
                f"left in this space (asked for {requested})"
            )
        else:
            msg = (
                f"found only {available} new configuration{'s' if available != 1 else ''} "
                f"after many random draws (asked for {requested}); widen the ranges, "
                f"mutate more parameters or ask for fewer"
            )
        if detail:
            msg = f"{msg}: {detail}"
        super().__init__(msg)


@dataclass(frozen=True)
class Param:
    name: str
    flag: str
    type: ParamType
    default: Value = None
    low: float | None = None
    high: float | None = None
    choices: tuple[Value, ...] = field(default_factory=tuple)
    distribution: Distribution = "uniform"
    description: str = ""
    #: Hard bounds: what the program accepts at all (None: no bound on that side).
    #: ``low``/``high`` are only where sampling draws from; a fixed value is checked
    #: against these.
    bound_low: float | None = None
    bound_high: float | None = None

    def domain_size(self) -> int | None:
        """How many distinct values sampling can produce; None for a continuous range."""
        if self.type == "choice":
            return len({_canonical(c) for c in self.choices})
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return int(self.high) - int(self.low) + 1
        return 1 if self.low == self.high else None

    def domain(self) -> list[Value]:
        """Every value of a discrete parameter (ints in order, choices as listed)."""
        if self.type == "choice":
            seen: dict[str, Value] = {}
            for c in self.choices:
                seen.setdefault(_canonical(c), c)
            return list(seen.values())
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1))
        if self.low == self.high:
            return [format_value(self, self.low)]
        raise SpaceError(f"{self.name}: a continuous range has no finite list of values")


# --------------------------------------------------------------------------- parsing


def _number(raw: Mapping[str, object], key: str, name: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpaceError(f"parameter {name!r}: {key!r} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise SpaceError(f"parameter {name!r}: {key!r} {_show(value)} is too large") from None
    if not math.isfinite(number):
        raise SpaceError(f"parameter {name!r}: {key!r} must be finite, got {value!r}")
    return number


def _bounds(
    item: Mapping[str, object], name: str, low: float, high: float
) -> tuple[float | None, float | None]:
    """A parameter's hard bounds. Without a ``bounds`` key they are its sampling range
    (what workloads written before the two were split meant); ``[low, high]`` with
    ``null`` for "no bound on that side" otherwise."""
    if "bounds" not in item:
        return low, high
    raw = item["bounds"]
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise SpaceError(f"parameter {name!r}: 'bounds' must be [low, high] (null: no bound)")
    lo = _number({"low": raw[0]}, "low", name)
    hi = _number({"high": raw[1]}, "high", name)
    if lo is not None and hi is not None and lo > hi:
        raise SpaceError(f"parameter {name!r}: 'bounds' low ({lo:g}) is above high ({hi:g})")
    # Sampling never draws a value the program would refuse.
    if (lo is not None and low < lo) or (hi is not None and high > hi):
        raise SpaceError(
            f"parameter {name!r}: the sampling range {_fmt(low)}..{_fmt(high)} "
            f"reaches outside 'bounds' {_bounds_text(lo, hi)}"
        )
    return lo, hi


def _bounds_text(lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return "none"
    return f"{'' if lo is None else _fmt(lo)}..{'' if hi is None else _fmt(hi)}"


def parse_space(raw: object) -> list[Param]:
    """``Workload.hyperparameters`` -> ``Param`` list; SpaceError names parameter and key."""
    if not isinstance(raw, list):
        raise SpaceError(f"hyperparameters must be a list of parameters, got {type(raw).__name__}")
    space: list[Param] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise SpaceError(f"hyperparameter #{index}: must be an object, got {item!r}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SpaceError(f"hyperparameter #{index}: 'name' must be a non-empty string")
        if name in names:
            raise SpaceError(f"parameter {name!r}: 'name' is used twice")
        names.add(name)
        flag = item.get("flag")
        if not isinstance(flag, str) or not flag.strip():
            raise SpaceError(f"parameter {name!r}: 'flag' must be a non-empty string")
        ptype = item.get("type")
        if ptype not in _TYPES:
            raise SpaceError(f"parameter {name!r}: 'type' must be one of {_TYPES}, got {ptype!r}")
        distribution = item.get("distribution") or "uniform"
        if distribution not in _DISTRIBUTIONS:
            raise SpaceError(
                f"parameter {name!r}: 'distribution' must be one of {_DISTRIBUTIONS}, "
                f"got {distribution!r}"
            )
        description = item.get("description") or ""
        if not isinstance(description, str):
            raise SpaceError(f"parameter {name!r}: 'description' must be text")
        default = item.get("default")
        low = high = bound_low = bound_high = None
        choices: tuple[Value, ...] = ()
        if ptype == "choice":
            raw_choices = item.get("choices")
            if not isinstance(raw_choices, list) or not raw_choices:
                raise SpaceError(f"parameter {name!r}: 'choices' must be a non-empty list")
            for c in raw_choices:
                if c is not None and not isinstance(c, int | float | str | bool):
                    raise SpaceError(f"parameter {name!r}: 'choices' holds {_show(c)}")
            choices = tuple(cast(list[Value], raw_choices))
        else:
            low = _number(item, "min", name)
            high = _number(item, "max", name)
            if low is None:
                raise SpaceError(f"parameter {name!r}: 'min' is required for type {ptype}")
            if high is None:
                raise SpaceError(f"parameter {name!r}: 'max' is required for type {ptype}")
            if low > high:
                raise SpaceError(f"parameter {name!r}: 'min' ({low:g}) is above 'max' ({high:g})")
            if ptype == "int":
                if not (low.is_integer() and high.is_integer()):
                    raise SpaceError(f"parameter {name!r}: 'min' and 'max' must be integers")
            if distribution == "log_uniform" and low <= 0:
                raise SpaceError(
                    f"parameter {name!r}: 'min' must be above 0 for a log_uniform distribution"
                )
            bound_low, bound_high = _bounds(item, name, low, high)
        param = Param(
            name=name,
            flag=flag.strip(),
            type=cast(ParamType, ptype),
            default=None,
            low=low,
            high=high,
            choices=choices,
            distribution=cast(Distribution, distribution),
            description=description,
            bound_low=bound_low,
            bound_high=bound_high,
        )
        if default is not None:
            # A default may sit outside the sampling range (the earlier profiler's
            # weight_decay defaults to 0.0 with a log range from 1e-5): it is the
            # program's own default, so only its type is checked.
            try:
                default = _coerce(param, default)
            except SpaceError as exc:
                raise SpaceError(f"parameter {name!r}: 'default' {exc}") from None
            if ptype == "choice" and _canonical(default) not in {_canonical(c) for c in choices}:
                raise SpaceError(f"parameter {name!r}: 'default' {_show(default)} is not a choice")
            param = replace(param, default=default)
        space.append(param)
    return space


# --------------------------------------------------------------------------- values


def _coerce(param: Param, value: object) -> Value:
    """Type-check one value; numbers formatted; raises SpaceError with a short reason."""
    if param.type == "choice":
        for choice in param.choices:
            if _canonical(choice) == _canonical(cast(Value, value)):
                return choice
        raise SpaceError(f"{_show(value)} is not one of {_show(list(param.choices))}")
    if isinstance(value, str):
        text = value.strip()
        if param.type == "int" and _is_int_text(text) and len(text) > 30:
            raise _too_large(value)
        try:
            value = int(text) if param.type == "int" and _is_int_text(text) else float(text)
        except ValueError:
            raise SpaceError(f"{_show(value)} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpaceError(f"must be a number, got {_show(value)}")
    if isinstance(value, int) and param.type != "int":
        try:
            value = float(value)
        except OverflowError:  # past 1.8e308
            raise SpaceError(f"{_show(value)} is too large for a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SpaceError(f"must be finite, got {_show(value)}")
    if param.type == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise SpaceError(f"must be a whole number, got {_show(value)}")
            value = int(value)
        if not -INT_LIMIT <= value <= INT_LIMIT:
            raise _too_large(value)
        return value
    return _format_float(param, float(value))


#: Integer parameters are 64-bit: what programs read them into, and what every
#: database, JSON reader and chart down the line can hold.
INT_LIMIT = 2**63 - 1


def _too_large(value: object) -> SpaceError:
    return SpaceError(f"{_show(value)} is too large: an integer parameter is a 64-bit integer")


def _show(value: object) -> str:
    """A short repr for a message: a value can be a 1000-character text or an integer
    of thousands of digits (whose repr Python refuses past 4300)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    try:
        text = repr(value)
    except ValueError:  # a list holding such an integer
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int_text(text: str) -> bool:
    """Decimal digits after an optional sign: text ``int()`` reads (``isdigit`` also
    takes superscripts such as "²", which it does not)."""
    body = text[1:] if text[:1] in "+-" else text
    return body.isdecimal()


def _int_text_canonical(text: str) -> str:
    """``str(int(text))`` for the text of an integer, also past Python's 4300-digit
    limit on converting one (an ASCII text is read digit by digit)."""
    body = text[1:] if text[:1] in "+-" else text
    if body.isascii():
        digits = body.lstrip("0") or "0"
        return digits if digits == "0" or text[:1] != "-" else "-" + digits
    try:
        return str(int(text))
    except ValueError:
        return json.dumps(text)


def _format_float(param: Param, value: float) -> float:
    formatted = float(f"{value:.{FLOAT_DIGITS}g}")
    # Rounding to 6 digits can step just past a bound given with more digits; then
    # the bound itself is the value (passed with all its digits, so still exact).
    if param.low is not None and formatted < param.low <= value:
        return param.low
    if param.high is not None and formatted > param.high >= value:
        return param.high
    return formatted


def format_value(param: Param, value: object) -> Value:
    """The value exactly as it is recorded and passed: ints stay ints, floats formatted once.

    Idempotent: ``format_value(p, format_value(p, v)) == format_value(p, v)``.
    """
    if value is None:
        return None
    return _coerce(param, value)


def argv_text(param: Param, value: Value) -> str:
    """The command-line text of a formatted value; ``float(text) == value`` exactly."""
    value = format_value(param, value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # repr is the shortest text that reads back as the same float.
        return repr(value)
    return str(value)


def check_values(space: Sequence[Param], values: Mapping[str, object]) -> dict[str, str]:
    """name -> what is wrong; an empty dict means every value can be used."""
    by_name = {p.name: p for p in space}
    errors: dict[str, str] = {}
    for name, raw in values.items():
        param = by_name.get(name)
        if param is None:
            errors[name] = f"unknown parameter (known: {', '.join(sorted(by_name)) or 'none'})"
            continue
        if raw is None:
            continue
        try:
            value = _coerce(param, raw)
        except SpaceError as exc:
            errors[name] = str(exc)
            continue
        if param.type == "choice" or value == param.default:
            continue
        assert isinstance(value, int | float)
        lo, hi = param.bound_low, param.bound_high
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if (lo, hi) == (param.low, param.high):
                errors[name] = f"{_show(value)} is outside {_bounds_text(lo, hi)}"
            else:
                errors[name] = (
                    f"{_show(value)} is outside {_bounds_text(lo, hi)}, "
                    "the bounds the program accepts"
                )
    return errors


def outside_sampling_range(space: Sequence[Param], values: Mapping[str, object]) -> dict[str, str]:
    """name -> note, for usable fixed values that sampling would never draw (a boundary
    test on purpose, or a slip): shown, never refused. Unusable values are left to
    ``check_values``."""
    by_name = {p.name: p for p in space}
    notes: dict[str, str] = {}
    for name, raw in values.items():
        param = by_name.get(name)
        if param is None or raw is None or param.type == "choice":
            continue
        try:
            value = _coerce(param, raw)
        except SpaceError:
            continue
        assert param.low is not None and param.high is not None
        assert isinstance(value, int | float)
        if value != param.default and not param.low <= value <= param.high:
            notes[name] = (
                f"{value!r} lies outside the sampling range {_fmt(param.low)}..{_fmt(param.high)} "
                "(a fixed value is passed as it is)"
            )
    return notes


def normalise_values(space: Sequence[Param], values: Mapping[str, object]) -> dict[str, Value]:
    """Checked and formatted values; raises SpaceError listing every problem."""
    errors = check_values(space, values)
    if errors:
        raise SpaceError("; ".join(f"{k}: {v}" for k, v in errors.items()))
    by_name = {p.name: p for p in space}
    return {name: format_value(by_name[name], raw) for name, raw in values.items()}


def defaults(space: Sequence[Param]) -> dict[str, Value]:
    return {p.name: p.default for p in space}


def full_values(space: Sequence[Param], values: Mapping[str, object]) -> dict[str, Value]:
    """Defaults overlaid with ``values``, all formatted: the configuration that runs."""
    return {**defaults(space), **normalise_values(space, values)}


def argv_for(space: Sequence[Param], values: Mapping[str, object]) -> list[str]:
    """``[flag, value, ...]`` in the space's order; defaults fill in, None is left out."""
    full = full_values(space, values)
    argv: list[str] = []
    for param in space:
        value = full[param.name]
        if value is None:
            continue
        argv += [param.flag, argv_text(param, value)]
    return argv


def _fmt(x: float) -> str:
    return str(int(x)) if x.is_integer() else f"{x:g}"


# --------------------------------------------------------------------------- dedup


def _canonical(value: Value, param: Param | None = None) -> str:
    """One text per value as the program sees it: 5, 5.0 and "5" are all ``5``."""
    if param is not None and value is not None:
        try:
            value = format_value(param, value)
        except SpaceError:
            pass  # an invalid value still gets a key; it just matches nothing valid
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip()
        if _is_int_text(text):
            return _int_text_canonical(text)
        try:
            number = float(text)
        except ValueError:
            return json.dumps(value)
        if not math.isfinite(number):
            return json.dumps(value)
        value = number
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # past 4300 digits (a long 0x... in YAML): still one text
            return f"0x{value:x}" if value >= 0 else f"-0x{-value:x}"
    # An integral float is an int read back as float (CSV): keep every digit. Without
    # the space, an integral float of a float parameter above 1e6 keys apart from its
    # 6-digit form; pass ``space`` to config_key to compare those exactly.
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    value = float(f"{value:.{FLOAT_DIGITS}g}")
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def config_key(values: Mapping[str, object], space: Sequence[Param] | None = None) -> str:
    """Canonical dedup key of a full configuration: the one definition of "the same
    configuration" (dedup against history, and the compare page's rows).

    Without ``space`` the values are compared as numbers when they look like numbers
    (floats after 6-digit formatting); with it, each value is formatted by its parameter
    first (so an integral float of a float parameter rounds exactly as it would run).
    """
    by_name = {p.name: p for p in space or ()}
    parts = {
        name: _canonical(cast(Value, value), by_name.get(name)) for name, value in values.items()
    }
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- sampling


def sample_value(param: Param, rng: random.Random) -> Value:
    """One draw from the parameter's distribution, formatted."""
    if param.type == "choice":
        return rng.choice(param.choices)
    assert param.low is not None and param.high is not None
    low, high = param.low, param.high
    if param.distribution == "log_uniform":
        if param.type == "int":
            # Sample in log space over the widened interval so the end values get
            # their share once rounded, then keep the result in range.
            draw = math.exp(rng.uniform(math.log(max(low - 0.5, low / 2)), math.log(high + 0.5)))
            return min(int(high), max(int(low), round(draw)))
        draw = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        if param.type == "int":
            return rng.randint(int(low), int(high))
        draw = rng.uniform(low, high)
    return _format_float(param, min(high, max(low, draw)))


def _validate_request(
    space: Sequence[Param], fixed: Mapping[str, object], mutate: Sequence[str], n: int
) -> tuple[dict[str, Param], dict[str, Value]]:
    by_name = {p.name: p for p in space}
    unknown = [m for m in mutate if m not in by_name]
    if unknown:
        raise SpaceError(
            f"mutate: unknown parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)} (known: {', '.join(sorted(by_name)) or 'none'})"
        )
    if len(set(mutate)) != len(mutate):
        raise SpaceError("mutate: a parameter is listed twice")
    both = [m for m in mutate if m in fixed]
    if both:
        raise SpaceError(f"mutate: {', '.join(both)} also set to a fixed value")
    if n < 1:
        raise SpaceError(f"configurations: must be at least 1, got {n}")
    base = full_values(space, fixed)
    return by_name, base


def _enumerate_together(
    space: Sequence[Param], base: Mapping[str, Value], params: Sequence[Param]
) -> list[dict[str, Value]] | None:
    total = 1
    for p in params:
        size = p.domain_size()
        if size is None:
            return None
        total *= size
        if total > ENUMERATE_LIMIT:
            return None
    configs = []
    for combo in itertools.product(*(p.domain() for p in params)):
        config = dict(base)
        config.update({p.name: v for p, v in zip(params, combo, strict=True)})
        configs.append(config)
    return configs


def _in_domain(param: Param, text: str) -> bool:
    """Whether a canonical value text (from a ``config_key``) is one sampling can give."""
    if param.type == "choice":
        return text in {_canonical(c, param) for c in param.choices}
    assert param.low is not None and param.high is not None
    if param.type == "int":
        if not _is_int_text(text) or len(text) > 30:  # far past any int range
            return False
        return param.low <= int(text) <= param.high
    return param.low == param.high and text == _canonical(param.low, param)


def _count_discrete(
    space: Sequence[Param],
    base: Mapping[str, Value],
    params: Sequence[Param],
    strategy: Strategy,
    seen: Iterable[str],
) -> int:
    """Exact count without listing the space: its size minus the excluded keys (and
    the baseline) that fall inside it. Every parameter in ``params`` is discrete."""
    base_parts: dict[str, str] = json.loads(config_key(base, space))
    names = set(base_parts)
    excluded: list[dict[str, str]] = []
    for key in set(seen):
        try:
            parts = json.loads(key)
        except ValueError:
            continue
        if isinstance(parts, dict) and set(parts) == names:
            excluded.append(parts)

    def fixed_match(parts: Mapping[str, str], free: set[str]) -> bool:
        return all(parts[n] == base_parts[n] for n in names - free)

    if strategy == "together":
        free = {p.name for p in params}
        total = math.prod(p.domain_size() or 0 for p in params)
        hits = [
            parts
            for parts in excluded
            if fixed_match(parts, free) and all(_in_domain(p, parts[p.name]) for p in params)
        ]
        base_hit = all(_in_domain(p, base_parts[p.name]) for p in params)
        return total - len(hits) - (1 if base_hit and base_parts not in hits else 0)
    total = 0
    for p in params:
        # Each parameter's line of configurations without the baseline; the lines are
        # disjoint, so their sizes add up.
        line = (p.domain_size() or 0) - (1 if _in_domain(p, base_parts[p.name]) else 0)
        line_hits = sum(
            1
            for parts in excluded
            if fixed_match(parts, {p.name})
            and parts[p.name] != base_parts[p.name]
            and _in_domain(p, parts[p.name])
        )
        total += line - line_hits
    return total


def count_available(
    space: Sequence[Param],
    *,
    fixed: Mapping[str, object],
    mutate: Sequence[str],
    strategy: Strategy,
    seen: Iterable[str] = (),
) -> int | None:
    """How many new configurations the space holds; None when a continuous range makes
    it practically unlimited (the sampler may still run dry; it then says so)."""
    by_name, base = _validate_request(space, fixed, mutate, 1)
    if not mutate:
        return 1
    params = [by_name[m] for m in mutate]
    if any(p.domain_size() is None for p in params):
        return None
    return _count_discrete(space, base, params, strategy, seen)


def plan_configurations(
    space: Sequence[Param],
    *,
    fixed: Mapping[str, object],
    mutate: Sequence[str],
    n: int,
    seed: int | None,
    strategy: Strategy,
    seen: Iterable[str] = (),
) -> list[dict[str, Value]]:
    """The configurations an experiment runs, each a full dict of formatted values.

    * ``mutate == []``: the one baseline configuration (defaults + fixed); a baseline
      is meant to be repeated, so history does not exclude it.
    * ``together``: every listed parameter is re-sampled for each configuration.
    * ``one_at_a_time``: each configuration changes one listed parameter, the others
      stay at defaults (+ fixed); the parameters take turns, round-robin, and one whose
      values run out leaves its turns to the others. ``n`` counts configurations in all.

    No configuration repeats within the plan or matches ``seen`` (``config_key``s of
    earlier runs); the baseline itself is never offered as a mutation. Raises
    ``SpaceExhausted`` before anything runs when fewer than ``n`` are new.
    """
    if strategy not in ("together", "one_at_a_time"):
        raise SpaceError(f"strategy: must be 'together' or 'one_at_a_time', got {strategy!r}")
    by_name, base = _validate_request(space, fixed, mutate, n)
    if not mutate:
        return [base]
    rng = random.Random(seed)
    excluded = set(seen) | {config_key(base, space)}
    params = [by_name[m] for m in mutate]
    if strategy == "together":
        return _plan_together(space, base, params, n, rng, excluded)
    return _plan_one_at_a_time(space, base, params, n, rng, excluded)


def _attempt_budget(n: int) -> int:
    return max(MIN_ATTEMPTS, ATTEMPTS_PER_CONFIG * n)


def _plan_together(
    space: Sequence[Param],
    base: dict[str, Value],
    params: Sequence[Param],
    n: int,
    rng: random.Random,
    excluded: set[str],
) -> list[dict[str, Value]]:
    enumerated = _enumerate_together(space, base, params)
    if enumerated is None and all(p.domain_size() is not None for p in params):
        available = _count_discrete(space, base, params, "together", excluded)
        if available < n:
            raise SpaceExhausted(available=available, requested=n, exact=True)
    if enumerated is not None:
        remaining = {config_key(c, space): c for c in enumerated}
        for key in excluded:
            remaining.pop(key, None)
        if len(remaining) < n:
            raise SpaceExhausted(available=len(remaining), requested=n, exact=True)
    plan: list[dict[str, Value]] = []
    for _ in range(_attempt_budget(n)):
        if len(plan) == n:
            return plan
        config = dict(base)
        config.update({p.name: sample_value(p, rng) for p in params})
        key = config_key(config, space)
        if key in excluded:
            continue
        excluded.add(key)
        plan.append(config)
    if len(plan) == n:
        return plan
    if enumerated is None:
        raise SpaceExhausted(available=len(plan), requested=n, exact=False)
    # A nearly spent discrete space: random draws keep hitting used values, so finish
    # from the values that are left (in a seeded order, so still reproducible).
    left = [c for c in enumerated if config_key(c, space) not in excluded]
    plan += rng.sample(left, n - len(plan))
    return plan


def _plan_one_at_a_time(
    space: Sequence[Param],
    base: dict[str, Value],
    params: Sequence[Param],
    n: int,
    rng: random.Random,
    excluded: set[str],
) -> list[dict[str, Value]]:
    bounded = all(p.domain_size() is not None for p in params)
    if bounded:
        available = _count_discrete(space, base, params, "one_at_a_time", excluded)
        if available < n:
            raise SpaceExhausted(available=available, requested=n, exact=True)
    plan: list[dict[str, Value]] = []
    active = list(params)
    misses = dict.fromkeys((p.name for p in params), 0)
    turn = 0
    budget = _attempt_budget(n)
    while len(plan) < n and active:
        p = active[turn % len(active)]
        config = {**base, p.name: sample_value(p, rng)}
        key = config_key(config, space)
        if key not in excluded:
            excluded.add(key)
            plan.append(config)
            turn += 1
            continue
        misses[p.name] += 1
        if misses[p.name] >= budget:
            # Random draws keep hitting used values: list what this parameter has left
            # (when it can be listed) and take one of those.
            size = p.domain_size()
            spare: list[dict[str, Value]] = []
            if size is not None and size <= ENUMERATE_LIMIT:
                line = ({**base, p.name: v} for v in p.domain())
                spare = [c for c in line if config_key(c, space) not in excluded]
            if spare:
                config = rng.choice(spare)
                excluded.add(config_key(config, space))
                plan.append(config)
                misses[p.name] = 0
                turn += 1
            else:
                active.remove(p)  # spent: its turns go to the others
    if len(plan) < n:
        raise SpaceExhausted(available=len(plan), requested=n, exact=bounded)
    return plan
