from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

from core.runlabel import label_of
from experiments import summary
from experiments.expfile import (
    MAX_TEXT_BYTES,
    ExperimentFileError,
    decode_experiment_bytes,
    experiment_file_from_dict,
    parse_experiment_text,
)
from experiments.exports import experiment_document
from experiments.management.commands._lookup import submitting_owner
from experiments.models import BackgroundRun, Experiment, Run
from experiments.services import (
    SAVED_NOT_SENT,
    experiment_cancel,
    experiment_plan_preview,
    experiment_submit,
)

POLL_SECONDS = 0.5


class Command(BaseCommand):
    help = "Validate, store and enqueue an experiment file (YAML or JSON)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--wait", action="store_true", help="show progress until it ends")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument(
            "--owner",
            default="",
            help="username that owns the experiment (default: the user named by "
            "WATTLAB_OWNER, else the only superuser)",
        )
        parser.add_argument(
            "--skip-configurations-run",
            action="store_true",
            help="draw only configurations this workload has not run in this mode "
            "(the file's skip_configurations_run: true)",
        )
        parser.add_argument(
            "--configurations-from",
            metavar="CODE",
            help="run the configurations of this experiment (the file's configurations_from)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_TEXT_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror or exc}") from None
        try:
            spec = parse_experiment_text(decode_experiment_bytes(data), filename=path.name)
        except ExperimentFileError as exc:
            raise CommandError(_lines(path, exc.errors)) from None
        changes: dict[str, Any] = {}
        if options["skip_configurations_run"]:
            changes["skip_configurations_run"] = True
        if options["configurations_from"]:
            changes["configurations_from"] = options["configurations_from"]
        if changes:
            # Through the file's own checks, as if the keys were written in it.
            try:
                spec = experiment_file_from_dict({**spec.model_dump(exclude_unset=True), **changes})
            except ExperimentFileError as exc:
                raise CommandError(_lines(path, exc.errors)) from None
        try:
            owner, why = submitting_owner(options["owner"])
        except CommandError:
            # What is wrong with the file comes first: fixing the owner alone would only
            # lead to those errors next.
            problems = experiment_plan_preview(spec=spec).errors
            if problems:
                errors = [f"{key}: {m}" for key, msgs in problems.items() for m in msgs]
                raise CommandError(_lines(path, errors)) from None
            raise
        options["owner_reason"] = why
        waits = bool(options["wait"] or options["json"])
        # From the moment the experiment may exist, Ctrl-C only sets a flag, which the
        # wait loop reads once per poll (see _wait). Installed before the save: a worker
        # can start the run before experiment_submit returns, and a Ctrl-C there must
        # still ask to cancel (in a process started with SIGINT ignored, as background
        # jobs are, it would otherwise be lost).
        interrupted = threading.Event()
        if waits:
            previous = signal.signal(signal.SIGINT, lambda _signum, _frame: interrupted.set())
        try:
            self._submit_and_wait(path, spec, owner, options, interrupted)
        finally:
            if waits:
                signal.signal(signal.SIGINT, previous)

    def _submit_and_wait(
        self,
        path: Path,
        spec: Any,
        owner: Any,
        options: dict[str, Any],
        interrupted: threading.Event,
    ) -> None:
        try:
            experiment = experiment_submit(owner=owner, spec=spec, source="cli")
        except ValidationError as exc:
            errors = [f"{key}: {m}" for key, msgs in exc.message_dict.items() for m in msgs]
            raise CommandError(_lines(path, errors)) from None
        out = sys.stderr if options["json"] else sys.stdout
        for key, messages in experiment.notes.items():
            for message in messages:
                print(f"{path}: note: {key}: {message}", file=out, flush=True)
        runs = experiment.total_runs
        print(
            f"submitted {experiment.name} ({experiment.mode}): {experiment.code}, "
            f"{runs} run{'s' if runs != 1 else ''}, owner {owner.get_username()} "
            f"({options['owner_reason']})",
            file=out,
            flush=True,
        )
        if experiment.queue_error:
            print(f"{SAVED_NOT_SENT} ({experiment.queue_error})", file=out, flush=True)
        if not (options["wait"] or options["json"]):
            return
        experiment = self._wait(experiment, out, interrupted)
        if options["json"]:
            self.stdout.write(json.dumps(experiment_document(experiment), indent=2))
        else:
            print(f"{experiment.name}: {experiment.status} {experiment.error}".rstrip(), file=out)
            if experiment.slurm_display:
                print(f"Slurm {experiment.slurm_display}", file=out)
            print_summary(experiment, out)
        if experiment.status != Experiment.Status.SUCCEEDED:
            sys.exit(1)

    def _wait(self, experiment: Experiment, out: Any, interrupted: threading.Event) -> Experiment:
        """Progress until the experiment ends. ``interrupted`` is set by the SIGINT
        handler (installed by handle): a KeyboardInterrupt raised wherever the main
        thread happens to be (inside a database query, or inside rich's live display
        while its refresh thread holds the console) could leave either stuck.

        On a terminal the progress is redrawn in place. Elsewhere (a pipe, a log file,
        CI) nothing can be redrawn: each change is a whole line of its own, printed
        when more than the clock changed."""
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        live = (
            Live(console=console, refresh_per_second=4, transient=False)
            if console.is_terminal
            else None
        )
        last = ""
        if live is not None:
            live.start()
        try:
            while True:
                experiment.refresh_from_db()
                text = _progress(experiment)
                if live is not None:
                    live.update(text)
                elif _CLOCK.sub("", text) != last:
                    last = _CLOCK.sub("", text)
                    console.print(text, soft_wrap=True)
                if not experiment.is_active:
                    return experiment
                connection.close()
                _sleep_unless(interrupted, POLL_SECONDS)
                if not interrupted.is_set():
                    continue
                interrupted.clear()
                if live is not None:
                    live.stop()
                # A second Ctrl-C at the prompt answers "no".
                handler = signal.signal(signal.SIGINT, signal.default_int_handler)
                try:
                    cancel = _confirm(console, experiment)
                finally:
                    signal.signal(signal.SIGINT, handler)
                if not cancel:
                    console.print(
                        f"still {experiment.status}; follow it with "
                        f"`manage.py export {experiment.code}`"
                    )
                    sys.exit(130)
                experiment_cancel(experiment=experiment, by=None)
                console.print("cancel requested; waiting for the worker to stop it")
                if live is not None:
                    live.start()
        finally:
            if live is not None:
                live.stop()


