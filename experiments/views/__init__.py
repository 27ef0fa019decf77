"""Pages. Short functions named by what they do; permissions go through
``experiments.permissions._get_experiment_for_user``."""

from experiments.views.compare import compare
from experiments.views.compare_actions import compare_add_runs
from experiments.views.detail import (
    experiment_cancel,
    experiment_delete,
    experiment_detail,
    experiment_rerun,
)
from experiments.views.exports import experiment_export
from experiments.views.hosts import host_list
from experiments.views.listing import experiment_list
from experiments.views.report import experiment_report, experiment_report_download
from experiments.views.report_downloads import (
    experiment_report_chart,
    experiment_report_latex,
    experiment_report_markdown,
)
from experiments.views.runs import background_log, run_detail, run_log
from experiments.views.submit import experiment_new
from experiments.views.tokens import token_list, token_revoke

__all__ = [
    "background_log",
    "compare",
    "compare_add_runs",
    "experiment_cancel",
    "experiment_delete",
    "experiment_detail",
    "experiment_export",
    "experiment_list",
    "experiment_new",
    "experiment_report",
    "experiment_report_download",
    "experiment_report_chart",
    "experiment_report_latex",
    "experiment_report_markdown",
    "experiment_rerun",
    "host_list",
    "run_detail",
    "run_log",
    "token_list",
    "token_revoke",
]
