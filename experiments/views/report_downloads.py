"""The report's downloads beside its HTML: the tables as Markdown and LaTeX, each chart
as an SVG file. The same permission rule and the same data as the report page
(``report.report_experiment``, ``report.report_data``), so they cannot disagree."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from experiments import report_exports
from experiments.views._common import as_attachment
from experiments.views.report import REPORT_CHARTS, report_data, report_experiment


def _attachment(body: str, content_type: str, filename: str) -> HttpResponse:
    return as_attachment(HttpResponse(body, content_type=content_type), filename)


@login_required
@require_GET
def experiment_report_markdown(request: HttpRequest, code: str) -> HttpResponse:
    experiment = report_experiment(request, code)
    body = report_exports.markdown(report_data(request, experiment))
    name = report_exports.export_filename(experiment.code, "md")
    return _attachment(body, "text/markdown; charset=utf-8", name)


@login_required
@require_GET
def experiment_report_latex(request: HttpRequest, code: str) -> HttpResponse:
    experiment = report_experiment(request, code)
    body = report_exports.latex(report_data(request, experiment))
    name = report_exports.export_filename(experiment.code, "tex")
    return _attachment(body, "application/x-tex; charset=utf-8", name)


@login_required
@require_GET
def experiment_report_chart(request: HttpRequest, code: str, chart: str) -> HttpResponse:
    experiment = report_experiment(request, code)
    if chart not in REPORT_CHARTS:
        raise Http404("No such chart in the report.")
    data: dict[str, Any] = report_data(request, experiment)
    label, key, description = REPORT_CHARTS[chart]
    body = report_exports.standalone_svg(
        data[key], title=f"{data['figure'].label}, {label}", description=description
    )
    name = report_exports.chart_filename(experiment.code, chart)
    return _attachment(body, "image/svg+xml; charset=utf-8", name)
