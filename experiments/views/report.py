"""One experiment as a report for a paper's appendix: settings, coverage, energy, carbon,
cost and the comparison against the other mode (solo for a parallel experiment). The page
is self-contained (styles inline, charts inline SVG; the download has no script), so it is the
same HTML with a file name, and printing it gives the PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from experiments import figures, stats
from experiments.figures import EnergyFigure
from experiments.models import Experiment, Run
from experiments.mutation import config_key
from experiments.permissions import _get_experiment_for_user
from experiments.selectors import CompareData, CompareRow, GroupStats, _add_statistics
from experiments.views.compare import versus_chart
from experiments.views.runs import _footprint

_CSS = Path(settings.BASE_DIR) / "static" / "wattlab.css"


def _versus(experiment: Experiment, runs: list[Run], figure: EnergyFigure) -> dict[str, Any]:
    """This experiment's runs against the other mode's runs of the same workload and
    configurations (from any experiment), on the figure: one query for the other side."""
    other = (
        Experiment.Mode.SOLO
        if experiment.mode == Experiment.Mode.PARALLEL
        else Experiment.Mode.PARALLEL
    )
    mine: dict[str, list[float]] = {}
    hps: dict[str, dict[str, Any]] = {}
    for run in runs:
        value = figure.value(run)
        if value is None:
            continue
        key = config_key(run.hyperparameters or {})
        mine.setdefault(key, []).append(value)
        hps.setdefault(key, run.hyperparameters or {})
    theirs: dict[str, list[float]] = {key: [] for key in mine}
    candidates = (
        Run.objects.filter(
            experiment__foreground_workload_id=experiment.foreground_workload_id,
            experiment__mode=other,
            status=Run.Status.SUCCEEDED,
            hyperparameters__in=list(hps.values()),
            **{f"{part}__isnull": False for part in figure.parts},
        )
        .exclude(experiment=experiment)
        .order_by("-id")
        .only("hyperparameters", *figure.parts)
    )
    for run in candidates[:5000]:
        key = config_key(run.hyperparameters or {})
        value = figure.value(run)
        if key in theirs and value is not None:
            theirs[key].append(value)
    rows = []
    for key, values in mine.items():
        this, that = GroupStats.of(values), GroupStats.of(theirs[key])
        parallel, solo = (this, that) if other == Experiment.Mode.SOLO else (that, this)
        row = CompareRow(key, hps[key], solo, parallel)
        rows.append(row)
    _add_statistics(rows, len(rows))
    data = CompareData(
        workload=experiment.foreground_workload,
        figure=figure,
        rows=rows,
        points=[],
        metric_names=[],
        numeric_params=[],
        truncated=False,
    )
    return {
        "other_mode": other,
        "rows": rows,
        "chart": versus_chart(data, width=900),
        "other_runs": sum(len(v) for v in theirs.values()),
    }


@login_required
@require_GET
def experiment_report(request: HttpRequest, code: str, download: bool = False) -> HttpResponse:
    experiment = _get_experiment_for_user(
        request.user,
        code,
        queryset=Experiment.objects.select_related(
            "owner", "foreground_workload", "background_workload", "host"
        ),
    )
    runs = list(
        experiment.runs.defer("trace", "log_tail").order_by(
            "config_index", "repeat_index", "attempt"
        )
    )
    finished = [r for r in runs if r.status == Run.Status.SUCCEEDED]
    counts = {f.key: sum(1 for r in finished if f.value(r) is not None) for f in figures.FIGURES}
    figure = figures.get(request.GET.get("figure", "")) or figures.best(counts)
    coverages = [r.coverage_percent for r in finished if r.coverage_percent is not None]
    context = {
        "experiment": experiment,
        "runs": runs,
        "finished": finished,
        "figure": figure,
        "figure_counts": [(f, counts[f.key]) for f in figures.FIGURES],
        "run_values": [(r, figure.value(r), figure.method_of(r)) for r in runs],
        "coverage": {
            "n": len(coverages),
            "min": min(coverages) if coverages else None,
            "median": stats.summarise(coverages).median if coverages else None,
            "verdicts": {
                v: sum(1 for r in finished if r.coverage_verdict == v)
                for v in sorted({r.coverage_verdict for r in finished if r.coverage_verdict})
            },
        },
        "versus": _versus(experiment, finished, figure),
        "footprint": _footprint(request, experiment, finished),
        "css": _CSS.read_text() if _CSS.exists() else "",
        "generated_at": timezone.now(),
        "download": download,
        "min_runs": stats.MIN_RUNS,
    }
    response = render(request, "experiments/report.html", context)
    if download:
        name = f"wattlab-report-{experiment.code}.html"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def experiment_report_download(request: HttpRequest, code: str) -> HttpResponse:
    return experiment_report(request, code, download=True)
