"""One foreground run: its power/utilisation/temperature, provenance, metrics and log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.coverage import GOOD
from core.runlabel import RunIndex, label_of
from experiments import charts, selectors
from experiments.footprints import Footprints, footprints
from experiments.models import BackgroundRun, Experiment, Run
from experiments.permissions import _get_experiment_for_user
from experiments.templatetags.wattlab import figure_label
from experiments.views.traces import trace_metadata, trace_series

#: How much of the log the page shows (the rest is a download away).
LOG_TAIL_BYTES = 64 * 1024


def _run_or_404(request: HttpRequest, code: str, index: RunIndex) -> Run:
    experiment = _get_experiment_for_user(
        request.user,
        code,
        queryset=Experiment.objects.select_related(
            "owner", "foreground_workload", "background_workload", "host"
        ),
    )
    run = selectors.run_for_experiment(experiment=experiment, index=index)
    if run is None:
        raise Http404("No such run.")
    run.experiment = experiment
    return run


def _log_tail(run: Run) -> tuple[str, bool]:
    """The end of the log (where failures are), and whether it was cut."""
    if run.log:
        try:
            with run.log.open("rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(size - LOG_TAIL_BYTES, 0))
                data = fh.read()
            return data.decode("utf-8", errors="replace"), size > LOG_TAIL_BYTES
        except (OSError, ValueError):
            pass
    return run.log_tail, False


def _markers(run: Run, background: list[BackgroundRun]) -> list[charts.Marker]:
    if run.started_at is None:
        return []
    out = []
    for b in background:
        start = (b.started_at - run.started_at).total_seconds()
        out.append(charts.Marker(start, f"background run {b.index} starts", "#059669"))
        if b.ended_at:
            end = (b.ended_at - run.started_at).total_seconds()
            out.append(
                charts.Marker(end, f"background run {b.index} ends (exit {b.exit_code})", "#dc2626")
            )
    return out


#: What the trace's CPU power is, by the CPU meter's method (the trace's metadata says
#: which; traces written before it did carry RAPL only).
CPU_POWER_NOTES = {
    "rapl": "RAPL package + DRAM, the whole machine (the background included)",
    "perf": "perf stat, the whole machine (the background included)",
    "estimate": "an estimate, not measured: the foreground's CPU time x an assumed power "
    "per busy core, updated every second (the background is not included)",
}


UNAVAILABLE = "unavailable"


def provenance_rows(run: Run) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per energy figure (method, device, how often its meter was read, flags)
    and the run's other flags, each flag listed once: in the first row that has it,
    the rest under the table. A figure that was not measured has no device and no
    sampling period of its own (the CPU estimate's, copied beside DRAM, read as if the
    estimate had measured it)."""
    shown: set[str] = set()
    rows = []
    for name, p in (run.provenance or {}).items():
        if not (isinstance(p, dict) and "method" in p):
            continue
        measured = p.get("method") not in ("", None, UNAVAILABLE)
        flags = [str(f) for f in p.get("flags") or [] if str(f) not in shown]
        shown.update(flags)
        rows.append(
            {
                "name": name,
                "method": p.get("method") or UNAVAILABLE,
                "device": p.get("device") if measured else None,
                "sampling_period_s": p.get("sampling_period_s") if measured else None,
                "flags": flags,
            }
        )
    others = [str(f) for f in dict.fromkeys(run.flags or []) if str(f) not in shown]
    return rows, others


def sampling_note(hz: Any, rows: list[dict[str, Any]]) -> str:
    """What the trace's rate and the meters' periods are, where they differ."""
    try:
        rate = float(hz)
    except (TypeError, ValueError):
        return ""
    if rate <= 0:
        return ""
    note = (
        f"The charts' trace holds a sample every {1 / rate:.3g} s ({rate:g} Hz, on the "
        "GPU host's clock)."
    )
    slower = [
        f"{figure_label(r['name'])} every {float(r['sampling_period_s']):g} s"
        for r in rows
        if r["sampling_period_s"] and float(r["sampling_period_s"]) > 1 / rate * 1.01
    ]
    if slower:
        note += (
            " The Sampling column is how often each meter was read; one read less often "
            f"than the trace ({', '.join(slower)}) changes the charts only at that pace."
        )
    return note


def _sampled(series: dict[str, list[Any]], key: str) -> bool:
    return any(v is not None for v in series.get(key, []))


