"""Register the earlier profiler's training programs as workloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from experiments.legacy.workloads import LegacyConfigError, import_workloads, load_models_config


class Command(BaseCommand):
    help = (
        "Create or update one workload per repository and model of the earlier "
        "profiler's models_config.json (idempotent)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("config", type=Path, help="path to models_config.json")
        parser.add_argument(
            "--root",
            type=Path,
            required=True,
            help="directory holding the repositories (the profiler's working directory)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        root = Path(options["root"]).expanduser().resolve()
        try:
            specs = load_models_config(Path(options["config"]), root=root)
            created, updated = import_workloads(specs)
        except LegacyConfigError as exc:
            raise CommandError(str(exc)) from None
        for spec in specs:
            self.stdout.write(f"  {spec.name}: {' '.join(spec.argv)}")
        self.stdout.write(
            self.style.SUCCESS(f"{created} workloads created, {updated} updated (root {root})")
        )
