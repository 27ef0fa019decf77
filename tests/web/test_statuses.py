"""Run statuses are spelled once: the engine's outcomes (core.contract.RunStatus) and
the app's Run.Status agree, and the app adds only the two states before an ending."""

from __future__ import annotations

from typing import get_args

from core.contract import RunStatus
from experiments.models import Run


def test_the_app_stores_every_outcome_the_engine_reports_and_nothing_else_that_ends():
    engine = set(get_args(RunStatus))
    app = set(Run.Status.values)
    unfinished = {str(s) for s in Run.UNFINISHED_STATUSES}
    assert unfinished == {"pending", "running"}
    assert app == engine | unfinished
    assert not engine & unfinished