def _over_time(
    series: dict[str, list[Any]], markers: list[charts.Marker], cpu_method: str
) -> list[dict[str, Any]]:
    """The run's charts over time, each with a visible title and what it shows: power
    (GPU and CPU together, so one shows the other's scale), then the GPU's utilisation,
    temperature and memory."""
    t = series["t"]
    out: list[dict[str, Any]] = []
    power: list[charts.Series] = []
    notes: list[str] = []
    if _sampled(series, "power_w"):
        power.append(charts.Series("GPU", t, series["power_w"], "#2563eb"))
    if _sampled(series, "cpu_power_w"):
        method = cpu_method if cpu_method in CPU_POWER_NOTES else "rapl"
        short = "CPU (estimate)" if method == "estimate" else f"CPU ({method.upper()})"
        power.append(charts.Series(short, t, series["cpu_power_w"], "#d97706"))
        notes.append(f"CPU power: {CPU_POWER_NOTES[method]}.")
    if power:
        title = " and ".join(s.label.split(" (")[0] for s in power) + " power"
        out.append(_chart(title, power, "power (W)", markers, notes))
    for key, title, unit in (
        ("util_pct", "GPU utilisation", "utilisation (%)"),
        ("temp_c", "GPU temperature", "temperature (°C)"),
        ("mem_mib", "GPU memory", "memory (MiB)"),
    ):
        if _sampled(series, key):
            out.append(_chart(title, [charts.Series(title, t, series[key])], unit, markers, []))
    return out


def _chart(
    title: str,
    lines: list[charts.Series],
    unit: str,
    markers: list[charts.Marker],
    notes: list[str],
) -> dict[str, Any]:
    svg = charts.line_chart(
        lines,
        title=title,
        x_label="time since the run started (s)",
        y_label=unit,
        markers=markers,
        height=190,
    )
    return {"title": title, "svg": svg, "notes": notes}


def _footprint(request: HttpRequest, experiment: Experiment, runs: list[Run]) -> Footprints:
    """``?factors=today``: recompute with the host's factors of today (one query)."""
    today = request.GET.get("factors") == "today"
    host = experiment.host if today and experiment.host_id else None
    return footprints(runs, today=today, host=host)


@login_required
@require_GET
def run_detail(request: HttpRequest, code: str, run: RunIndex) -> HttpResponse:
    return _run_page(request, _run_or_404(request, code, run))


def _run_page(request: HttpRequest, run: Run) -> HttpResponse:
    experiment = run.experiment
    background: list[BackgroundRun] = []
    if experiment.mode == Experiment.Mode.PARALLEL and run.started_at:
        background = selectors.background_runs_between(
            experiment=experiment, start=run.started_at, end=run.ended_at or run.started_at
        )
    trace = bytes(run.trace or b"")
    series = trace_series(trace)
    meta = trace_metadata(trace)
    chart_list = []
    if series is not None:
        markers = _markers(run, background)
        t = series["t"]
        duration = run.duration_s or (t[-1] if t else 0.0)
        markers = [m for m in markers if -1.0 <= m.x <= duration + 1.0]
        chart_list = _over_time(series, markers, str(meta.get("cpu_method", "rapl")))
    log_text, cut = _log_tail(run)
    # Only the measured figures (dicts with a method); flags are listed apart.
    provenance = {
        name: p
        for name, p in (run.provenance or {}).items()
        if isinstance(p, dict) and "method" in p
    }
    rows, other_flags = provenance_rows(run)
    return render(
        request,
        "experiments/run.html",
        {
            "experiment": experiment,
            "run": run,
            "charts": chart_list,
            "has_trace": series is not None,
            "trace_meta": meta,
            "gpu_sampled": series is not None and _sampled(series, "power_w"),
            "background_runs": background,
            "log_text": log_text,
            "log_cut": cut,
            "footprint": _footprint(request, experiment, [run]),
            # What to change where the background fell short (core.coverage's advice).
            "coverage_advice": ((run.provenance or {}).get("coverage") or {}).get("advice", "")
            if run.coverage_verdict and run.coverage_verdict != GOOD
            else "",
            "provenance": provenance,
            "provenance_rows": rows,
            "other_flags": other_flags,
            "sampling_note": sampling_note(meta.get("hz"), rows),
        },
    )


@login_required
@require_GET
def run_log(request: HttpRequest, code: str, run: RunIndex) -> HttpResponseBase:
    found = _run_or_404(request, code, run)
    return _log_download(
        found.log, found.log_tail, f"{found.experiment.code}-run-{label_of(found)}.log"
    )


@login_required
@require_GET
def background_log(request: HttpRequest, code: str, index: int) -> HttpResponseBase:
    experiment = _get_experiment_for_user(request.user, code)
    bg = (
        BackgroundRun.objects.filter(experiment=experiment, index=index).first()
        if index <= selectors.MAX_INT
        else None
    )
    if bg is None:
        raise Http404("No such background run.")
    return _log_download(bg.log, bg.log_tail, f"{experiment.code}-background-{index}.log")


def _log_download(log: FieldFile, tail: str, filename: str) -> HttpResponseBase:
    """The whole stored log; its tail from the row when the artifact store lost it."""
    if log:
        try:
            return FileResponse(
                log.open("rb"),
                as_attachment=True,
                filename=filename,
                content_type="text/plain; charset=utf-8",
            )
        except OSError:
            pass
    response = HttpResponse(tail, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
