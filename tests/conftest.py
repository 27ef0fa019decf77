"""Shared fixtures.

Database: PostgreSQL when ``DATABASE_URL`` is set (CI: ``make test``), else SQLite; the
broker: Redis when ``REDIS_URL`` is set, else kombu's filesystem transport. Tests that
need a queue run a REAL Celery worker process (never Celery's eager mode) through
the real launcher ``scripts/worker.py``; see :func:`celery_worker_factory`.

A test that uses a worker must use the ``transactional_db`` fixture (or
``@pytest.mark.django_db(transaction=True)``): the worker is another process and sees
only committed rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: ``<repo>/data``: recorded traces and the earlier profiler's files (see data/README.md).
DATA = ROOT / "data"

#: One prefix per test session keeps its messages apart from any other session (or a
#: developer's ``make run``) on the same Redis or broker folder.
QUEUE_PREFIX = f"t{uuid.uuid4().hex[:8]}."


#: What makes a test long, longest kind first: a Slurm cluster's jobs (a time limit of
#: a minute), a browser beside a real worker, then real workers, trainings, servers.
_LONG_MARKERS = ("slurm", "browser", "slow", "queue")
_LONG_FIXTURES = ("celery_worker_factory", "celery_worker_proc", "live_server", "page")


def _length_rank(item: pytest.Item) -> int:
    """0 for the longest kind of test, len(_LONG_MARKERS) for a short one."""
    for rank, marker in enumerate(_LONG_MARKERS):
        if item.get_closest_marker(marker):
            return rank
    names = getattr(item, "fixturenames", ())
    return len(_LONG_MARKERS) - 1 if any(f in names for f in _LONG_FIXTURES) else len(_LONG_MARKERS)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests first: make test hands tests out one at a time to the processes
    of each run (pytest-xdist, --dist load --maxschedchunk 1), so the long ones run side
    by side from the start and the short ones fill in at the end. Otherwise
    pytest-django's order stays (in a transaction, transactional, no database): it only
    matters to tests that expect rows a transactional test's flush removes, and the
    flush runs post_migrate again (content types, permissions); no migration seeds data."""
    rank = {id(item): _length_rank(item) for item in items}
    items.sort(key=lambda item: rank[id(item)])  # stable: the order within is kept


@pytest.fixture(autouse=True, scope="session")
def _session_queue_prefix() -> Iterator[None]:
    from django.conf import settings

    old = settings.WATTLAB_QUEUE_PREFIX
    settings.WATTLAB_QUEUE_PREFIX = QUEUE_PREFIX
    yield
    settings.WATTLAB_QUEUE_PREFIX = old


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    # The SQLite test database lives in WATTLAB_VAR_DIR, which the settings no longer
    # create on import: make it before pytest-django creates the database.
    from django.conf import settings

    Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def examples_dir() -> Path:
    return ROOT / "examples"


@pytest.fixture
def digits_workload(db: None) -> object:
    """The example digits-mlp workload, registered from its YAML file."""
    from experiments.workloads import workload_load

    workload, _created = workload_load(path=ROOT / "examples" / "workloads" / "digits-mlp.yaml")
    return workload


@pytest.fixture
def pretend_workload(db: None) -> object:
    """A pretend training that sleeps (tests/workers/programs/train.py: ``seconds``,
    ``lr`` to mutate, an accuracy line, a success line): for the tests of what happens
    to a run's processes (cancel, a killed worker, time limits, redelivery), which must
    not spend the 2 cores the rest of the suite shares on training. digits-mlp stays
    where a test reads what a real training gives (energy, accuracy, coverage)."""
    from experiments.models import Workload

    return Workload.objects.create(
        name="pretend",
        workdir=str(ROOT / "tests" / "workers" / "programs"),
        argv=["{python}", "train.py"],
        hyperparameters=[
            {
                "name": "seconds",
                "flag": "--seconds",
                "type": "float",
                "default": 0.5,
                "min": 0.1,
                "max": 1000,
            },
            {"name": "lr", "flag": "--lr", "type": "float", "default": 0.1, "min": 0.01, "max": 1},
        ],
        metric_patterns={"accuracy": r"accuracy:\s*([0-9.]+)"},
        success_pattern="Training complete",
    )


