"""Celery's prefork pool, with the pool child replaced as soon as it has exited.

Each experiment runs in a fresh pool child (one task per child). Celery's AsynPool
learns that a child exited from the child's sentinel pipe. That pipe closes while the
child is still exiting, before ``waitpid`` can reap it, so billiard sometimes finds no
exited child yet. The replacement then waits for the pool's maintenance tick, which
comes every 5 s, and an experiment queued right behind another starts up to 5 s late
(measured in ``docs/benchmarks/queue.md``). A 0.2 s tick closes that window. Each
tick costs one ``waitpid(WNOHANG)`` per child.

Selected by the ``worker_pool`` setting (``WATTLAB_WORKER_POOL``). Celery uses that
setting when the command line asks for the default pool; the control worker's
``--pool solo`` is unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool as PreforkTaskPool

MAINTAIN_EVERY_S: Final = 0.2


class QuickReplaceAsynPool(AsynPool):  # type: ignore[misc]  # celery is untyped
    @property
    def timers(self) -> dict[Callable[[], None], float]:
        return {self.maintain_pool: MAINTAIN_EVERY_S}


class TaskPool(PreforkTaskPool):  # type: ignore[misc]
    Pool = QuickReplaceAsynPool
