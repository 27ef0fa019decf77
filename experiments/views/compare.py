"""Comparisons for a workload: parallel vs solo, energy vs each hyperparameter, energy
vs a metric with its Pareto front, and any runs side by side. Same numbers as charts,
tables and CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from experiments import charts, selectors
from experiments.models import Workload
from experiments.selectors import CompareData


def _run_href(p: selectors.ComparePoint) -> str:
    return reverse(
        "run_detail",
        kwargs={
            "code": p.code,
            "config": p.config_index,
            "repeat": p.repeat_index,
            "attempt": p.attempt,
        },
    )


def _default_metric(names: list[str]) -> str:
    for name in names:
        if "acc" in name.lower():
            return name
    return names[0] if names else ""


def _charts(data: CompareData, metric: str) -> dict[str, Any]:
    bars = []
    shown = data.rows[:12]
    # Label bars by what differs between them; the table has the full configuration.
    keys = {k for row in shown for k in row.hyperparameters}
    varying = sorted(k for k in keys if len({str(row.hyperparameters.get(k)) for row in shown}) > 1)
    for row in shown:
        label = ", ".join(f"{k}={row.hyperparameters.get(k)}" for k in varying) or "defaults"
        for mode, stats in (("solo", row.solo), ("parallel", row.parallel)):
            if stats.n and stats.median is not None:
                assert stats.low is not None and stats.high is not None
                bars.append(
                    charts.RangeBar(label, mode, stats.median, stats.low, stats.high, stats.n)
                )
    versus = charts.range_chart(
        bars,
        title="Foreground GPU energy, parallel vs solo (median, min–max)",
        y_label="GPU energy (J)",
    )
    # One URL per run, shared by every chart it appears on (reverse() is not free).
    hrefs = {id(p): _run_href(p) for p in data.points}
    per_param = []
    for name in data.numeric_params:
        pts = [
            charts.Point(
                float(p.hyperparameters[name]),
                p.energy_j,
                f"{name}={p.hyperparameters[name]}: {p.energy_j:.4g} J ({p.mode}, run {p.run_ref})",
                p.mode + (" (imported)" if p.imported else ""),
                hrefs[id(p)],
            )
            for p in data.points
            if isinstance(p.hyperparameters.get(name), int | float)
        ]
        if len({pt.x for pt in pts}) < 2:
            continue  # a parameter that never varied has nothing to show
        positive = all(pt.x > 0 for pt in pts)
        spread = (max(pt.x for pt in pts) / min(pt.x for pt in pts)) if pts and positive else 1
        per_param.append(
            (
                name,
                charts.scatter(
                    pts,
                    title=f"GPU energy against {name}",
                    x_label=name + (" (log scale)" if spread > 100 else ""),
                    y_label="GPU energy (J)",
                    log_x=spread > 100,
                    width=560,
                    height=300,
                ),
            )
        )
    pareto = None
    front_rows: list[Any] = []
    if metric:
        chosen = [p for p in data.points if isinstance(p.metrics.get(metric), int | float)]
        pts = [
            charts.Point(
                p.energy_j,
                float(p.metrics[metric]),
                f"run {p.run_ref}: {p.energy_j:.4g} J, {metric} {p.metrics[metric]}",
                p.mode,
                hrefs[id(p)],
            )
            for p in chosen
        ]
        front = selectors.pareto_front([(pt.x, pt.y) for pt in pts])
        pareto = charts.scatter(
            pts,
            title=f"{metric} against GPU energy, Pareto front dashed",
            x_label="GPU energy (J)",
            y_label=metric,
            front=front,
        )
        front_rows = [chosen[i] for i in front]
    return {"versus": versus, "per_param": per_param, "pareto": pareto, "front_rows": front_rows}


def charts_label(hp: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in hp.items()) or "defaults"


def _csv(data: CompareData) -> HttpResponse:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            "workload",
            "configuration",
            "solo_n",
            "solo_median_j",
            "solo_min_j",
            "solo_max_j",
            "parallel_n",
            "parallel_median_j",
            "parallel_min_j",
            "parallel_max_j",
            "parallel_over_solo",
            "imported",
        ]
    )
    for r in data.rows:
        w.writerow(
            [
                data.workload.name,
                charts_label(r.hyperparameters),
                r.solo.n,
                r.solo.median,
                r.solo.low,
                r.solo.high,
                r.parallel.n,
                r.parallel.median,
                r.parallel.low,
                r.parallel.high,
                r.ratio,
                r.imported,
            ]
        )
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="compare-{data.workload.name}.csv"'
    return response


@login_required
@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    workloads = list(Workload.objects.only("name"))
    name = request.GET.get("workload", "")
    workload = next((w for w in workloads if w.name == name), None)
    picks = request.GET.getlist("pick")
    picked = selectors.runs_by_refs(picks) if picks else []
    context: dict[str, Any] = {
        "workloads": workloads,
        "workload": workload,
        "picked": picked,
        "picks": picks,
    }
    if workload is not None:
        if request.GET.get("format") == "csv":
            return _csv(selectors.compare_workload(workload=workload, row_limit=10**9))
        data = selectors.compare_workload_cached(workload=workload)
        metric = request.GET.get("metric", "")
        if metric not in data.metric_names:
            metric = _default_metric(data.metric_names)
        context.update({"data": data, "metric": metric, **_charts(data, metric)})
        context["recent_points"] = data.points[:30]
    return render(request, "experiments/compare.html", context)
