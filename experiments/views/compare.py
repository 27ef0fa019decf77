"""Comparisons for a workload on any energy figure (experiments.figures): parallel vs
solo with its statistics, energy vs each hyperparameter with a fitted trend, energy vs
a metric with its Pareto front, and any runs side by side, or two picked groups against
each other. Same numbers as charts, tables and CSV; each names its figure, the figure's
methods and how many runs lack it."""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from core.runlabel import label_of
from experiments import cache, carbon, charts, comparison, figures, selectors, stats
from experiments.exports import compare_document, comparison_csv
from experiments.figures import EnergyFigure
from experiments.models import Run, Workload
from experiments.selectors import CompareData


def run_hrefs(points: list[selectors.ComparePoint]) -> dict[int, str]:
    """Each point's run page (keyed by id(point)): reverse() once, then the same URL
    shape filled in per run (600 reverse() calls cost a cold compare ~30 ms); every
    point through reverse() where the URL shape is not the expected one."""
    sample = reverse("run_detail", kwargs={"code": _ZERO_CODE, "run": "1.1.1"})
    tail = f"{_ZERO_CODE}/runs/1.1.1/"
    if not sample.endswith(tail):
        return {
            id(p): reverse("run_detail", kwargs={"code": p.code, "run": p.run_ref}) for p in points
        }
    head = sample[: -len(tail)]
    return {id(p): f"{head}{p.code}/runs/{p.run_ref}/" for p in points}


#: The run counts the "add runs" forms offer (the experiment file allows up to 100).
ADD_RUNS_CHOICES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 50)

_ZERO_CODE = "00000000-0000-0000-0000-000000000000"


#: A trend is fitted only through this many distinct values of the hyperparameter or
#: more: a line through two x values fits them exactly whatever the energy does, and
#: its interval says nothing.
MIN_TREND_VALUES = 3


def no_trend_line(group: str, name: str, distinct: int) -> str:
    """Why a group's points carry no trend line."""
    values = f"{distinct} distinct value{'s' if distinct != 1 else ''}"
    return (
        f"{group}: no trend fitted: the runs have {values} of {name}, and a line needs "
        f"at least {MIN_TREND_VALUES} to say anything beyond joining them"
    )


def _default_metric(names: list[str]) -> str:
    for name in names:
        if "acc" in name.lower():
            return name
    return names[0] if names else ""


def coverage_line(data: CompareData) -> str:
    """What every chart and the CSV say about the figure: its methods and who lacks it."""
    factor = {
        carbon.Unit.KGCO2E: " and a carbon intensity",
        carbon.Unit.COST: f" and a price in {data.unit_label}",
    }.get(data.unit, "")
    in_unit = "" if data.unit == carbon.Unit.J else f" in {data.unit_label}"
    return (
        f"{data.figure.label}{in_unit}{factor}: "
        f"{data.total_runs} of {data.finished_runs} finished runs "
        f"have it ({data.lacking} lack{'s' if data.lacking == 1 else ''} it); "
        f"methods: {data.methods_text}"
    )


def _chart_label(row: comparison.Row, varying: list[str], setups: int) -> str:
    label = ", ".join(f"{k}={row.hyperparameters.get(k)}" for k in varying) or "defaults"
    return f"{label} ({row.measured_with})" if setups > 1 else label


def versus_chart(table: comparison.Table, unit_label: str, *, width: int = 1000) -> Any:
    """Median bars of the chart's rows, solo and parallel, each with its 95 % interval,
    or its values as dots where it has too few runs for one."""
    bars = []
    shown = table.rows[: selectors.CHART_ROWS]
    # Label bars by what differs between them; the table has the full configuration.
    keys = {k for row in shown for k in row.hyperparameters}
    varying = sorted(k for k in keys if len({str(row.hyperparameters.get(k)) for row in shown}) > 1)
    setups = len({row.setup for row in shown})
    for row in shown:
        label = _chart_label(row, varying, setups)
        for mode, side in (("solo", row.solo), ("parallel", row.parallel)):
            g = side.summary
            if not g.n or g.median is None:
                continue
            if g.low is not None and g.high is not None:
                what = f"95 % interval (order statistics, {g.coverage:.1%} exact)"
                bars.append(charts.RangeBar(label, mode, g.median, g.low, g.high, g.n, what))
            else:
                bars.append(
                    charts.RangeBar(
                        label,
                        mode,
                        g.median,
                        g.median,
                        g.median,
                        g.n,
                        "too few runs for a 95 % interval, the values",
                        g.values,
                    )
                )
    return charts.range_chart(
        bars,
        title=f"{table.figure.label}, parallel vs solo (median, 95 % interval or the values)",
        y_label=f"{table.figure.label} ({unit_label})",
        x_label="configuration",
        width=width,
    )


