"""Formatting with units: every number on a page carries its unit (and None is never 0)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.utils.html import format_html

from core.coverage import verdict_colour
from core.coverage import verdict_rule as _verdict_rule
from core.runlabel import label_of
from experiments import units
from experiments.models import METHOD_SHORT, Run

register = template.Library()

_METHODS: dict[str, str] = dict(Run.Method.choices)
_SHORT = METHOD_SHORT


@register.filter
def joules(value: Any) -> str:
    """Joules in J, kJ, Wh or kWh by magnitude (experiments.units), as text."""
    if value is None or value == "":
        return "—"
    return units.energy(float(value)).text


def _with_exact(scaled: units.Scaled) -> str:
    return format_html('<span class="q" title="{}">{}</span>', scaled.exact, scaled.text)


@register.filter
def energy_exact(value: Any) -> str:
    """Joules scaled (experiments.units), the exact value in joules on hover."""
    if value is None or value == "":
        return "—"
    return _with_exact(units.energy(float(value)))


@register.filter
def carbon_exact(value: Any) -> str:
    """kgCO2e as gCO2e or kgCO2e (experiments.units), the exact value on hover."""
    if value is None or value == "":
        return "—"
    return _with_exact(units.carbon(float(value)))


@register.filter
def quantity(value: Any, unit: str = "J") -> str:
    """A figure in a unit of experiments.carbon: joules scale (experiments.units: J,
    kJ, Wh, kWh) with the exact value on hover; a unit the reader chose (kWh, kgCO2e,
    a currency) stays that unit, with four significant digits."""
    if unit == "J":
        return energy_exact(value)
    if value is None or value == "":
        return "—"
    return f"{float(value):.4g} {unit}"


@register.filter
def watts(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value):.1f} W"


@register.filter
def percent(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value):.1f} %"


@register.filter
def percent_of_one(value: Any) -> str:
    """A fraction as a percentage: 0.8 -> "80 %"."""
    if value is None or value == "":
        return "—"
    return f"{100 * float(value):.0f} %"


@register.filter
def milliseconds(value: Any) -> str:
    """Seconds as milliseconds: 0.1 -> "100 ms"."""
    if value is None or value == "":
        return "—"
    return f"{1000 * float(value):.0f} ms"


@register.filter
def seconds(value: Any) -> str:
    """1.2 s, 3 min 04 s, 2 h 05 min."""
    if value is None or value == "":
        return "—"
    s = float(value.total_seconds() if isinstance(value, dt.timedelta) else value)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


@register.filter
def number(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@register.simple_tag
def energy(value: Any, method: str = "") -> str:
    """An energy figure with its method; "not measured" is said, never shown as 0 J."""
    if value is None:
        label = _METHODS.get(method, "not measured") if method else "not measured"
        return format_html('<span class="muted" title="{}">not measured</span>', label)
    return format_html(
        '{} <span class="method" title="{}">{}</span>',
        joules(value),
        _METHODS.get(method, method or "method not recorded"),
        _SHORT.get(method, method or "?"),
    )


_FIGURES = {
    "gpu": "GPU energy",
    "gpu_foreground": "GPU foreground share (estimate)",
    "cpu": "CPU energy",
    "cpu_foreground": "CPU foreground part (estimate)",
    "dram": "DRAM energy",
}


@register.filter
def figure_label(name: str) -> str:
    """A provenance entry's name for people; the share is named as an estimate."""
    return _FIGURES.get(name, name)


@register.filter
def method_short(method: str) -> str:
    """The method in a word or two (a narrow column, a terminal)."""
    return _SHORT.get(method, method or "?")


@register.filter
def method_label(method: str) -> str:
    return _METHODS.get(method, method or "not recorded")


@register.filter
def hp_inline(values: Any) -> str:
    if not values:
        return "defaults"
    return ", ".join(f"{k}={v}" for k, v in values.items())


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """mapping[key]; an int key also finds its string form (JSON objects have str keys)."""
    try:
        value = mapping.get(key)
        return mapping.get(str(key)) if value is None and not isinstance(key, str) else value
    except AttributeError:
        return None


@register.filter
def run_ref(run: Any) -> str:
    """The run's label, every part counted from 1 (core.runlabel)."""
    return label_of(run)


@register.filter
def span_s(obj: Any) -> float | None:
    """Seconds between an object's started_at and ended_at (None while it goes on)."""
    start, end = getattr(obj, "started_at", None), getattr(obj, "ended_at", None)
    if start is None or end is None:
        return None
    return float((end - start).total_seconds())


@register.filter
def verdict(value: str) -> str:
    """A coverage verdict in its colour (from core.coverage.VERDICTS); "" for none."""
    if not value:
        return ""
    return format_html(
        '<span class="verdict" style="color: {}">{}</span>', verdict_colour(value), value
    )


@register.simple_tag
def verdict_rule() -> str:
    return _verdict_rule()


@register.filter
def pvalue(value: Any) -> str:
    """p with two significant figures, "p < 0.001" below that (experiments.stats)."""
    from experiments.stats import format_p

    return format_p(None if value is None or value == "" else float(value))


@register.filter
def times(value: Any) -> str:
    """A ratio: ×1.234."""
    if value is None or value == "":
        return "—"
    return f"×{float(value):.3f}"


@register.simple_tag
def ratio_cell(result: Any) -> str:
    """A ratio with its 95 % interval (``stats.Comparison``), or why it has none."""
    if result is None or result.ratio is None:
        return "—"
    if result.ratio_low is None:
        return format_html(
            '{} <span class="muted">(too few runs for a 95 % interval: {} parallel, {} solo; '
            "{} a side needed)</span>",
            times(result.ratio),
            result.a.n,
            result.b.n,
            result.min_runs,
        )
    return format_html(
        "{} <span class='muted'>({}–{})</span>",
        times(result.ratio),
        times(result.ratio_low),
        times(result.ratio_high),
    )


def _plain(value: Any, unit: str) -> str:
    """As ``quantity``, in text: the median beside it carries the exact value."""
    return joules(value) if unit == "J" else quantity(value, unit)


@register.simple_tag
def median_cell(group: Any, unit: str = "J") -> str:
    """A group's median with its 95 % interval, or, with too few runs for one, the
    values themselves (``stats.GroupSummary``)."""
    if group is None or not group.n:
        return "—"
    if group.low is not None:
        return format_html(
            '{} <span class="muted">({} – {})</span>',
            quantity(group.median, unit),
            _plain(group.low, unit),
            _plain(group.high, unit),
        )
    shown = ", ".join(_plain(v, unit) for v in group.values)
    return format_html(
        '{} <span class="muted too-few">(too few runs for a 95 % interval: {})</span>',
        quantity(group.median, unit),
        shown,
    )


@register.filter
def as_json(value: Any) -> str:
    """JSON text (for a form's hidden value; the template escapes it)."""
    import json

    return json.dumps(value, sort_keys=True)


@register.filter
def split(value: str) -> list[str]:
    return str(value).split()
