"""Server-rendered SVG charts: readable without JavaScript, no CDN, no build step.

Every chart names its axes with units and carries a <title> per mark so hovering a
point shows its exact value. Labels are escaped; the output is safe to mark_safe.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

from django.utils.safestring import SafeString, mark_safe

from core.coverage import verdict_colour

PALETTE = ["#2563eb", "#e11d48", "#059669", "#d97706", "#7c3aed", "#0891b2"]
#: The same mode has the same colour on every chart.
GROUP_COLORS = {
    "solo": "#2563eb",
    "parallel": "#e11d48",
    "solo (imported)": "#93c5fd",
    "parallel (imported)": "#fda4af",
}


def _colors(groups: list[str]) -> dict[str, str]:
    spare = iter(c for c in PALETTE if c not in GROUP_COLORS.values())
    return {g: GROUP_COLORS.get(g) or next(spare, "#475569") for g in groups}


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 10000:
        return f"{value:,.0f}"
    if mag >= 100:
        return f"{value:.0f}"
    if mag >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: the first at or below lo, the last at or
    above hi (an axis that ends on its last tick then holds every value)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    exp = math.floor(math.log10(raw))
    frac = raw / 10**exp
    step = (1 if frac < 1.5 else 2 if frac < 3 else 5 if frac < 7 else 10) * 10**exp
    first = math.floor(lo / step)
    ticks: list[float] = []
    for i in range(21):
        value = (first + i) * step
        ticks.append(round(value, 12))
        if value >= hi - step * 1e-9:
            break
    return ticks


#: Room between the data and the plot's edges, as a share of the data's span: no point,
#: whisker or band is drawn on (or past) an axis.
MARGIN = 0.06


def padded_ticks(lo: float, hi: float, *, floor: float | None = None) -> list[float]:
    """Ticks whose ends hold [lo, hi] with MARGIN on each side. ``floor``: a bound the
    values cannot go below (energy, power: 0); the axis starts there rather than at a
    negative tick when the margin would cross it."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    span = hi - lo
    if span <= 0:
        span = abs(hi) * 0.2 or 1.0  # one value: room on both sides of it
    a, b = lo - span * MARGIN, hi + span * MARGIN
    if floor is not None and lo >= floor > a:
        a = floor
    return nice_ticks(_clamp(a), _clamp(b))


def _ok(y: float | None) -> bool:
    return y is not None and math.isfinite(y)


#: Values beyond this are drawn at it: near the float maximum the span between two
#: values (and every tick step) overflows to infinity. No measured energy, power or
#: metric comes near it; only a corrupt or hostile value does.
CLAMP = 1e300


def _clamp(v: float) -> float:
    return max(-CLAMP, min(CLAMP, v)) if math.isfinite(v) else v


def _clamp_opt(v: float | None) -> float | None:
    return None if v is None else _clamp(v)


@dataclass
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    color: str = ""


@dataclass
class Marker:
    """A vertical line at x (e.g. a background run starting)."""

    x: float
    label: str
    color: str = "#64748b"
    dashed: bool = True