@pytest.fixture
def submitter(db: None) -> object:
    """The one superuser, whom `manage.py submit` without --owner gives what it submits
    (as on one person's machine after `make run`)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("cli-user", password="pw-cli-user-123")


def _database_env() -> dict[str, str]:
    """Environment that points a child process at the database this test uses."""
    from django.db import connection

    conf = connection.settings_dict
    if conf["ENGINE"] == "django.db.backends.sqlite3":
        return {"WATTLAB_SQLITE_PATH": str(conf["NAME"]), "DATABASE_URL": ""}
    user = conf.get("USER") or "postgres"
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or 5432
    return {"DATABASE_URL": f"postgres://{user}{password}@{host}:{port}/{conf['NAME']}"}


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a Wattlab child process (manage.py, worker) in a test."""
    from django.conf import settings

    env = dict(os.environ)
    env.update(_database_env())
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "WATTLAB_QUEUE_PREFIX": QUEUE_PREFIX,
            "WATTLAB_ARTIFACTS_DIR": str(settings.MEDIA_ROOT),
            "WATTLAB_SCRATCH_DIR": str(settings.WATTLAB_SCRATCH_DIR),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if not settings.REDIS_URL:
        env["WATTLAB_BROKER_DIR"] = str(settings.BROKER_DIR)
    env.update(extra)
    return env


@dataclass
class WorkerProc:
    """A running ``scripts/worker.py`` (one CPU slot + a control worker [+ reaper])."""

    hostname: str
    process: subprocess.Popen[bytes]
    log_path: Path
    heartbeat_s: float
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the launcher and every Celery process of it (not the trainings,
        which run in their own sessions): a host that died mid-run."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 60.0) -> None:
        """The launcher's own shutdown (cancels what runs here, warm-stops the workers)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the worker's own process group goes too.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)


def _wait_ready(worker: WorkerProc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    wanted = [f"cpu0@{worker.hostname} ready.", f"control@{worker.hostname} ready."]
    while time.monotonic() < deadline:
        text = worker.log()
        if all(w in text for w in wanted):
            return
        if worker.process.poll() is not None:
            raise RuntimeError(f"the worker exited early:\n{text[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"the worker was not ready after {timeout:.0f} s:\n{worker.log()[-3000:]}")


@pytest.fixture
def celery_worker_factory(
    transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., WorkerProc]]:
    """Start real worker launchers: ``start(heartbeat=1.0, reaper=False, hostname=None,
    **env)``. Every worker started is stopped (and its process group killed) at the
    end of the test."""
    started: list[WorkerProc] = []

    def start(
        *,
        heartbeat: float = 1.0,
        reaper: bool = False,
        hostname: str | None = None,
        ready_timeout: float = 90.0,
        **extra_env: str,
    ) -> WorkerProc:
        name = hostname or f"testhost-{uuid.uuid4().hex[:6]}"
        log_path = tmp_path / f"worker-{name}-{len(started)}.log"
        env = child_env(
            WATTLAB_HOSTNAME=name,
            WATTLAB_HEARTBEAT_SECONDS=str(heartbeat),
            WATTLAB_GRACE_SECONDS="3",
            WATTLAB_SAMPLE_HZ="5",
            WATTLAB_IDLE_PROBE_SECONDS="0.5",
            **extra_env,
        )
        argv = [sys.executable, str(ROOT / "scripts" / "worker.py")]
        if reaper:
            argv.append("--reaper")
        with log_path.open("wb") as log_file:
            # Its own session: the test can SIGKILL the whole worker at once.
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProc(name, process, log_path, heartbeat, env)
        started.append(worker)
        _wait_ready(worker, ready_timeout)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def celery_worker_proc(celery_worker_factory: Callable[..., WorkerProc]) -> WorkerProc:
    """One real worker for this host (a CPU slot and a control worker), heartbeat 1 s."""
    return celery_worker_factory()


def run_manage(*args: str, timeout: float = 120.0, **env: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` against the test database, as a child process."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def demo_pair(
    name: str,
    *,
    epochs: int,
    hidden: int,
    background_epochs: int,
    background_hidden: int,
    seed: int = 7,
    sleep: float = 0.0,
    startup_wait: float = 0.5,
    runs_per_config: int = 1,
    restart_delay: float = 0.0,
) -> tuple[str, str]:
    """A small version of ``make run``'s demo: the parallel experiment file and the solo
    one with the same configurations (two learning rates of digits-mlp; the demo itself
    runs each three times). The background restarts at once after each end, so its
    runs cover the foreground windows (a parallel run short of good coverage is left
    out of comparisons)."""
    solo = (
        f"name: {name}-solo\nforeground:\n  workload: digits-mlp\n"
        f"  hyperparameters: {{epochs: {epochs}, hidden: {hidden}}}\n"
        f"  mutate: [learning_rate]\nconfigurations: 2\nseed: {seed}\n"
        f"runs_per_config: {runs_per_config}\n"
        f"sleep_between_runs: {sleep}\ntimeout: 120\n"
    )
    parallel = solo.replace(f"name: {name}-solo", f"name: {name}-parallel") + (
        f"background:\n  workload: digits-mlp\n"
        f"  hyperparameters: {{epochs: {background_epochs}, hidden: {background_hidden}}}\n"
        f"  restart_delay: {restart_delay}\n  startup_wait: {startup_wait}\n"
    )
    return parallel, solo
