"""JSON columns that read back in their shape, whatever was stored.

A JSON column holds whatever was saved: staff once saved a run's ``hyperparameters``
as ``[1, 2]`` or ``"text"``, its ``factors`` as ``"x"``, ``provenance`` as ``[1]``,
``metrics`` as a list, and an experiment's ``fg_hyperparameters`` as a list, and the
experiment page, the report, the run page, the exports and the API answered 500 to
everyone. The admin no longer edits these columns (``experiments.admin``), and this
field is the second half: each column names its shape, a value that does not fit is
cut down to what fits when it is read (a warning is logged: the row needs a look), and
a model form or ``full_clean`` refuses one that does not fit, naming the shape.

The shapes are top-level plus what the pages index into: a mapping of names to plain
values, a list of texts, a mapping of metric names to numbers. Anything deeper stays as
it was written (by the services, the only writers).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.fields.json import KeyTransform

log = logging.getLogger(__name__)

_SCALARS = (str, int, float, bool, type(None))


def _mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _values(value: Any) -> dict[str, Any]:
    """Hyperparameters: name -> a plain value (a nested one becomes its JSON text)."""
    return {
        k: v if isinstance(v, _SCALARS) else json.dumps(v, sort_keys=True)
        for k, v in _mapping(value).items()
    }


def _numbers(value: Any) -> dict[str, Any]:
    """Metrics: name -> number; anything else is dropped."""
    return {
        k: v
        for k, v in _mapping(value).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _texts(value: Any) -> list[str]:
    """Flags, parameter names: a list of texts."""
    return [item if isinstance(item, str) else json.dumps(item) for item in _list(value)]


def _mappings(value: Any) -> list[dict[str, Any]]:
    """Events, GPUs, plan entries: a list of mappings; anything else is dropped."""
    return [item for item in _list(value) if isinstance(item, dict)]


#: provenance keys the pages index into, and what each must be.
_PROVENANCE: dict[str, Callable[[Any], bool]] = {
    **dict.fromkeys(
        ("gpu", "gpu_foreground", "cpu", "dram", "coverage", "legacy"),
        lambda v: isinstance(v, dict),
    ),
    "flags": lambda v: isinstance(v, list) and all(isinstance(f, str) for f in v),
    "gpu_uuid": lambda v: isinstance(v, str),
}


def _provenance(value: Any) -> dict[str, Any]:
    return {k: v for k, v in _mapping(value).items() if k not in _PROVENANCE or _PROVENANCE[k](v)}


def _factors(value: Any) -> dict[str, Any]:
    """Carbon and cost factors (``experiments.carbon.Factors``): numbers and texts."""
    numbers = ("carbon_intensity_g_per_kwh", "pue", "price_per_kwh")
    return {
        k: v
        for k, v in _mapping(value).items()
        if (k in numbers and (v is None or isinstance(v, int | float)) and not isinstance(v, bool))
        or (k not in numbers and isinstance(v, _SCALARS))
    }


#: shape name -> (normaliser, what the shape is, for a message).
SHAPES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "mapping": (_mapping, "a mapping (JSON object)"),
    "list": (_list, "a list"),
    "values": (_values, "a mapping of names to plain values (text, numbers, true/false, null)"),
    "numbers": (_numbers, "a mapping of names to numbers"),
    "texts": (_texts, "a list of texts"),
    "mappings": (_mappings, "a list of mappings (JSON objects)"),
    "provenance": (_provenance, "a mapping of figures (gpu, cpu, ...) to mappings"),
    "factors": (_factors, "a mapping of carbon and cost factors to numbers and texts"),
}


class ShapedJSONField(models.JSONField):
    """A JSONField whose value has the shape named by ``shape`` (a key of SHAPES)."""

    def __init__(self, *args: Any, shape: str = "mapping", **kwargs: Any) -> None:
        if shape not in SHAPES:
            raise ValueError(f"unknown JSON shape {shape!r} (known: {', '.join(SHAPES)})")
        self.shape = shape
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["shape"] = self.shape
        return name, path, args, kwargs

    def normalise(self, value: Any) -> Any:
        return SHAPES[self.shape][0](value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        value = super().from_db_value(value, expression, connection)
        # A key of the column (values("factors__pue")) is not the column itself.
        if value is None or isinstance(expression, KeyTransform):
            return value
        shaped = self.normalise(value)
        if shaped != value:
            log.warning(
                "%s.%s: a stored value is not %s; read as %s",
                self.model.__name__,
                self.name,
                SHAPES[self.shape][1],
                str(shaped)[:200],
            )
        return shaped

    def validate(self, value: Any, model_instance: Any) -> None:
        super().validate(value, model_instance)
        if value is not None and self.normalise(value) != value:
            raise ValidationError(f"Must be {SHAPES[self.shape][1]}.", code="json_shape")


def read_as(model: type[models.Model], field: str, value: Any) -> Any:
    """``value`` (decoded JSON) as ``model.field`` reads it back: for a column read by
    raw SQL, which no field's ``from_db_value`` sees."""
    column = model._meta.get_field(field)
    assert isinstance(column, ShapedJSONField)
    return column.normalise(value)