#: The parts of the progress text that change every second by themselves.
_CLOCK = re.compile(r"\d+ s elapsed|running for \d+ s")


def _sleep_unless(flag: threading.Event, seconds: float) -> None:
    """Sleep in short steps, returning early once ``flag`` is set (by the SIGINT
    handler, which runs between two of them)."""
    deadline = time.monotonic() + seconds
    while not flag.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.1, left))


def print_summary(experiment: Experiment, out: Any) -> None:
    """The answer: every run, then parallel against solo where the history has both."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=max(Console(file=out).width, 140))
    rows, vary, fixed = summary.run_rows(experiment)
    if not rows:
        return
    table = Table(title=f"{experiment.name} ({experiment.mode}): runs", title_justify="left")
    for name in ("run", ", ".join(vary) or "hyperparameters", "status", "duration"):
        table.add_column(name)
    for name in ("GPU energy", "CPU energy"):
        table.add_column(name, justify="right")
    table.add_column("coverage")
    table.add_column("metrics")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if fixed:
        console.print("all runs: " + ", ".join(f"{k}={v}" for k, v in fixed.items()))
    figure = summary.best_figure(experiment)
    answer = summary.versus(experiment, figure)
    if not any(row.paired for row in answer.rows):
        other = "solo" if experiment.mode == Experiment.Mode.PARALLEL else "parallel"
        console.print(
            f"Parallel against solo: no finished {other} run of these configurations "
            f"counted yet; run them {other} with `configurations_from: {experiment.code}` "
            '(or the experiment page\'s "same configurations, other mode").'
        )
    if answer.left_out:
        console.print(answer.left_out_text + ".")
    versus = Table(
        title=f"Parallel against solo on {figure.label}: medians with 95 % intervals "
        f"(order statistics), every finished run of these configurations "
        f"({answer.coverage_rule_text})",
        title_justify="left",
    )
    for name in (", ".join(vary) or "configuration", "solo", "parallel"):
        versus.add_column(name)
    versus.add_column("parallel / solo", justify="right")
    versus.add_column("p (Mann-Whitney)", justify="right")
    versus.add_column("verdict")
    for row in summary.versus_rows(answer, vary):
        versus.add_row(*row)
    console.print(versus)
    # The answer last: what sharing costs, as Compare's and the report's headline.
    sharing = Table(
        title="What sharing costs: parallel / solo, ratios of medians with 95 % intervals",
        title_justify="left",
    )
    for name in summary.sharing_header(answer):
        sharing.add_column(name)
    for row in summary.sharing_rows(answer, vary):
        sharing.add_row(*row)
    console.print(sharing)
    if answer.cannot_show:
        console.print(answer.cannot_show)


def _confirm(console: Any, experiment: Experiment) -> bool:
    try:
        answer = console.input(f"\nCancel {experiment.name} ({experiment.code})? [y/N] ")
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in {"y", "yes"}


def _progress(experiment: Experiment) -> str:
    now = timezone.now()
    runs = Run.objects.filter(experiment=experiment)
    current = runs.filter(status=Run.Status.RUNNING).first()
    covered = [r.coverage_percent for r in runs if r.coverage_percent is not None]
    background = BackgroundRun.objects.filter(experiment=experiment).count()
    elapsed = (now - experiment.started_at).total_seconds() if experiment.started_at else 0.0
    lines = [
        f"[bold]{experiment.name}[/] {experiment.status} - "
        f"{experiment.runs_done}/{experiment.total_runs} runs done, {elapsed:.0f} s elapsed"
    ]
    if experiment.slurm_display:
        lines.append(f"  Slurm {experiment.slurm_display}")
    if current is not None and current.started_at is not None:
        run_elapsed = (now - current.started_at).total_seconds()
        lines.append(
            f"  run {label_of(current)} running for {run_elapsed:.0f} s: {current.hyperparameters}"
        )
    if experiment.mode == Experiment.Mode.PARALLEL:
        lines.append(
            f"  background runs: {background}; coverage so far: "
            + (", ".join(f"{c:.1f} %" for c in covered) or "-")
        )
    return "\n".join(lines)


def _lines(path: Path, errors: list[str]) -> str:
    return f"{path} is not a valid experiment file:\n" + "\n".join(f"  {e}" for e in errors)
