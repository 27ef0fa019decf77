from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections, connection

from core.contract import error_line
from experiments.services import experiments_dispatch_pending, experiments_reap_lost

log = logging.getLogger("wattlab.reaper")

#: After the reaper itself could not reach the database, it waits this many heartbeat
#: periods of good connection before it marks anything lost: the workers were cut off
#: too, and need a period or two to write their buffered heartbeats.
RECOVERY_PERIODS = 3


class Command(BaseCommand):
    help = (
        "Mark running experiments whose worker stopped heartbeating as lost, and send "
        "queued experiments whose message never reached the broker."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep reaping until stopped")

    def handle(self, *args: Any, **options: Any) -> None:
        period = settings.WATTLAB_HEARTBEAT_SECONDS
        # Four times per heartbeat period: a stale experiment is marked at most a
        # quarter period after its heartbeat went two periods old.
        interval = max(0.25, period / 4)
        hold_until = 0.0  # no reaping before this (monotonic): just back from an outage
        failures = 0
        while True:
            try:
                self._once(reap=time.monotonic() >= hold_until)
            except Exception as exc:
                if not options["loop"]:
                    raise
                failures += 1
                self.stderr.write(f"reaper: {error_line(exc)} (failure {failures}; retrying)")
                hold_until = float("inf")
                self._drop_connection()
                # Back off while it lasts, never longer than a heartbeat period.
                if not self._sleep(min(period, max(interval, 0.25 * 2**failures))):
                    return
                continue
            if failures:
                self.stderr.write(f"reaper: the database answers again after {failures} failure(s)")
                failures = 0
                hold_until = time.monotonic() + RECOVERY_PERIODS * period
            if not options["loop"]:
                return
            connection.close()
            if not self._sleep(interval):
                return

    def _once(self, *, reap: bool) -> None:
        close_old_connections()
        experiments_dispatch_pending()
        if not reap:
            return
        for code in experiments_reap_lost():
            self.stdout.write(f"experiment {code} lost: its worker stopped heartbeating")

    @staticmethod
    def _drop_connection() -> None:
        try:
            connection.close()
        except Exception:  # already broken: nothing to close
            log.debug("closing a broken connection failed", exc_info=True)

    @staticmethod
    def _sleep(seconds: float) -> bool:
        try:
            time.sleep(seconds)
        except KeyboardInterrupt:
            return False
        return True
