from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from experiments.workloads import workloads_load_dir


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = "Register (or update) the workloads described by the YAML files in DIR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        directory: Path = options["directory"]
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a directory")
        loaded, failed = workloads_load_dir(directory=directory)
        for name in loaded:
            self.stdout.write(f"loaded workload {name}")
        for path, errors in failed.items():
            for error in errors:
                self.stderr.write(f"{path}: {error}")
        if failed:
            raise CommandError(f"{len(failed)} workload file(s) rejected")
        if not loaded:
            raise CommandError(f"no *.yaml workload files in {directory}")
