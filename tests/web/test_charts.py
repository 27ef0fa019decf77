"""Server-side SVG charts: escaped labels, units on the axes, gaps drawn where no
background ran, missing samples never drawn as values."""

from __future__ import annotations

import datetime as dt
import re

from core.coverage import compute_coverage, verdict_colour
from experiments import charts

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_labels_are_escaped_so_names_cannot_inject_markup():
    svg = str(
        charts.scatter(
            [charts.Point(1.0, 2.0, "<script>alert(1)</script>", "solo", "/x?a=1&b=<2>")],
            title="t<",
            x_label="lr <b>",
            y_label="GPU energy (J)",
        )
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "lr &lt;b&gt;" in svg and "a=1&amp;b=&lt;2&gt;" in svg


def test_axes_carry_their_units():
    svg = str(
        charts.line_chart(
            [charts.Series("power", [0, 1, 2], [100.0, 120.0, 110.0])],
            title="GPU power",
            x_label="time (s)",
            y_label="power (W)",
        )
    )
    assert "time (s)" in svg and "power (W)" in svg


def test_a_missing_sample_breaks_the_line_instead_of_inventing_a_value():
    svg = str(
        charts.line_chart(
            [charts.Series("p", [0, 1, 2, 3], [100.0, None, 110.0, 120.0])],
            title="t",
            x_label="x",
            y_label="y",
        )
    )
    assert svg.count("<polyline") == 2


def test_no_samples_says_so():
    svg = str(charts.line_chart([charts.Series("p", [], [])], title="t", x_label="x", y_label="y"))
    assert "no samples yet" in svg


def test_the_timeline_draws_background_runs_and_hatches_the_reports_gaps():
    background = [
        (_at(-5), _at(40), "background run 0"),
        (_at(50), _at(120), "background run 1"),
    ]
    report = compute_coverage(
        _at(0).timestamp(),
        _at(100).timestamp(),
        [(a.timestamp(), b.timestamp()) for a, b, _ in background],
    )
    window = charts.Window(
        label="run 1.1.1",
        start=_at(0),
        end=_at(100),
        background=background,
        percent=report.percent,
        verdict=report.verdict,
        gaps=report.gaps,
    )
    svg = str(charts.coverage_timeline([window]))
    assert svg.count('class="bg"') == 2
    assert svg.count('class="gap"') == 1 and "gap 10.0 s" in svg
    assert "90.0 %" in svg and "partial" in svg
    assert f'fill="{verdict_colour("partial")}"' in svg


def test_the_timeline_draws_the_gaps_it_is_given_and_computes_none():
    # Two gaps handed over, although the bars would leave none: the chart is a picture
    # of the report, so the number beside it and the hatching cannot disagree.
    window = charts.Window(
        label="run 1.1.1",
        start=_at(0),
        end=_at(100),
        background=[(_at(0), _at(100), "background run 0")],
        percent=80.0,
        verdict="partial",
        gaps=[
            (_at(10).timestamp(), _at(15).timestamp()),
            (_at(60).timestamp(), _at(75).timestamp()),
        ],
    )
    svg = str(charts.coverage_timeline([window]))
    assert svg.count('class="gap"') == 2 and "gap 5.0 s" in svg and "gap 15.0 s" in svg


def test_ticks_are_round_and_cover_the_range():
    ticks = charts.nice_ticks(0.0, 137.0)
    assert ticks[0] <= 0.0 and ticks[-1] >= 137.0
    assert all(t % 20 == 0 for t in ticks)


BIG = 1.7976931348623157e308


def test_values_near_the_float_maximum_are_clamped_not_an_overflow():
    line = charts.line_chart(
        [charts.Series("power", [0.0, 1.0, BIG], [BIG, -BIG, 1.0])],
        title="t",
        x_label="time (s)",
        y_label="power (W)",
        markers=[charts.Marker(-BIG, "bg")],
    )
    points = [charts.Point(BIG, -BIG, "a"), charts.Point(1.0, BIG, "b")]
    scatter = charts.scatter(points, title="t", x_label="J", y_label="acc", front=[0, 1])
    bars = [charts.RangeBar("c", "solo", BIG, -BIG, BIG, 2)]
    ranges = charts.range_chart(bars, title="t", y_label="J")
    for svg in (line, scatter, ranges):
        assert "<svg" in svg
        # Every coordinate is a finite number.
        assert not re.search(r'="[^"]*(nan|inf)', svg), svg[:500]


def test_range_bars_say_what_their_whisker_is():
    from experiments import charts

    svg = charts.range_chart(
        [charts.RangeBar("defaults", "solo", 10.0, 9.0, 11.0, 3, "bootstrap 95 % CI")],
        title="t",
        y_label="J",
    )
    assert "bootstrap 95 % CI 9–11, n=3" in svg


def _area(svg: str) -> tuple[float, float, float, float]:
    found = re.search(r'data-plot-area="([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)"', svg)
    assert found, svg[:300]
    left, top, right, bottom = (float(v) for v in found.groups())
    return left, top, right, bottom


def test_the_axes_hold_every_point_with_a_margin_and_the_legend_sits_above():
    # The chart: accuracy up to 95.56 drawn above an axis ending at 95.5, in
    # the legend's row.
    points = [
        charts.Point(10.2 + i, acc, f"run {i}", "parallel" if i % 2 else "solo")
        for i, acc in enumerate([93.3, 95.56, 94.1, 95.56, 93.9])
    ]
    svg = str(charts.scatter(points, title="t", x_label="J", y_label="accuracy"))
    left, top, right, bottom = _area(svg)
    for cx, cy, r in re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="([\d.]+)"', svg):
        assert left < float(cx) - float(r) and float(cx) + float(r) < right
        assert top < float(cy) - float(r) and float(cy) + float(r) < bottom
    legend_ys = [float(y) for y in re.findall(r'<text class="legend" x="[\d.]+" y="([\d.]+)"', svg)]
    assert legend_ys and all(y < top for y in legend_ys)


def test_a_front_of_one_point_draws_no_line_and_no_legend_entry():
    points = [charts.Point(1.0, 0.9, "a", "solo"), charts.Point(2.0, 0.8, "b", "solo")]
    svg = str(charts.scatter(points, title="t", x_label="J", y_label="acc", front=[0]))
    assert 'class="front"' not in svg and "Pareto front</text>" not in svg
    two = str(charts.scatter(points + [charts.Point(3.0, 0.95, "c", "solo")], title="t",
                             x_label="J", y_label="acc", front=[0, 2]))  # fmt: skip
    assert 'class="front"' in two and "Pareto front</text>" in two


def test_a_line_chart_names_only_the_lines_it_draws():
    svg = str(
        charts.line_chart(
            [
                charts.Series("GPU", [0, 1, 2], [100.0, 110.0, 120.0]),
                charts.Series("CPU", [0, 1, 2], [None, None, None]),
            ],
            title="t",
            x_label="s",
            y_label="W",
        )
    )
    assert ">CPU</text>" not in svg and ">GPU</text>" not in svg  # one line: its title says it
    _left, top, _right, _bottom = _area(svg)
    pairs = [p for pts in re.findall(r'points="([^"]+)"', svg) for p in pts.split()]
    ys = [float(pair.split(",")[1]) for pair in pairs]
    assert ys and min(ys) > top  # 120 W is not on the top edge


def test_the_last_tick_label_fits_inside_the_picture():
    points = [charts.Point(x, 1.0, "p") for x in (0.0022, 0.0031, 0.0055)]
    svg = str(charts.scatter(points, title="t", x_label="lr", y_label="J", width=560))
    ticks = re.findall(
        r'<text class="tick" x="([\d.]+)" y="[\d.]+" text-anchor="middle">([^<]+)<', svg
    )
    x, label = ticks[-1]
    assert float(x) + len(label) * charts.CHAR_W / 2 <= 560


def test_a_group_too_small_for_an_interval_shows_its_values_not_a_whisker():
    from experiments import charts

    svg = charts.range_chart(
        [
            charts.RangeBar(
                "defaults", "solo", 301.0, 301.0, 301.0, 3, "too few runs", (300.0, 301.0, 302.0)
            ),
            charts.RangeBar("defaults", "parallel", 410.0, 400.0, 420.0, 6, "95 % interval"),
        ],
        title="t",
        y_label="J",
    )
    assert svg.count('class="value"') == 3 and svg.count('class="whisker"') == 1
    assert "too few runs: 300, 301, 302, n=3" in svg
    # The axis holds the values drawn as dots too.
    left, top, right, bottom = _area(str(svg))
    for cy in re.findall(r'<circle class="value" cx="[\d.]+" cy="([\d.]+)"', str(svg)):
        assert top < float(cy) < bottom
