"""Writes, by subject: submitting (``submission``), sending to the queue (``dispatch``),
an experiment's life after submit (``lifecycle``), a run's rows as the worker reports
them (``runs``), hosts and process groups (``hosts``). Every status change is a
conditional UPDATE that must change the rows it expects, so two workers (or a worker and
a user) never both win.

Views, management commands, the API and the engine store call these; nothing else
writes experiments, runs, background runs, process groups or hosts.
"""

from experiments.services.dispatch import (
    DISPATCH_AFTER_S,
    SAVED_NOT_SENT,
    experiments_dispatch_pending,
)
from experiments.services.hosts import (
    group_close_gone,
    group_end,
    group_start,
    host_gpu_sensors,
    host_heartbeat,
    host_register,
    process_group_request_terminate,
    process_group_terminated,
)
from experiments.services.lifecycle import (
    experiment_cancel,
    experiment_claim,
    experiment_delete,
    experiment_event,
    experiment_fail,
    experiment_finish,
    experiment_heartbeat,
    experiments_reap_lost,
)
from experiments.services.runs import (
    LOG_TAIL_CHARS,
    background_run_finish,
    background_run_start,
    run_finish,
    run_samples,
    run_start,
)
from experiments.services.submission import (
    ADD_MODES,
    PlanPreview,
    experiment_add_runs,
    experiment_plan_preview,
    experiment_rerun,
    experiment_submit,
    other_mode_text,
)

__all__ = [
    "ADD_MODES",
    "DISPATCH_AFTER_S",
    "LOG_TAIL_CHARS",
    "SAVED_NOT_SENT",
    "PlanPreview",
    "background_run_finish",
    "background_run_start",
    "experiment_add_runs",
    "experiment_cancel",
    "experiment_claim",
    "experiment_delete",
    "experiment_event",
    "experiment_fail",
    "experiment_finish",
    "experiment_heartbeat",
    "experiment_plan_preview",
    "experiment_rerun",
    "experiment_submit",
    "experiments_dispatch_pending",
    "experiments_reap_lost",
    "group_close_gone",
    "group_end",
    "group_start",
    "host_gpu_sensors",
    "host_heartbeat",
    "host_register",
    "other_mode_text",
    "process_group_request_terminate",
    "process_group_terminated",
    "run_finish",
    "run_samples",
    "run_start",
]
