from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from experiments.management.commands._lookup import experiment_by_code
from experiments.services import experiment_cancel


class Command(BaseCommand):
    help = "Cancel an experiment: a queued one at once, a running one within a second."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("code")

    def handle(self, *args: Any, **options: Any) -> None:
        experiment = experiment_by_code(options["code"])
        if experiment_cancel(experiment=experiment, by=None):
            self.stdout.write(f"cancel requested for {experiment.code} ({experiment.status})")
        else:
            self.stdout.write(f"{experiment.code} is {experiment.status}: nothing to cancel")
