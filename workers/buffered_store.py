"""Keep an experiment going through a database outage: writes the store refuses with
:class:`~core.contract.StoreUnavailable` wait in memory, in order, and are written
when the store answers again (retried with a backoff, never more often than the runner
polls). Reads that fail give the safe answer: no cancel request.

    store = BufferedStore(OrmExperimentStore(...), backoff_max=plan.heartbeat_interval)
    outcome = run_experiment(plan, store)
    if not store.drain(outage_limit):             # still down at the end
        store.spool(spool_dir / f"{code}.spool", meta)   # replayed by replay_spool()

A spool file is written and read only by this host's workers, in their own scratch
folder, so pickle (which keeps the dataclasses, datetimes and bytes as they are) is
safe here: it never reads a file that another party could have written.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from core.contract import ExperimentStore, StoreUnavailable, error_line

log = logging.getLogger(__name__)

BACKOFF_START_S: Final = 0.5
SPOOL_SUFFIX: Final = ".spool"

#: (method name, positional arguments) of one write on the wrapped store.
Write = tuple[str, tuple[Any, ...]]


class BufferedStore:
    """An :class:`ExperimentStore` that outlives its store's outages."""

    def __init__(
        self,
        store: ExperimentStore,
        *,
        backoff_max: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.backoff_max = max(BACKOFF_START_S, backoff_max)
        self.clock = clock
        self.pending: list[Write] = []
        self._delay = BACKOFF_START_S
        self._retry_at = float("-inf")
        self._down_since: float | None = None
        #: outages seen and the longest, in seconds (reported in events and the log)
        self.outages = 0
        self.longest_outage_s = 0.0

    # -- state ----------------------------------------------------------------------

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def _failed(self, exc: StoreUnavailable) -> None:
        now = self.clock()
        self._retry_at = now + self._delay
        self._delay = min(self._delay * 2, self.backoff_max)
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            log.warning("store unavailable, buffering writes and retrying: %s", error_line(exc))

    def _recovered(self, written: int) -> None:
        if self._down_since is None:
            return
        length = self.clock() - self._down_since
        self.longest_outage_s = max(self.longest_outage_s, length)
        self._down_since = None
        self._delay = BACKOFF_START_S
        log.warning("store back after %.1f s; wrote %d buffered write(s)", length, written)
        # The heartbeat stopped during the outage: renew it at once, so the reaper never
        # takes a run that survived the outage for a lost one.
        try:
            self.store.heartbeat()
        except StoreUnavailable as exc:
            self._failed(exc)
            return
        self._write(
            "event",
            "store_outage",
            f"the database was unreachable for {length:.1f} s; {written} write(s) were "
            "kept and written when it answered again",
        )

    def _may_try(self) -> bool:
        return not self.down or self.clock() >= self._retry_at

    # -- writing --------------------------------------------------------------------

    def flush(self) -> bool:
        """Write what waits, in order; True when nothing waits any more."""
        if not self.pending and not self.down:
            return True
        if not self._may_try():
            return False
        written = 0
        while self.pending:
            name, args = self.pending[0]
            try:
                getattr(self.store, name)(*args)
            except StoreUnavailable as exc:
                self._failed(exc)
                return False
            self.pending.pop(0)
            written += 1
        self._recovered(written)
        return not self.down

    def drain(self, timeout: float, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Keep retrying for up to ``timeout`` seconds; True when everything is written."""
        deadline = self.clock() + timeout
        while not self.flush():
            now = self.clock()
            if now >= deadline:
                return False
            sleep(max(0.05, min(self._retry_at, deadline) - now))
        return True

    def _write(self, name: str, *args: Any) -> None:
        if self.pending or self.down:
            if name == "run_samples":
                # Only the latest trace of a run matters: it contains the earlier ones.
                self.pending = [w for w in self.pending if w[0] != name or w[1][0] != args[0]]
            self.pending.append((name, args))
            self.flush()
            return
        try:
            getattr(self.store, name)(*args)
        except StoreUnavailable as exc:
            self._failed(exc)
            self.pending.append((name, args))

    def spool(self, path: Path, meta: dict[str, Any]) -> None:
        """Leave the writes still waiting in ``path`` for :func:`replay_spool`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(pickle.dumps({"meta": meta, "writes": self.pending}))
        os.replace(tmp, path)
        log.error(
            "store still unavailable; %d write(s) spooled to %s, replayed when it answers",
            len(self.pending),
            path,
        )

    # -- ExperimentStore --------------------------------------------------------------

    def heartbeat(self) -> None:
        if not self.flush() or not self._may_try():
            return
        try:
            self.store.heartbeat()
        except StoreUnavailable as exc:
            self._failed(exc)

    def cancel_requested(self) -> bool:
        # Unknown while the store is away: keep running (a cancel is seen once it answers).
        if not self.flush():
            return False
        try:
            return self.store.cancel_requested()
        except StoreUnavailable as exc:
            self._failed(exc)
            return False

    def group_started(self, group: Any) -> None:
        self._write("group_started", group)

    def group_ended(self, group: Any, reason: str) -> None:
        self._write("group_ended", group, reason)

    def run_started(self, key: Any, hyperparameters: dict[str, Any], started_at: Any) -> None:
        self._write("run_started", key, hyperparameters, started_at)

    def run_samples(self, key: Any, trace: bytes) -> None:
        self._write("run_samples", key, trace)

    def run_finished(self, result: Any) -> None:
        self._write("run_finished", result)

    def background_run_started(self, record: Any) -> None:
        self._write("background_run_started", record)

    def background_run_finished(self, record: Any) -> None:
        self._write("background_run_finished", record)

    def event(self, kind: str, message: str) -> None:
        self._write("event", kind, message)

    def experiment_ended(self, status: str, message: str) -> None:
        self._write("experiment_ended", status, message)


def replay_spool(directory: Path, store_for: Callable[[dict[str, Any]], ExperimentStore]) -> int:
    """Write every spooled file's writes through ``store_for(meta)``, oldest first.
    A file is removed once all its writes are in; on an outage the rest stay for the
    next call. Returns the number of writes made."""
    written = 0
    try:
        files = sorted(directory.glob(f"*{SPOOL_SUFFIX}"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return 0
    for path in files:
        data = pickle.loads(path.read_bytes())  # noqa: S301 - our own spool, see above
        writes: list[Write] = list(data["writes"])
        store = store_for(data["meta"])
        while writes:
            name, args = writes[0]
            try:
                getattr(store, name)(*args)
            except StoreUnavailable:
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(pickle.dumps({"meta": data["meta"], "writes": writes}))
                os.replace(tmp, path)
                return written
            writes.pop(0)
            written += 1
        path.unlink()
        log.warning("replayed %s: the experiment's remaining writes are in", path.name)
    return written
