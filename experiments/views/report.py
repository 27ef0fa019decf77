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

from experiments import figures, report_exports, report_methods, selectors, stats
from experiments.figures import EnergyFigure
from experiments.models import Experiment, Run
from experiments.permissions import _get_experiment_for_user
from experiments.views._common import as_attachment
from experiments.views.compare import include_partial, versus_chart
from experiments.views.runs import _footprint

_CSS = Path(settings.BASE_DIR) / "static" / "wattlab.css"

#: The report's charts as downloads: URL name -> (label, context key, what it shows).
REPORT_CHARTS: dict[str, tuple[str, str, str]] = {
    "versus": (
        "parallel vs solo",
        "versus_chart",
        f"Each group's median with its {stats.MEDIAN_METHOD}; below "
        f"{stats.MIN_INTERVAL_RUNS} runs the values themselves, drawn as dots.",
    ),
}


def versus(experiment: Experiment, figure: EnergyFigure, *, include_partial: bool = False) -> Any:
    """This experiment's configurations, parallel against solo: every finished run of
    them in either mode, from any experiment (the rows Compare shows for them)."""
    return selectors.configurations_table(
        workload=experiment.foreground_workload,
        figure=figure,
        hyperparameters=selectors.experiment_configurations(experiment),
        include_partial=include_partial,
    )


def report_experiment(request: HttpRequest, code: str) -> Experiment:
    """The experiment a report is of, under the report's permission rule (the
    experiment's, experiments.permissions): the page and every download use this."""
    return _get_experiment_for_user(
        request.user,
        code,
        queryset=Experiment.objects.select_related(
            "owner", "foreground_workload", "background_workload", "host"
        ),
    )


def report_data(request: HttpRequest, experiment: Experiment) -> dict[str, Any]:
    """Everything the report shows, for the page and each download alike."""
    runs = list(
        experiment.runs.defer("trace", "log_tail").order_by(
            "config_index", "repeat_index", "attempt"
        )
    )
    finished = [r for r in runs if r.status == Run.Status.SUCCEEDED]
    counts = {f.key: sum(1 for r in finished if f.value(r) is not None) for f in figures.FIGURES}
    figure = figures.get(request.GET.get("figure", "")) or figures.best(counts)
    coverages = [r.coverage_percent for r in finished if r.coverage_percent is not None]
    partial = include_partial(request)
    table = versus(experiment, figure, include_partial=partial)
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
        "versus": table,
        "versus_chart": versus_chart(table, table.unit_label, width=900),
        "other_mode": (
            Experiment.Mode.SOLO
            if experiment.mode == Experiment.Mode.PARALLEL
            else Experiment.Mode.PARALLEL
        ),
        "include_partial": partial,
        "stats": stats,
        "footprint": _footprint(request, experiment, finished),
        "hardware": report_methods.hardware(experiment, finished),
        "methods": report_methods.methods(experiment, finished, figure, table),
        "generated_at": timezone.now(),
        "chart_names": [{"name": k, "label": v[0]} for k, v in REPORT_CHARTS.items()],
        # The page's choices (figure, factors, partial runs) carried to every download.
        "query": f"?{request.GET.urlencode()}" if request.GET else "",
    }
    return context


@login_required
@require_GET
def experiment_report(request: HttpRequest, code: str, download: bool = False) -> HttpResponse:
    experiment = report_experiment(request, code)
    context = report_data(request, experiment)
    context["download"] = download
    context["css"] = _CSS.read_text() if _CSS.exists() else ""
    response = render(request, "experiments/report.html", context)
    if download:
        as_attachment(response, report_exports.export_filename(experiment.code, "html"))
    return response


@login_required
@require_GET
def experiment_report_download(request: HttpRequest, code: str) -> HttpResponse:
    return experiment_report(request, code, download=True)
