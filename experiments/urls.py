from typing import Any

from django.urls import path, register_converter

from core import runlabel
from experiments import views


class RunLabelConverter:
    """A run in a URL by its label (``2.3.1``, core.runlabel); the view gets the stored
    key. A label that names no run (a part of 0, a number too large) is a 404."""

    regex = runlabel.PATTERN

    def to_python(self, value: str) -> runlabel.RunIndex:
        index = runlabel.parse_run_label(value)
        if index is None:
            raise ValueError(value)
        return index

    def to_url(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        return runlabel.label_of(value)


register_converter(RunLabelConverter, "run")

urlpatterns = [
    path("", views.experiment_list, name="experiment_list"),
    path("experiments/new/", views.experiment_new, name="experiment_new"),
    path("experiments/<uuid:code>/", views.experiment_detail, name="experiment_detail"),
    path("experiments/<uuid:code>/cancel/", views.experiment_cancel, name="experiment_cancel"),
    path("experiments/<uuid:code>/rerun/", views.experiment_rerun, name="experiment_rerun"),
    path("experiments/<uuid:code>/delete/", views.experiment_delete, name="experiment_delete"),
    path(
        "experiments/<uuid:code>/export.<str:fmt>",
        views.experiment_export,
        name="experiment_export",
    ),
    path("experiments/<uuid:code>/report/", views.experiment_report, name="experiment_report"),
    path(
        "experiments/<uuid:code>/report.html",
        views.experiment_report_download,
        name="experiment_report_download",
    ),
    path(
        "experiments/<uuid:code>/report.md",
        views.experiment_report_markdown,
        name="experiment_report_markdown",
    ),
    path(
        "experiments/<uuid:code>/report.tex",
        views.experiment_report_latex,
        name="experiment_report_latex",
    ),
    path(
        "experiments/<uuid:code>/report/<slug:chart>.svg",
        views.experiment_report_chart,
        name="experiment_report_chart",
    ),
    path(
        "experiments/<uuid:code>/runs/<run:run>/",
        views.run_detail,
        name="run_detail",
    ),
    path(
        "experiments/<uuid:code>/runs/<run:run>/log/",
        views.run_log,
        name="run_log",
    ),
    path(
        "experiments/<uuid:code>/background/<int:index>/log/",
        views.background_log,
        name="background_log",
    ),
    path("compare/", views.compare, name="compare"),
    path("compare/add-runs/", views.compare_add_runs, name="compare_add_runs"),
    path("hosts/", views.host_list, name="host_list"),
    path("account/tokens/", views.token_list, name="token_list"),
    path("account/tokens/<str:prefix>/revoke/", views.token_revoke, name="token_revoke"),
]