def _charts(data: CompareData, metric: str) -> dict[str, Any]:
    """The charts (SVG) and trend lines, cached beside the figures they are drawn from:
    drawing 600 points and fitting the trends costs more than reading the cache."""
    if not data.cache_key:
        return _draw(data, metric)
    # The metric is a name the trainings reported: hashed, the key stays short and plain.
    key = f"{data.cache_key}-charts-{hashlib.sha1(metric.encode()).hexdigest()[:16]}"
    cached = cache.get(key)
    if isinstance(cached, dict):
        return {str(k): v for k, v in cached.items()}
    drawn = _draw(data, metric)
    cache.put(key, drawn, timeout=600)
    return drawn


def _draw(data: CompareData, metric: str) -> dict[str, Any]:
    figure = data.figure
    unit = data.unit_label
    # One URL per run, shared by every chart it appears on (reverse() is not free).
    hrefs = run_hrefs(data.points)
    per_param = []
    for name in data.numeric_params:
        chosen = [
            p
            for p in data.points
            if isinstance(p.hyperparameters.get(name), int | float) and p.value is not None
        ]
        pts = [
            charts.Point(
                float(p.hyperparameters[name]),
                float(p.value or 0.0),
                f"{name}={p.hyperparameters[name]}: {p.value:.4g} {unit} "
                f"({p.mode}, run {p.run_ref})",
                p.mode + (" (imported)" if p.imported else ""),
                hrefs[id(p)],
            )
            for p in chosen
        ]
        if len({pt.x for pt in pts}) < 2:
            continue  # a parameter that never varied has nothing to show
        positive = all(pt.x > 0 for pt in pts)
        spread = (max(pt.x for pt in pts) / min(pt.x for pt in pts)) if pts and positive else 1
        log_x = spread > 100
        # One trend per mode: a line through solo and parallel together would fit the
        # background's load as if it were the hyperparameter's effect.
        trends = []
        lines = []
        for group in sorted({pt.group for pt in pts}):
            mine = [pt for pt in pts if pt.group == group]
            distinct = len({pt.x for pt in mine})
            if distinct < MIN_TREND_VALUES:
                lines.append(no_trend_line(group, name, distinct))
                continue
            trend = stats.fit_trend([pt.x for pt in mine], [pt.y for pt in mine], log_x=log_x)
            if trend is not None:
                trends.append((group, trend.band))
                lines.append(f"{group}: {trend.describe(name, unit)}")
        chart = charts.scatter(
            pts,
            title=f"{figure.label} against {name}"
            + (", fitted trend with 95 % band" if trends else ""),
            x_label=name + (" (log scale)" if log_x else ""),
            y_label=f"{figure.label} ({unit})",
            log_x=log_x,
            height=300,
            trends=trends,
        )
        per_param.append((name, chart, lines))
    pareto = None
    front_rows: list[Any] = []
    if metric:
        chosen = [
            p
            for p in data.points
            if isinstance(p.metrics.get(metric), int | float) and p.value is not None
        ]
        pts = [
            charts.Point(
                float(p.value or 0.0),
                float(p.metrics[metric]),
                f"run {p.run_ref}: {p.value:.4g} {unit}, {metric} {p.metrics[metric]}",
                p.mode,
                hrefs[id(p)],
            )
            for p in chosen
        ]
        front = selectors.pareto_front([(pt.x, pt.y) for pt in pts])
        pareto = charts.scatter(
            pts,
            title=f"{metric} against {figure.label}"
            + (", Pareto front dashed" if len(front) > 1 else ""),
            x_label=f"{figure.label} ({unit})",
            y_label=metric,
            front=front,
        )
        front_rows = [chosen[i] for i in front]
    return {
        "versus": versus_chart(data.table, data.unit_label),
        "per_param": per_param,
        "pareto": pareto,
        "front_rows": front_rows,
    }


def charts_label(hp: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in hp.items()) or "defaults"


