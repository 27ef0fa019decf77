from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection

from core.contract import error_line
from experiments.slurm.dispatch import NoSlurm, cli_from_settings, slurm_dispatch


class Command(BaseCommand):
    help = (
        "Submit queued experiments that target Slurm (one sbatch each), follow their "
        "jobs, cancel the jobs of cancelled experiments, and end experiments whose job "
        "ended first. Runs where Slurm's commands work (a login node)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep going until stopped")
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="seconds between passes with --loop (default: half a heartbeat period, "
            "so a job that ends is seen within one)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.WATTLAB_SLURM_ENABLED:
            raise CommandError(
                "WATTLAB_SLURM_ENABLED is off: set it to 1 here and where the web app "
                "runs, so submissions may target slurm"
            )
        interval = options["interval"] or max(0.5, settings.WATTLAB_HEARTBEAT_SECONDS / 2)
        if interval <= 0:
            raise CommandError("--interval must be positive")
        stop = threading.Event()
        if options["loop"]:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda _signum, _frame: stop.set())
        cli = cli_from_settings()
        while True:
            close_old_connections()
            try:
                report = slurm_dispatch(cli=cli)
            except NoSlurm as exc:
                raise CommandError(str(exc)) from None
            except Exception as exc:
                if not options["loop"]:
                    raise CommandError(error_line(exc)) from None
                # The database away, say: one line, and the next pass tries again.
                self.stderr.write(f"slurm_dispatch: {error_line(exc)}; retrying")
                report = None
            if report is not None:
                for line in report.lines:
                    self.stdout.write(line)
            if not options["loop"]:
                if report is not None and report.unavailable:
                    raise CommandError(f"Slurm not reachable: {report.unavailable}")
                return
            if report is not None and report.unavailable:
                self.stderr.write(f"slurm_dispatch: Slurm not reachable: {report.unavailable}")
            connection.close()
            if stop.wait(interval):
                return
