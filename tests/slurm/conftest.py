"""A real one-node Slurm cluster for the tests of experiments on Slurm.

One cluster per pytest process (session scope), started the way ``make test`` starts
its throwaway servers (``scripts/slurm_cluster.py``: munged, slurmctld and slurmd from
a temporary folder, on free ports, stopped and removed afterwards), so the xdist
workers and the Makefile's two runs each have their own and never meet. Where the
programs are missing, or the tests do not run as root, the tests are skipped with the
reason (``.ci/run`` installs ``slurm-wlm munge``; CI runs as root).

The dispatcher runs in the test process (one pass at a time, :class:`Dispatcher`), its
``sbatch`` with the environment a Wattlab child process of the test gets: the jobs'
workers (``scripts/slurm_job.py``) reach the test database with it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from experiments.models import Experiment
from experiments.slurm.cli import SlurmCli
from experiments.slurm.dispatch import PassReport, slurm_dispatch
from tests.conftest import ROOT, child_env

sys.path.insert(0, str(ROOT / "scripts"))
import slurm_cluster  # noqa: E402

#: A partition that takes only the ``research`` account: the cluster keeps no
#: accounting database, so Slurm knows no account at all and a job there waits with
#: "Job's account not known" for ever (the test of an account one may not charge).
RESTRICTED = {"restricted": "AllowAccounts=research MaxTime=INFINITE"}
#: The tests' workers: a heartbeat of 1 s, a short grace, short idle probe.
WORKER_ENV = {
    "WATTLAB_HEARTBEAT_SECONDS": "1",
    "WATTLAB_GRACE_SECONDS": "2",
    "WATTLAB_SAMPLE_HZ": "5",
    "WATTLAB_IDLE_PROBE_SECONDS": "0.2",
    "WATTLAB_WORKER_LOGLEVEL": "INFO",
}


@pytest.fixture(scope="session")
def slurm_cluster_session() -> Iterator[slurm_cluster.SlurmCluster]:
    reason = slurm_cluster.why_not()
    if reason:
        pytest.skip(f"no Slurm cluster here: {reason}")
    # KillWait above the workers' grace: a job's worker stops its trainings itself.
    with slurm_cluster.throwaway_slurm(partitions=RESTRICTED, kill_wait=8) as cluster:
        yield cluster


@dataclass(repr=False)
class Dispatcher:
    """``manage.py slurm_dispatch``'s passes, run by the test when it wants them."""

    cli: SlurmCli
    cluster: slurm_cluster.SlurmCluster
    log_dir: Path
    reports: list[PassReport]

    def once(self) -> PassReport:
        report = slurm_dispatch(cli=self.cli)
        self.reports.append(report)
        return report

    def until(
        self, predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.3
    ) -> None:
        """Passes every ``every`` s (what ``--loop`` does) until ``predicate()``."""
        deadline = time.monotonic() + timeout
        while True:
            self.once()
            if predicate():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self}")
            time.sleep(every)

    def job_log(self, job_id: str) -> str:
        try:
            return (self.log_dir / f"wattlab-{job_id}.out").read_text(errors="replace")
        except OSError:
            return "(no output)"

    def squeue(self) -> str:
        return self.cluster.client("squeue", "--states=all", "--format=%i %T %r %N").stdout

    def __repr__(self) -> str:
        lines = [line for report in self.reports for line in report.lines]
        jobs = [e.slurm_job_id for e in Experiment.objects.exclude(slurm_job_id="")]
        logs = "\n".join(f"--- job {j}:\n{self.job_log(j)[-2500:]}" for j in jobs)
        return "dispatcher:\n" + "\n".join(lines[-20:]) + f"\nsqueue:\n{self.squeue()}\n{logs}"


@pytest.fixture
def slurm_settings(settings: Any, tmp_path: Path) -> Any:
    settings.WATTLAB_SLURM_ENABLED = True
    settings.WATTLAB_SLURM_LOG_DIR = tmp_path / "slurm-logs"
    settings.WATTLAB_SLURM_SIGNAL_LEAD_SECONDS = 0
    return settings


@pytest.fixture
def dispatcher(
    slurm_cluster_session: slurm_cluster.SlurmCluster,
    slurm_settings: Any,
    transactional_db: None,
    tmp_path: Path,
) -> Iterator[Dispatcher]:
    env = child_env(**slurm_cluster_session.env, **WORKER_ENV)
    cli = SlurmCli(env=env, timeout=30.0)
    yield Dispatcher(cli, slurm_cluster_session, Path(slurm_settings.WATTLAB_SLURM_LOG_DIR), [])
    # A test's jobs end with it: the next one finds the node free.
    ids = [e.slurm_job_id for e in Experiment.objects.exclude(slurm_job_id="")]
    if ids:
        cli.cancel(ids)
