"""Reads for the pages, the API and the command line, by subject: experiments and their
runs (``experiments``), worker hosts and process groups (``hosts``), comparisons
(``compare``). Every function issues a fixed number of queries, whatever the number of
rows (the list and compare pages are pinned by tests)."""

from experiments.selectors.compare import (
    CHART_ROWS,
    COMPARE_CACHE_SECONDS,
    COMPARE_POINTS,
    COMPARE_ROWS,
    CompareData,
    ComparePoint,
    compare_workload,
    compare_workload_cached,
    compare_workload_warm,
    configurations_table,
    experiment_configurations,
    figure_counts,
    methods_text,
    pareto_front,
)
from experiments.selectors.experiments import (
    MAX_INT,
    background_runs_between,
    experiment_detail,
    experiment_filter_choices,
    experiment_list,
    experiment_progress,
    run_for_experiment,
    runs_by_refs,
)
from experiments.selectors.hosts import (
    host_list,
    host_online_after,
    orphaned_groups_q,
    orphaned_process_groups,
    process_groups_due_for_cleanup,
    process_groups_open,
    queued_wait,
    target_choices,
)

__all__ = [
    "CHART_ROWS",
    "COMPARE_CACHE_SECONDS",
    "COMPARE_POINTS",
    "COMPARE_ROWS",
    "MAX_INT",
    "CompareData",
    "ComparePoint",
    "background_runs_between",
    "compare_workload",
    "compare_workload_cached",
    "compare_workload_warm",
    "configurations_table",
    "experiment_configurations",
    "experiment_detail",
    "experiment_filter_choices",
    "experiment_list",
    "experiment_progress",
    "figure_counts",
    "host_list",
    "host_online_after",
    "methods_text",
    "orphaned_groups_q",
    "orphaned_process_groups",
    "pareto_front",
    "process_groups_due_for_cleanup",
    "process_groups_open",
    "queued_wait",
    "run_for_experiment",
    "runs_by_refs",
    "target_choices",
]
