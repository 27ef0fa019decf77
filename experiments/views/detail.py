"""One experiment: progress, coverage timeline, runs, background runs, actions, exports."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from core.coverage import GOOD, compute_coverage
from core.runlabel import label_of
from experiments import charts, selectors, services
from experiments.comparison import left_out_text
from experiments.expfile import ExperimentFileError
from experiments.models import BackgroundRun, Experiment, Run
from experiments.permissions import _get_experiment_for_user, can_manage
from experiments.views._common import render_live
from experiments.views.traces import trace_series

#: How many background runs the table lists (a long experiment has hundreds).
BACKGROUND_ROWS = 50

_DETAIL_QS = Experiment.objects.select_related(
    "owner", "foreground_workload", "background_workload", "host", "cancel_requested_by"
)


def run_url(experiment: Experiment, run: Run) -> str:
    return reverse("run_detail", kwargs={"code": experiment.code, "run": label_of(run)})


def coverage_windows(
    experiment: Experiment, runs: list[Run], background: list[BackgroundRun]
) -> list[charts.Window]:
    """Each started foreground run's window with the background runs overlapping it.

    The gaps drawn come from ``core.coverage`` (the maths the worker uses), so the
    picture and the number agree. A run still going is drawn up to now, and its
    percentage is computed live the same way."""
    now = timezone.now()
    windows = []
    for run in runs:
        if run.started_at is None:
            continue
        end = run.ended_at or now
        over = [
            (b.started_at, b.ended_at or now, f"background run {b.index}")
            for b in background
            if b.started_at < end and (b.ended_at is None or b.ended_at > run.started_at)
        ]
        report = compute_coverage(
            run.started_at.timestamp(),
            end.timestamp(),
            [(a.timestamp(), b.timestamp()) for a, b, _ in over],
        )
        percent = run.coverage_percent
        verdict = run.coverage_verdict
        if run.ended_at is None and experiment.mode == Experiment.Mode.PARALLEL:
            percent, verdict = report.percent, ""
        windows.append(
            charts.Window(
                label=f"run {label_of(run)}",
                start=run.started_at,
                end=end,
                background=over,
                percent=percent,
                verdict=verdict,
                gaps=report.gaps,
                href=run_url(experiment, run),
                live=run.ended_at is None,
            )
        )
    return windows


def _live_power_chart(run: Run | None) -> Any:
    if run is None:
        return None
    trace = Run.objects.filter(pk=run.pk).values_list("trace", flat=True).first()
    series = trace_series(bytes(trace or b""))
    if series is None:
        return charts.line_chart(
            [],
            title="GPU power, live",
            x_label="time since the run started (s)",
            y_label="power (W)",
        )
    return charts.line_chart(
        [charts.Series("GPU power (W)", series["t"], series.get("power_w", []))],
        title="GPU power, live",
        x_label="time since the run started (s)",
        y_label="power (W)",
        height=180,
    )


def coverage_shortfall(experiment: Experiment, runs: list[Run]) -> dict[str, Any] | None:
    """For a finished parallel experiment some of whose runs fell short of good
    coverage: how many, their coverage, and what to change (the advice the worker
    recorded for the least covered run, with a link to it); None otherwise."""
    if experiment.mode != Experiment.Mode.PARALLEL or experiment.is_active:
        return None
    short = [
        r
        for r in runs
        if r.status == Run.Status.SUCCEEDED and r.coverage_verdict and r.coverage_verdict != GOOD
    ]
    if not short:
        return None
    worst = min(short, key=lambda r: r.coverage_percent or 0.0)
    advice = ((worst.provenance or {}).get("coverage") or {}).get("advice", "")
    counted = sum(1 for r in runs if r.status == Run.Status.SUCCEEDED) - len(short)
    return {
        "runs": short,
        "counted": counted,
        "text": left_out_text([r.coverage_percent for r in short]),
        "worst": worst,
        "worst_url": run_url(experiment, worst),
        "advice": advice,
    }


def _context(request: HttpRequest, experiment: Experiment) -> dict[str, Any]:
    data = selectors.experiment_detail(experiment=experiment)
    runs, background = data["runs"], data["background_runs"]
    progress = selectors.experiment_progress(experiment=experiment, runs=runs)
    windows = (
        coverage_windows(experiment, runs, background)
        if experiment.mode == Experiment.Mode.PARALLEL
        else []
    )
    return {
        "experiment": experiment,
        "runs": [(run, run_url(experiment, run)) for run in runs],
        # The newest background runs; all of them are in the timeline and the exports.
        "background_runs": background[-BACKGROUND_ROWS:],
        "background_total": len(background),
        "progress": progress,
        "timeline": charts.coverage_timeline(windows)
        if windows or experiment.mode == "parallel"
        else None,
        "power_chart": _live_power_chart(progress["current"]) if experiment.is_active else None,
        "can_manage": can_manage(request.user, experiment),
        "shortfall": coverage_shortfall(experiment, runs),
        "live": experiment.is_active,
        "now": timezone.now(),
        "waiting": selectors.queued_wait(experiment)
        if experiment.status == Experiment.Status.QUEUED and not runs
        else "",
    }


@login_required
@require_GET
def experiment_detail(request: HttpRequest, code: str) -> HttpResponse:
    experiment = _get_experiment_for_user(request.user, code, queryset=_DETAIL_QS)
    context = _context(request, experiment)
    return render_live(
        request,
        "experiments/detail.html",
        "experiments/htmx/_live.html",
        context,
        live=experiment.is_active,
    )


@login_required
@require_http_methods(["GET", "POST"])
def experiment_cancel(request: HttpRequest, code: str) -> HttpResponse:
    experiment = _get_experiment_for_user(request.user, code, manage=True, queryset=_DETAIL_QS)
    if request.method == "GET":
        return render(
            request,
            "experiments/confirm.html",
            {
                "experiment": experiment,
                "action": "cancel",
                "question": "Cancel this experiment?",
                "explain": "The worker stops the running training and the background loop "
                "(SIGTERM, a grace period, then SIGKILL) and keeps the runs measured so far.",
                "button": "Cancel experiment",
            },
        )
    if services.experiment_cancel(experiment=experiment, by=request.user):
        messages.success(
            request, "Cancel requested: the worker stops its processes within seconds."
        )
    else:
        messages.info(request, f"Nothing to cancel: the experiment is {experiment.status}.")
    return redirect("experiment_detail", code=experiment.code)


@login_required
@require_http_methods(["GET", "POST"])
def experiment_rerun(request: HttpRequest, code: str) -> HttpResponse:
    experiment = _get_experiment_for_user(request.user, code, manage=True, queryset=_DETAIL_QS)
    if request.method == "GET":
        # A re-run takes GPU time (and queues behind others): asked first, like cancel.
        runs = experiment.total_runs
        return render(
            request,
            "experiments/confirm.html",
            {
                "experiment": experiment,
                "action": "rerun",
                "question": "Re-run this experiment?",
                "explain": f"A new experiment with the same settings and configurations "
                f"({runs} run{'s' if runs != 1 else ''}) joins the queue under your name; "
                "this one stays as it is.",
                "button": "Re-run",
                "keep": "Not now",
                "plain": True,
            },
        )
    try:
        new = services.experiment_rerun(experiment=experiment, by=request.user)
    except ValidationError as exc:
        messages.error(request, "Cannot re-run: " + "; ".join(exc.messages))
        return redirect("experiment_detail", code=experiment.code)
    except ExperimentFileError as exc:
        # Its stored settings no longer read as an experiment file (an old format).
        messages.error(request, "Cannot re-run: " + "; ".join(exc.errors))
        return redirect("experiment_detail", code=experiment.code)
    messages.success(request, "Re-run submitted with the same configurations.")
    return redirect("experiment_detail", code=new.code)


@login_required
@require_http_methods(["GET", "POST"])
def experiment_delete(request: HttpRequest, code: str) -> HttpResponse:
    experiment = _get_experiment_for_user(request.user, code, manage=True, queryset=_DETAIL_QS)
    if request.method == "GET":
        return render(
            request,
            "experiments/confirm.html",
            {
                "experiment": experiment,
                "action": "delete",
                "question": "Delete this experiment and all its runs?",
                "explain": "Its runs, background runs, logs and traces are removed "
                "for the whole team. "
                "This cannot be undone.",
                "button": "Delete for good",
                "danger": True,
            },
        )
    try:
        services.experiment_delete(experiment=experiment, by=request.user)
    except ValidationError as exc:
        messages.error(request, "Cannot delete: " + "; ".join(exc.messages))
        return redirect("experiment_detail", code=experiment.code)
    messages.success(request, f"Deleted {experiment.name}.")
    return redirect("experiment_list")
