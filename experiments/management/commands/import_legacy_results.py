"""Bring the earlier profiler's run history in as imported experiments and runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from experiments.legacy.results import LegacyResultsError, import_results_file


class Command(BaseCommand):
    help = (
        "Import raw_data.csv (or data.csv) of the earlier profiler: one run per row "
        "(second copies merged), read-only; a run already imported from either file is "
        "not added again. Bad rows are listed by line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", type=Path, help="path to raw_data.csv or data.csv")
        parser.add_argument(
            "--timezone",
            default=settings.TIME_ZONE,
            help="time zone of the profiler's timestamps (they carry none); default: TIME_ZONE",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = import_results_file(Path(options["csv"]), timezone=options["timezone"])
        except LegacyResultsError as exc:
            raise CommandError(str(exc)) from None
        for line, message in report.problems:
            self.stderr.write(f"line {line}: {message} (row skipped)")
        for name in report.workloads_created:
            self.stdout.write(
                f"  placeholder workload {name} (inactive; run import_legacy_workloads)"
            )
        for name in sorted(set(report.background_unresolved)):
            self.stdout.write(f"  background {name} has no workload; its name is kept")
        by_prefix = ", ".join(
            f"{prefix or 'same id'} {count}"
            for prefix, count in sorted(report.merged_by_prefix.items())
        )
        for note in report.notes():
            self.stdout.write(note)
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.rows} rows, {report.duplicates} duplicate rows merged"
                + (f" ({by_prefix})" if by_prefix else "")
                + ", "
                f"{report.runs_created} runs imported into "
                f"{report.experiments_created} new experiments, "
                f"{report.runs_already_there} already imported, "
                f"{len(report.problems)} bad rows"
            )
        )