def _csv(data: CompareData) -> HttpResponse:
    response = HttpResponse(
        comparison_csv(compare_document(data)), content_type="text/csv; charset=utf-8"
    )
    rule = "-all-coverage" if data.include_partial else ""
    response["Content-Disposition"] = (
        f'attachment; filename="compare-{data.workload.name}-{data.figure.key}{rule}.csv"'
    )
    return response


def include_partial(request: HttpRequest) -> bool:
    """The coverage switch: ``coverage=all`` puts parallel runs short of good coverage
    back into the groups (marked); anything else is the default, good only."""
    return request.GET.get("coverage") == "all"


def _groups(figure: EnergyFigure, a: list[Run], b: list[Run]) -> dict[str, Any] | None:
    """Two picked groups of runs against each other on the figure. Runs measured
    differently are not pooled: a group mixing methods gets no verdict."""
    if not a or not b:
        return None
    va = [v for v in (figure.value(r) for r in a) if v is not None]
    vb = [v for v in (figure.value(r) for r in b) if v is not None]
    result = stats.compare(va, vb)
    mixed = [
        f"group {name} mixes {', '.join(sorted(methods))}"
        for name, runs in (("A", a), ("B", b))
        if len(methods := {figure.method_of(r) for r in runs if figure.value(r) is not None}) > 1
    ]
    verdict = result.verdict("group A", "group B")
    if mixed:
        verdict = (
            f"no verdict: {'; '.join(mixed)} (runs measured differently are never pooled: "
            "pick runs measured one way)"
        )
    return {
        "comparison": result,
        "verdict": verdict,
        "lacking": len(a) + len(b) - len(va) - len(vb),
    }


@login_required
@require_GET
@cache.write_after_response
def compare(request: HttpRequest) -> HttpResponse:
    workloads = list(Workload.objects.only("name"))
    name = request.GET.get("workload", "")
    workload = next((w for w in workloads if w.name == name), None)
    picks = request.GET.getlist("pick")
    versus = request.GET.getlist("vs")
    picked_all = selectors.runs_by_refs(picks + versus) if picks or versus else []
    by_ref = {f"{r.experiment.code}:{label_of(r)}": r for r in picked_all}
    picked = [by_ref[p] for p in dict.fromkeys(picks) if p in by_ref]
    group_b = [by_ref[p] for p in dict.fromkeys(versus) if p in by_ref]
    unit = request.GET.get("unit", carbon.Unit.J)
    if unit not in carbon.UNITS:
        unit = carbon.Unit.J  # the unit list is a select: anything else is a stale link
    asked = request.GET.get("figure", "")
    figure = figures.get(asked)
    context: dict[str, Any] = {
        "workloads": workloads,
        "workload": workload,
        "picked": picked,
        "group_b": group_b,
        "picks": picks,
        "versus_picks": versus,
        "figures": figures.FIGURES,
        "units": carbon.UNITS,
        "unit": unit,
        "unknown_figure": asked if asked and figure is None else "",
    }
    partial = include_partial(request)
    context["include_partial"] = partial
    if workload is not None:
        if request.GET.get("format") == "csv":
            data = selectors.compare_workload(
                workload=workload,
                figure=figure,
                unit=unit,
                row_limit=10**9,
                include_partial=partial,
            )
            return _csv(data)
        data = selectors.compare_workload_cached(
            workload=workload, figure=figure, unit=unit, include_partial=partial
        )
        metric = request.GET.get("metric", "")
        if metric not in data.metric_names:
            metric = _default_metric(data.metric_names)
        context.update(
            {
                "data": data,
                "figure": data.figure,
                "coverage_line": coverage_line(data),
                "metric": metric,
                **_charts(data, metric),
            }
        )
        context["recent_points"] = data.recent
    shown = context.get("figure") or figure or figures.FIGURES[0]
    context["shown_figure"] = shown
    context["picked_rows"] = [(r, shown.value(r), shown.method_of(r)) for r in picked]
    context["group_b_rows"] = [(r, shown.value(r), shown.method_of(r)) for r in group_b]
    context["side_groups"] = [("A", context["picked_rows"]), ("B", context["group_b_rows"])]
    context["groups"] = _groups(shown, picked, group_b)
    context["stats"] = stats
    context["runs_choices"] = ADD_RUNS_CHOICES
    return render(request, "experiments/compare.html", context)
