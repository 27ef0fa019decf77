from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from experiments.services import experiments_reap_lost


class Command(BaseCommand):
    help = "Mark running experiments whose worker stopped heartbeating as lost."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep reaping until stopped")

    def handle(self, *args: Any, **options: Any) -> None:
        # Four times per heartbeat period: a stale experiment is marked at most a
        # quarter period after its heartbeat went two periods old.
        interval = max(0.25, settings.WATTLAB_HEARTBEAT_SECONDS / 4)
        while True:
            for code in experiments_reap_lost():
                self.stdout.write(f"experiment {code} lost: its worker stopped heartbeating")
            if not options["loop"]:
                return
            connection.close()
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                return