@dataclass
class _Frame:
    width: int
    height: int
    left: int = 58
    right: int = 16
    top: int = 14
    bottom: int = 40
    x0: float = 0.0
    x1: float = 1.0
    y0: float = 0.0
    y1: float = 1.0
    parts: list[str] = field(default_factory=list)

    def sx(self, x: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (x - self.x0) / span * (self.width - self.left - self.right)

    def sy(self, y: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return (
            self.height
            - self.bottom
            - (y - self.y0) / span * (self.height - self.top - self.bottom)
        )


def _tick_fmt(ticks: list[float]) -> Callable[[float], str]:
    """Enough decimals to tell neighbouring ticks apart (0.94, 0.95, not 0.94, 0.94)."""
    if len(ticks) < 2:
        return _fmt
    step = abs(ticks[1] - ticks[0]) or 1.0
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0

    def fmt(v: float) -> str:
        return f"{v:,.{decimals}f}" if abs(v) < 1e6 else f"{v:.3g}"

    return fmt


#: Roughly the width of one character of the charts' 10.5-11.5 px text, in the
#: viewBox's units: enough to keep labels inside the picture and legend items apart.
CHAR_W = 6.6
LEGEND_ROW = 18


def _text_w(text: str) -> float:
    return len(text) * CHAR_W


@dataclass
class _Key:
    """One legend item: a box (bars, lines), a dot (points) or a dashed line."""

    label: str
    color: str
    kind: str = "box"


def _fit_sides(f: _Frame, x_texts: list[str], y_texts: list[str]) -> None:
    """Widen the left side for the longest y tick label (and the rotated axis label
    beside it) and the right side for half the last x tick label, so none is cut."""
    widest = max((_text_w(t) for t in y_texts), default=0.0)
    f.left = max(f.left, math.ceil(widest + 30))
    if x_texts:
        f.right = max(f.right, math.ceil(_text_w(x_texts[-1]) / 2 + 6))


def _reserve_legend(f: _Frame, keys: Sequence[_Key]) -> list[list[tuple[float, _Key]]]:
    """Lay the legend out in rows above the plot (wrapping where a row is full) and
    move the plot's top below them: a legend never covers a point."""
    if not keys:
        return []
    rows: list[list[tuple[float, _Key]]] = [[]]
    x = float(f.left)
    for key in keys:
        w = (22 if key.kind == "dash" else 14) + _text_w(key.label) + 18
        if rows[-1] and x + w > f.width - f.right:
            rows.append([])
            x = float(f.left)
        rows[-1].append((x, key))
        x += w
    f.top = max(f.top, 8 + LEGEND_ROW * len(rows) + 8)
    return rows


def _draw_legend(f: _Frame, rows: list[list[tuple[float, _Key]]]) -> None:
    for r, row in enumerate(rows):
        y = 6 + r * LEGEND_ROW
        for x, key in row:
            if key.kind == "dash":
                f.parts.append(
                    f'<line class="key" x1="{x:.0f}" x2="{x + 16:.0f}" y1="{y + 5}" '
                    f'y2="{y + 5}" stroke="{key.color}" stroke-width="1.5" '
                    f'stroke-dasharray="5 3"/>'
                )
                tx = x + 20
            elif key.kind == "dot":
                f.parts.append(
                    f'<circle class="key" cx="{x + 5:.0f}" cy="{y + 5}" r="4" fill="{key.color}"/>'
                )
                tx = x + 14
            else:
                f.parts.append(
                    f'<rect class="key" x="{x:.0f}" y="{y}" width="10" height="10" '
                    f'fill="{key.color}"/>'
                )
                tx = x + 14
            f.parts.append(
                f'<text class="legend" x="{tx:.0f}" y="{y + 9}">{escape(key.label)}</text>'
            )


def _axes(
    f: _Frame,
    x_label: str,
    y_label: str,
    *,
    x_ticks: list[float],
    y_ticks: list[float],
    x_fmt: Callable[[float], str] | None = None,
    legend: Sequence[_Key] = (),
) -> list[list[tuple[float, _Key]]]:
    """Fit the sides to the tick labels, reserve the legend's rows, then draw the grid,
    ticks and axis labels. Returns the legend's layout for ``_draw_legend``."""
    p = f.parts
    y_fmt = _tick_fmt(y_ticks)
    x_fmt = x_fmt or _tick_fmt(x_ticks)
    x_texts = [x_fmt(t) for t in x_ticks]
    y_texts = [y_fmt(t) for t in y_ticks]
    _fit_sides(f, x_texts, y_texts)
    rows = _reserve_legend(f, legend)
    plot_w = f.width - f.left - f.right
    for t, text in zip(y_ticks, y_texts, strict=True):
        y = f.sy(t)
        p.append(
            f'<line class="grid" x1="{f.left}" x2="{f.left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        p.append(
            f'<text class="tick" x="{f.left - 6}" y="{y + 4:.1f}" '
            f'text-anchor="end">{escape(text)}</text>'
        )
    for t, text in zip(x_ticks, x_texts, strict=True):
        x = f.sx(t)
        p.append(
            f'<line class="tickmark" x1="{x:.1f}" x2="{x:.1f}" y1="{f.height - f.bottom}" '
            f'y2="{f.height - f.bottom + 4}"/>'
        )
        p.append(
            f'<text class="tick" x="{x:.1f}" y="{f.height - f.bottom + 16}" '
            f'text-anchor="middle">{escape(text)}</text>'
        )
    p.append(
        f'<line class="axis" x1="{f.left}" x2="{f.left}" y1="{f.top}" y2="{f.height - f.bottom}"/>'
    )
    p.append(
        f'<line class="axis" x1="{f.left}" x2="{f.left + plot_w}" y1="{f.height - f.bottom}" '
        f'y2="{f.height - f.bottom}"/>'
    )
    p.append(
        f'<text class="label" x="{f.left + plot_w / 2:.0f}" y="{f.height - 6}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    mid_y = f.top + (f.height - f.top - f.bottom) / 2
    p.append(
        f'<text class="label" transform="translate(13 {mid_y:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return rows


def _role(body: str) -> str:
    # An image hides its children from assistive technology, links included; a chart
    # whose marks link somewhere is a group, so the links stay reachable (WCAG 2.1).
    return "group" if "<a " in body else "img"


def _scrolls(svg: str, title: str) -> SafeString:
    """The chart in a box that scrolls sideways where the screen is narrower than the
    chart's least legible width (static/wattlab.css): the page itself never does.
    Focusable, so a keyboard can scroll it too (WCAG 2.1, 2.1.1)."""
    return mark_safe(  # noqa: S308 - the title is escaped, the SVG built from escaped text
        f'<div class="chart-scroll" tabindex="0" role="region" aria-label="{escape(title)}">'
        f"{svg}</div>"
    )


def _svg(f: _Frame, title: str) -> SafeString:
    """The chart; ``data-plot-area`` (left top right bottom, in the viewBox's units)
    is where its marks are drawn, which the browser tests check them against."""
    body = "".join(f.parts)
    area = f"{f.left} {f.top} {f.width - f.right} {f.height - f.bottom}"
    return _scrolls(
        f'<svg class="chart" viewBox="0 0 {f.width} {f.height}" role="{_role(body)}" '
        f'aria-label="{escape(title)}" data-plot-area="{area}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{body}</svg>',
        title,
    )


def _empty(title: str, message: str, width: int, height: int) -> SafeString:
    height = min(height, 60)  # a note, not a blank chart-sized box
    return mark_safe(  # noqa: S308
        f'<svg class="chart empty" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="label">'
        f"{escape(message)}</text></svg>"
    )


def line_chart(
    series: list[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    markers: Sequence[Marker] = (),
    width: int = 1000,
    height: int = 220,
    y_min: float | None = 0.0,
) -> SafeString:
    series = [
        Series(s.label, [_clamp(x) for x in s.xs], [_clamp_opt(y) for y in s.ys], s.color)
        for s in series
    ]
    markers = [Marker(_clamp(m.x), m.label, m.color, m.dashed) for m in markers]
    pts = [(x, y) for s in series for x, y in zip(s.xs, s.ys, strict=False) if _ok(y)]
    if not pts:
        return _empty(title, "no samples yet", width, height)
    xs = [p[0] for p in pts] + [m.x for m in markers]
    ys = [float(p[1]) for p in pts if p[1] is not None]
    f = _Frame(width, height)
    # Time runs edge to edge; the values get a margin above (and below, unless the
    # axis starts at y_min, e.g. 0 W).
    f.x0, f.x1 = min(xs), max(xs)
    lo = min(ys) if y_min is None else min(y_min, min(ys))
    y_ticks = padded_ticks(lo, max(ys), floor=y_min)
    f.y0, f.y1 = y_ticks[0], y_ticks[-1]
    x_ticks = [t for t in nice_ticks(f.x0, f.x1, 6) if f.x0 <= t <= f.x1]
    # A legend names the lines only where there are several, each one drawn.
    drawn = [(i, s) for i, s in enumerate(series) if any(_ok(y) for y in s.ys) and len(s.xs) > 0]
    keys = (
        [_Key(s.label, s.color or PALETTE[i % len(PALETTE)]) for i, s in drawn]
        if len(drawn) > 1
        else []
    )
    rows = _axes(f, x_label, y_label, x_ticks=x_ticks, y_ticks=y_ticks, legend=keys)
    for m in markers:
        x = f.sx(m.x)
        dash = ' stroke-dasharray="4 3"' if m.dashed else ""
        f.parts.append(
            f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" '
            f'y2="{f.height - f.bottom}" '
            f'stroke="{m.color}"{dash}><title>{escape(m.label)}</title></line>'
        )
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        # A sample the meter could not read (None) breaks the line: no invented values.
        segments: list[list[str]] = [[]]
        for x, y in zip(s.xs, s.ys, strict=False):
            if y is not None and _ok(y):
                segments[-1].append(f"{f.sx(x):.1f},{f.sy(y):.1f}")
            elif segments[-1]:
                segments.append([])
        for seg in segments:
            if seg:
                f.parts.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="1.6" '
                    f'points="{" ".join(seg)}"><title>{escape(s.label)}</title></polyline>'
                )
    _draw_legend(f, rows)
    return _svg(f, title)


@dataclass
class Point:
    x: float
    y: float
    label: str
    group: str = ""
    href: str = ""


def _positive_floor(values: list[float], log: bool) -> float | None:
    """0 for an axis of values all above 0 (its margin stops there), else no floor."""
    return 0.0 if not log and min(values) > 0 else None


def scatter(
    points: list[Point],
    *,
    title: str,
    x_label: str,
    y_label: str,
    front: Sequence[int] = (),
    log_x: bool = False,
    width: int = 1000,
    height: int = 360,
    trends: Sequence[tuple[str, Sequence[tuple[float, float, float, float]]]] = (),
) -> SafeString:
    """Points coloured by group; ``front`` (indices) is joined as the Pareto front
    (where it has two points or more: one point is no line); ``trends`` are (group,
    [(x, low, fit, high)]): a fitted line in the group's colour over its shaded 95 %
    band. The axes hold every point and band with a margin; the legend, above the
    plot, names only what is drawn."""
    points = [Point(_clamp(p.x), _clamp(p.y), p.label, p.group, p.href) for p in points]
    trends = [
        (group, [(_clamp(x), _clamp(lo), _clamp(fit), _clamp(hi)) for x, lo, fit, hi in line])
        for group, line in trends
    ]
    pts = [
        p for p in points if math.isfinite(p.x) and math.isfinite(p.y) and (p.x > 0 or not log_x)
    ]
    if not pts:
        return _empty(title, "no finished runs to plot", width, height)

    def tx(x: float) -> float:
        return math.log10(x) if log_x else x

    trends = [
        (group, [b for b in band if all(_ok(v) for v in b) and (b[0] > 0 or not log_x)])
        for group, band in trends
    ]
    trends = [(group, band) for group, band in trends if len(band) >= 2]
    f = _Frame(width, height)
    all_x = [tx(p.x) for p in pts] + [tx(b[0]) for _, band in trends for b in band]
    all_y = [p.y for p in pts] + [v for _, band in trends for b in band for v in (b[1], b[3])]
    # Values that are all positive (a learning rate, joules) get no negative ticks.
    x_ticks = padded_ticks(min(all_x), max(all_x), floor=_positive_floor(all_x, log_x))
    if log_x:
        lo_x, hi_x = x_ticks[0], x_ticks[-1]
        x_ticks = [float(t) for t in range(math.floor(lo_x), math.ceil(hi_x) + 1)]
    y_ticks = padded_ticks(min(all_y), max(all_y), floor=_positive_floor(all_y, False))
    f.x0, f.x1, f.y0, f.y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    groups = sorted({p.group for p in pts} | {g for g, _ in trends})
    colors = _colors(groups)
    chosen = [points[i] for i in front if 0 <= i < len(points) and points[i] in pts]
    draw_front = len(chosen) >= 2
    keys = [_Key(g or "runs", colors[g], "dot") for g in groups] if len(groups) > 1 else []
    if draw_front:
        keys.append(_Key("Pareto front", "#0f172a", "dash"))
    rows = _axes(
        f,
        x_label,
        y_label,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        x_fmt=(lambda t: _fmt(10**t)) if log_x else None,
        legend=keys,
    )
    for group, band in trends:
        upper = [f"{f.sx(tx(x)):.1f},{f.sy(hi):.1f}" for x, _, _, hi in band]
        lower = [f"{f.sx(tx(x)):.1f},{f.sy(lo):.1f}" for x, lo, _, _ in reversed(band)]
        line = " ".join(f"{f.sx(tx(x)):.1f},{f.sy(fit):.1f}" for x, _, fit, _ in band)
        f.parts.append(
            f'<polygon class="band" points="{" ".join(upper + lower)}" fill="{colors[group]}" '
            f'fill-opacity="0.12" stroke="none"><title>{escape(group)}: fitted trend, '
            f"95 % confidence band</title></polygon>"
        )
        f.parts.append(
            f'<polyline class="trend" fill="none" stroke="{colors[group]}" stroke-width="1.5" '
            f'points="{line}"/>'
        )
    if draw_front:
        coords = " ".join(f"{f.sx(tx(p.x)):.1f},{f.sy(p.y):.1f}" for p in chosen)
        f.parts.append(
            f'<polyline class="front" fill="none" stroke="#0f172a" stroke-width="1.5" '
            f'stroke-dasharray="5 3" points="{coords}"><title>Pareto front</title></polyline>'
        )
    front_set = {id(p) for p in chosen}
    for p in pts:
        cx, cy = f.sx(tx(p.x)), f.sy(p.y)
        r = 4.5 if id(p) in front_set else 3.2
        mark = (
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r}" fill="{colors[p.group]}" '
            f'fill-opacity="0.75"><title>{escape(p.label)}</title></circle>'
        )
        if p.href:
            mark = f'<a href="{escape(p.href)}">{mark}</a>'
        f.parts.append(mark)
    _draw_legend(f, rows)
    return _svg(f, title)


@dataclass
class RangeBar:
    """One group: median with a low–high whisker, for a category and a series."""

    category: str
    series: str
    median: float
    low: float
    high: float
    n: int
    #: What the whisker is ("min–max", "95 % interval"), for the tooltip.
    interval: str = "range"
    #: A group too small for an interval: its values, drawn as dots instead of a whisker.
    values: tuple[float, ...] = ()


def range_chart(
    bars: list[RangeBar],
    *,
    title: str,
    y_label: str,
    x_label: str = "",
    width: int = 1000,
    height: int = 300,
) -> SafeString:
    """Median bars with whiskers (each bar says what its whisker is), side by side per
    category (parallel vs solo)."""
    if not bars:
        return _empty(title, "nothing measured both ways yet", width, height)
    bars = [
        RangeBar(
            b.category,
            b.series,
            _clamp(b.median),
            _clamp(b.low),
            _clamp(b.high),
            b.n,
            b.interval,
            tuple(_clamp(v) for v in b.values),
        )
        for b in bars
    ]
    cats = list(dict.fromkeys(b.category for b in bars))
    series = list(dict.fromkeys(b.series for b in bars))
    colors = _colors(series)
    f = _Frame(width, height)
    # The axis holds every point drawn: medians, whiskers and a small group's values.
    top = max(max((b.high, b.median, *b.values)) for b in bars)
    bottom = min(min((b.low, *b.values)) for b in bars)
    y_ticks = padded_ticks(min(0.0, bottom), top, floor=0.0)
    f.y0, f.y1 = y_ticks[0], y_ticks[-1]
    keys = [_Key(s, colors[s]) for s in series]
    rows = _axes(f, x_label, y_label, x_ticks=[], y_ticks=y_ticks, legend=keys)
    plot_w = f.width - f.left - f.right
    slot = plot_w / len(cats)
    bar_w = min(28.0, slot * 0.8 / len(series))
    for ci, cat in enumerate(cats):
        cx = f.left + slot * (ci + 0.5)
        label = cat if len(cat) <= 22 else cat[:21] + "…"
        f.parts.append(
            f'<text class="tick" x="{cx:.1f}" y="{f.height - f.bottom + 16}" '
            f'text-anchor="middle"><title>{escape(cat)}</title>{escape(label)}</text>'
        )
        for si, s in enumerate(series):
            b = next((b for b in bars if b.category == cat and b.series == s), None)
            if b is None:
                continue
            x = cx + (si - len(series) / 2) * bar_w
            y = f.sy(b.median)
            base = f.sy(max(f.y0, 0.0))
            if b.values:
                shown = ", ".join(_fmt(v) for v in b.values)
                tip = f"{s}: median {_fmt(b.median)} {y_label}, {b.interval}: {shown}, n={b.n}"
            else:
                tip = (
                    f"{s}: median {_fmt(b.median)} {y_label}, "
                    f"{b.interval} {_fmt(b.low)}–{_fmt(b.high)}, n={b.n}"
                )
            f.parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{min(y, base - 0.5):.1f}" '
                f'width="{bar_w - 2:.1f}" height="{max(base - y, 0.5):.1f}" '
                f'fill="{colors[s]}" fill-opacity="0.8"><title>{escape(tip)}</title></rect>'
            )
            wx = x + (bar_w - 2) / 2
            if b.values:
                for v in b.values:
                    f.parts.append(
                        f'<circle class="value" cx="{wx:.1f}" cy="{f.sy(v):.1f}" r="3" '
                        'fill="#0f172a" stroke="#fff">'
                        f"<title>{escape(f'{s}: {_fmt(v)}')}</title></circle>"
                    )
                continue
            f.parts.append(
                f'<line class="whisker" x1="{wx:.1f}" x2="{wx:.1f}" y1="{f.sy(b.low):.1f}" '
                f'y2="{f.sy(b.high):.1f}"/>'
            )
    _draw_legend(f, rows)
    return _svg(f, title)


@dataclass
class Window:
    """One foreground run's window and the background intervals overlapping it."""

    label: str
    start: dt.datetime
    end: dt.datetime
    background: list[tuple[dt.datetime, dt.datetime, str]]
    percent: float | None
    verdict: str
    #: where no background ran: the CoverageReport's gaps (epoch seconds), drawn as they
    #: are; the chart does no interval maths of its own.
    gaps: list[tuple[float, float]] = field(default_factory=list)
    href: str = ""
    live: bool = False


def coverage_timeline(windows: list[Window], *, width: int = 1000) -> SafeString:
    """One row per foreground window, the window spanning the full width: background
    runs laid over it as bars, uncovered gaps hatched red, % and verdict on the right."""
    title = "Background coverage of each foreground run"
    if not windows:
        return _empty(title, "no foreground run has started yet", width, 60)
    row_h = 26
    left, right = 70, 150
    height = 26 + row_h * len(windows)
    plot_w = width - left - right
    parts = [
        '<defs><pattern id="gap-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fee2e2"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#dc2626" stroke-width="2"/></pattern></defs>',
        f'<text class="tick" x="{left}" y="12">window start</text>',
        f'<text class="tick" x="{left + plot_w}" y="12" text-anchor="end">window end</text>',
    ]
    for i, w in enumerate(windows):
        y = 20 + i * row_h
        span = max((w.end - w.start).total_seconds(), 1e-6)

        def sx(seconds: float, span: float = span) -> float:
            return left + max(0.0, min(seconds, span)) / span * plot_w

        label = escape(w.label)
        if w.href:
            label = f'<a href="{escape(w.href)}">{label}</a>'
        parts.append(
            f'<text class="rowlabel" x="{left - 8}" y="{y + 14}" text-anchor="end">{label}</text>'
        )
        parts.append(
            f'<rect class="window" x="{left}" y="{y + 2}" width="{plot_w}" height="{row_h - 8}">'
            f"<title>{escape(w.label)}: foreground window {span:.1f} s</title></rect>"
        )
        for b_start, b_end, b_label in w.background:
            a = (b_start - w.start).total_seconds()
            b = (b_end - w.start).total_seconds()
            a, b = max(a, 0.0), min(b, span)
            if b <= a:
                continue
            parts.append(
                f'<rect class="bg" x="{sx(a):.1f}" y="{y + 6}" '
                f'width="{max(sx(b) - sx(a), 0.8):.1f}" '
                f'height="{row_h - 16}"><title>{escape(b_label)}: {a:.1f}–{b:.1f} s into the window'
                "</title></rect>"
            )
        origin = w.start.timestamp()
        for gap_start, gap_end in w.gaps:
            a, b = gap_start - origin, gap_end - origin
            parts.append(
                f'<rect class="gap" x="{sx(a):.1f}" y="{y + 2}" '
                f'width="{max(sx(b) - sx(a), 1.0):.1f}" '
                f'height="{row_h - 8}" fill="url(#gap-hatch)"><title>gap {b - a:.1f} s '
                f"(no background running)</title></rect>"
            )
        pct = "…" if w.percent is None else f"{w.percent:.1f} %"
        verdict = w.verdict or ("running" if w.live else "")
        color = verdict_colour(w.verdict)
        parts.append(
            f'<text class="pct" x="{left + plot_w + 8}" y="{y + 14}">{escape(pct)}</text>'
            f'<text class="verdict" x="{left + plot_w + 68}" y="{y + 14}" fill="{color}">'
            f"{escape(verdict)}</text>"
        )
    body = "".join(parts)
    return _scrolls(
        f'<svg class="chart timeline" viewBox="0 0 {width} {height}" role="{_role(body)}" '
        f'aria-label="{title}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>'
        f"{body}</svg>",
        title,
    )
