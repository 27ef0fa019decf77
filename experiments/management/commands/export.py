from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from experiments.exports import experiment_csv, experiment_document
from experiments.legacy.export import legacy_csv
from experiments.management.commands._lookup import experiment_by_code


class Command(BaseCommand):
    help = (
        "Print an experiment's runs as JSON (the submit --json document), CSV, or CSV with "
        "the earlier profiler's column names (legacy-csv), so its analysis scripts keep working."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("code")
        parser.add_argument("--format", choices=["json", "csv", "legacy-csv"], default="json")

    def handle(self, *args: Any, **options: Any) -> None:
        experiment = experiment_by_code(options["code"])
        if options["format"] == "csv":
            self.stdout.write(experiment_csv(experiment), ending="")
        elif options["format"] == "legacy-csv":
            self.stdout.write(legacy_csv([experiment]), ending="")
        else:
            self.stdout.write(json.dumps(experiment_document(experiment), indent=2))
