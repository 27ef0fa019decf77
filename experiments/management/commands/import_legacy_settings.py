"""Turn one of the earlier profiler's experiment files into Wattlab experiments."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from rich.console import Console
from rich.table import Table

from experiments import services
from experiments.legacy.experiment_files import LegacySettingsError, load_settings
from experiments.management.commands._lookup import owner_by_name, submitting_owner


class Command(BaseCommand):
    help = (
        "Show the experiments one of the profiler's settings/*.json files describes; "
        "with --submit, queue them (all or none)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the profiler's experiment file (JSON)")
        parser.add_argument("--submit", action="store_true", help="queue the experiments")
        parser.add_argument(
            "--owner",
            help="username that will own them (with --submit; default: the user named by "
            "WATTLAB_OWNER, else the only superuser)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=3 * 3600.0,
            help="seconds one run may take (the profiler had no limit; default 3 h)",
        )
        parser.add_argument(
            "--sleep", type=float, default=60.0, help="seconds between runs (default 60)"
        )
        parser.add_argument("--target", default="any", help="any, HOST or HOST:GPU")
        parser.add_argument(
            "--model-alias",
            action="append",
            default=[],
            metavar="OLD=NEW",
            help="read model OLD as NEW (a model renamed in the registry since); repeatable",
        )

    @staticmethod
    def _aliases(raw: list[str]) -> dict[str, str]:
        aliases: dict[str, str] = {}
        for item in raw:
            old, sep, new = item.partition("=")
            if not sep or not old.strip() or not new.strip():
                raise CommandError(f"--model-alias: {item!r} is not OLD=NEW")
            aliases[old.strip()] = new.strip()
        return aliases

    def handle(self, *args: Any, **options: Any) -> None:
        # Submitted experiments belong to someone, as with `submit` (see submitting_owner).
        owner = (
            submitting_owner(options["owner"])[0]
            if options["submit"]
            else owner_by_name(options["owner"])
        )
        aliases = self._aliases(options["model_alias"])
        try:
            planned = load_settings(
                Path(options["file"]),
                timeout=options["timeout"],
                sleep_between_runs=options["sleep"],
                target=options["target"],
                model_aliases=aliases,
            )
        except LegacySettingsError as exc:
            raise CommandError("\n".join(exc.errors)) from None

        table = Table(title=f"{options['file']}: {len(planned)} experiments")
        for column in ("entry", "name", "workload", "mode", "mutate", "configs", "runs/config",
                       "background", "new configs", "problems"):  # fmt: skip
            table.add_column(column)
        problems: list[str] = []
        notes: dict[int, list[str]] = {}
        for item in planned:
            preview = services.experiment_plan_preview(spec=item.spec, legacy_file=True)
            issues = [f"{key}: {m}" for key, msgs in preview.errors.items() for m in msgs]
            problems += [f"experiments[{item.index}]: {issue}" for issue in issues]
            notes[item.index] = [
                *item.readings,
                *item.warnings,
                *(
                    f"experiments[{item.index}].{key}: {m}"
                    for key, msgs in preview.warnings.items()
                    for m in msgs
                ),
            ]
            spec = item.spec
            table.add_row(
                str(item.index),
                spec.name,
                spec.foreground.workload,
                item.mode,
                ", ".join(spec.foreground.mutate) or "-",
                str(spec.configurations),
                str(spec.runs_per_config),
                spec.background.workload if spec.background else "-",
                "unlimited" if preview.available is None else str(preview.available),
                "; ".join(issues) or "ok",
            )
        buffer = io.StringIO()
        Console(file=buffer, width=160, force_terminal=False).print(table)
        self.stdout.write(buffer.getvalue())
        # How entries were read and what was dropped or is unusual, in full (the
        # table has no room): these lines are also the submitted experiments' events.
        for index in sorted(notes):
            for note in notes[index]:
                self.stdout.write(f"  note: {note}")
        if problems:
            raise CommandError("\n".join(problems))
        if not options["submit"]:
            self.stdout.write("Nothing submitted; run again with --submit to queue these.")
            return
        created = []
        try:
            with transaction.atomic():
                for item in planned:
                    try:
                        experiment = services.experiment_submit(
                            owner=owner, spec=item.spec, source="legacy", legacy_file=True
                        )
                        for note in notes[item.index]:
                            services.experiment_event(
                                experiment_id=experiment.id, kind="legacy_import", message=note
                            )
                        created.append(experiment)
                    except ValidationError as exc:
                        detail = "; ".join(
                            f"{k}: {m}" for k, msgs in exc.message_dict.items() for m in msgs
                        )
                        raise CommandError(f"experiments[{item.index}]: {detail}") from None
        except CommandError:
            raise
        for experiment in created:
            self.stdout.write(f"  queued {experiment.name} ({experiment.code})")
        self.stdout.write(self.style.SUCCESS(f"{len(created)} experiments submitted"))
