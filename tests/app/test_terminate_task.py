"""The control task that terminates a recorded process group (issue 9, item 8): it
signals nothing that is not provably the experiment's, on its own host only, and
records why it refused."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
from django.conf import settings

from experiments.models import ProcessGroup
from tests.web import factories
from workers.tasks import terminate_group

pytestmark = pytest.mark.django_db


@pytest.fixture
def stranger():
    """A process Wattlab never started (no marker), in its own group."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    yield process
    process.kill()
    process.wait()


def _group_for(process: subprocess.Popen[bytes], hostname: str) -> ProcessGroup:
    experiment = factories.experiment(None, factories.workload(), status="lost")
    return factories.process_group(
        experiment,
        factories.host(hostname),
        pgid=process.pid,
        leader_pid=process.pid,
        leader_create_time=psutil.Process(process.pid).create_time(),
    )


def test_a_recorded_stranger_is_refused_and_the_reason_kept(stranger):
    # pid, pgid and start time all match the row: only the marker tells it is not ours.
    group = _group_for(stranger, settings.WATTLAB_HOSTNAME)
    result = terminate_group(group.id)
    assert result == "refused: the leader does not carry the experiment's marker"
    time.sleep(0.2)
    assert stranger.poll() is None
    group.refresh_from_db()
    assert group.terminate_result == result and group.ended_at is None


def test_a_group_of_another_host_is_not_signalled_here(stranger):
    group = _group_for(stranger, "some-other-host")
    result = terminate_group(group.id)
    assert result.startswith("refused: the group belongs to some-other-host")
    assert stranger.poll() is None
    group.refresh_from_db()
    assert group.ended_at is None
