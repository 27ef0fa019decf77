"""A database outage during an experiment: writes wait in order and are written once
it answers, or spooled and replayed later. The store here is a double of the database
that refuses every call while "down" (the real one: tests/test_faults.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.contract import RunKey, StoreUnavailable
from tests.workers.conftest import program
from tests.workers.test_runner import RecordingStore, background, fg, make_plan, no_temp_dir_left
from workers.buffered_store import BufferedStore, replay_spool
from workers.energy.session import MeterSet, open_meters
from workers.procgroup import find_marked
from workers.runner import run_experiment


class FlakyStore(RecordingStore):
    """Records what got through; refuses everything while ``down`` (or ``down_when``)."""

    def __init__(self, down_when: Any = None) -> None:
        super().__init__()
        self.down = False
        self.down_when = down_when
        self.refused = 0

    def _check(self) -> None:
        if self.down or (self.down_when is not None and self.down_when()):
            self.refused += 1
            raise StoreUnavailable("connection refused")

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name in RecordingStore.__dict__ and not name.startswith("_") and callable(attr):
            if name not in {"names", "of"}:

                def guarded(*args: Any) -> Any:
                    self._check()
                    return attr(*args)

                return guarded
        return attr


@pytest.fixture
def synthetic_meters() -> Iterator[MeterSet]:
    # No GPU here: the synthetic constant-power double, labelled as such in its report.
    m = open_meters([0], double="synthetic:100", try_perf=False)
    yield m
    m.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_writes_during_an_outage_wait_in_order_and_are_written_once() -> None:
    db, clock = FlakyStore(), Clock()
    store = BufferedStore(db, backoff_max=2.0, clock=clock)
    key = RunKey(0, 0, 1)
    store.event("a", "before")
    db.down = True
    store.run_started(key, {"lr": 1}, "t0")
    store.run_samples(key, b"1")
    store.run_samples(key, b"12")  # the later trace replaces the earlier one
    store.event("b", "during")
    assert store.cancel_requested() is False  # unknown while down: keep running
    store.heartbeat()
    assert db.names() == ["event"] and store.down

    db.down = False
    store.heartbeat()  # too early: the backoff holds the retry back
    assert db.names() == ["event"]
    clock.now += 5
    store.heartbeat()

    assert db.names()[:4] == ["event", "run_started", "run_samples", "event"]
    assert db.of("run_samples") == [(key, b"12")]
    # The heartbeat is renewed at once, and the outage is reported to the experiment.
    assert "heartbeat" in db.names()
    assert db.of("event")[-1][0] == "store_outage"
    assert not store.pending and not store.down


def test_a_long_outage_is_spooled_and_replayed_when_the_store_answers(tmp_path: Path) -> None:
    db = FlakyStore()
    store = BufferedStore(db, backoff_max=0.1)
    db.down = True
    store.run_finished("result-1")
    store.experiment_ended("succeeded", "")
    started = time.monotonic()
    assert store.drain(0.5) is False
    assert 0.4 < time.monotonic() - started < 2.0
    store.spool(tmp_path / "exp.spool", {"experiment_id": 7})

    metas: list[dict[str, Any]] = []

    def store_for(meta: dict[str, Any]) -> FlakyStore:
        metas.append(meta)
        return db

    assert replay_spool(tmp_path, store_for) == 0  # still down: the file stays
    assert (tmp_path / "exp.spool").exists()
    db.down = False
    assert replay_spool(tmp_path, store_for) == 2
    assert db.names() == ["run_finished", "experiment_ended"]
    assert metas[-1] == {"experiment_id": 7}
    assert not list(tmp_path.glob("*.spool"))
    assert replay_spool(tmp_path, store_for) == 0  # written once, not twice


def test_a_parallel_experiment_runs_through_an_outage_and_loses_nothing(
    marker: str, tmp_path: Path, synthetic_meters: MeterSet
) -> None:
    # The database is away from 1 s to 4 s: during the startup wait, the first run and
    # some background runs. The trainings go on; every write arrives afterwards.
    t0 = time.monotonic()
    db = FlakyStore(down_when=lambda: 1.0 <= time.monotonic() - t0 < 4.0)
    runs = [fg(tmp_path, program("train.py", "--seconds", "1.5"), repeat=i) for i in range(2)]
    plan = make_plan(
        marker, tmp_path, runs,
        background=background(tmp_path, program("sleeper.py", "0.6"), startup_wait=1.0),
    )  # fmt: skip
    store = BufferedStore(db, backoff_max=0.5)

    outcome = run_experiment(plan, store, meters=synthetic_meters)
    assert store.drain(10)

    assert outcome.status == "succeeded", outcome.message
    assert db.refused > 0 and store.outages >= 1
    finished = db.of("run_finished")
    assert [(r.key.repeat_index, r.status) for r in finished] == [
        (0, "succeeded"),
        (1, "succeeded"),
    ]
    starts = [r.index for r in db.of("background_run_started")]
    ends = [r.index for r in db.of("background_run_finished")]
    assert starts == sorted(set(starts)) and starts[0] == 1
    assert sorted(set(ends)) == starts  # every background run started and ended, once
    assert len(ends) == len(starts)
    assert db.of("experiment_ended") == [("succeeded", "")]
    assert db.names()[-1] == "experiment_ended"
    assert find_marked(marker) == []
    assert no_temp_dir_left(marker)
