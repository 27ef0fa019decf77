"""What a new user does, in Debian's chromium against a live server and a REAL Celery
worker running real (tiny) trainings: submit through the form, watch it live, open a
run, compare; cancel another and see its processes gone; as staff, terminate an
orphaned process group from the admin. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from core.contract import ENV_MARKER, ENV_ROLE
from experiments.models import Experiment, Host, ProcessGroup
from tests.browser.conftest import login, shoot
from tests.conftest import DATA, WorkerProc
from workers.procgroup import find_marked

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.backends]

EXPERIMENT_PAGE = re.compile(r".*/experiments/[0-9a-f-]{36}/$")

REPLAY_TRACE = DATA / "traces" / "rtx3080" / "MRT-OAST_default_035_parallel"

# The pretend training (it sleeps): what is tested is that cancelling ends its processes.
LONG_PARALLEL = """name: long parallel, to cancel
foreground:
  workload: pretend
  hyperparameters: {seconds: 1000}
timeout: 600
background:
  workload: pretend
  hyperparameters: {seconds: 1000}
  startup_wait: 0.5
"""


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _worker(factory: Callable[..., WorkerProc]) -> WorkerProc:
    # A labelled replay of a recorded RTX 3080 trace stands in for NVML (no GPU here).
    env = {"WATTLAB_METER_DOUBLE": str(REPLAY_TRACE)} if REPLAY_TRACE.is_dir() else {}
    return factory(**env)


# On SQLite the web app and a worker writing one file are make run's own tests (test_run_script).
@pytest.mark.one_backend
def test_a_new_user_submits_a_parallel_experiment_watches_it_and_compares_runs(
    digits_workload, celery_worker_factory, live_server, page
):
    _worker(celery_worker_factory)
    get_user_model().objects.create_user("nina", password="pw-nina-12345")
    login(page, live_server, "nina", "pw-nina-12345")

    page.click("text=New experiment")
    page.fill("#id_name", "first parallel study")
    page.select_option("#id_workload", "digits-mlp")
    page.wait_for_selector("#id_hp__epochs")  # htmx swapped the hyperparameter fieldset in
    page.fill("#id_hp__epochs", "30")
    page.fill("#id_hp__hidden", "256")
    page.check("#id_mutate__learning_rate")
    page.fill("#id_hp__learning_rate", "")
    page.fill("#id_configurations", "2")
    page.fill("#id_seed", "11")
    page.fill("#id_sleep_between_runs", "0.5")
    page.fill("#id_timeout", "120")
    # The configurations it runs, once the preview of the filled form has come back (a
    # preview of an earlier state, the workload's defaults, may show first).
    page.wait_for_selector("#plan-preview #planned")
    expect(page.locator("#plan-preview")).to_contain_text("configurations in the space")
    expect(page.locator("#planned tbody tr")).to_have_count(2)
    page.check("#id_parallel")
    page.select_option("#id_bg_workload", "digits-mlp")
    page.wait_for_selector("#id_bghp__epochs")
    page.fill("#id_bghp__epochs", "50")
    page.fill("#id_bghp__hidden", "256")
    page.fill("#id_restart_delay", "0.1")
    page.fill("#id_startup_wait", "1.5")
    page.press("#id_startup_wait", "Tab")  # the change event: the plan preview refreshes
    page.wait_for_load_state("networkidle")
    shoot(page, "10-journey-form-filled")
    with page.expect_navigation(url=EXPERIMENT_PAGE):
        page.click("button[name=submit]")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    page.wait_for_selector("svg.timeline text.pct", timeout=120_000)
    shoot(page, "11-journey-running")
    _wait_for(
        lambda: "2 / 2" in page.inner_text("[data-testid=runs-done]"),
        180,
        "both runs to finish on the page",
    )
    page.wait_for_selector("#live .status.s-succeeded", timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True, "progress came without a reload"
    assert page.locator("svg.timeline text.pct").count() == 2
    assert page.locator("#live [hx-trigger]").count() == 0  # polling stopped (286)
    shoot(page, "12-journey-finished")

    page.locator("table.runs tbody tr a").first.click()
    page.wait_for_selector("h1:has-text('Run 1.1.')")
    assert "Test Accuracy" in page.inner_text("#log")
    assert "accuracy" in page.inner_text("body")
    shoot(page, "13-journey-run")

    page.click(".pagehead a:has-text('Compare')")
    page.wait_for_selector("#versus-table")
    boxes = page.locator("input[type=checkbox][name=pick]")
    assert boxes.count() == 2
    assert boxes.nth(0).is_checked() != boxes.nth(1).is_checked()  # the run we came from
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("text=Compare the picked runs")
    page.wait_for_selector("text=Side by side")
    assert page.locator("text=2 runs picked").count() == 1
    shoot(page, "14-journey-compare")
    assert page.js_errors == []


def test_cancelling_stops_the_processes_and_staff_terminate_an_orphan_from_the_admin(
    pretend_workload, celery_worker_factory, live_server, page
):
    worker = _worker(celery_worker_factory)
    get_user_model().objects.create_user(
        "root", password="pw-root-12345", is_staff=True, is_superuser=True
    )
    login(page, live_server, "root", "pw-root-12345")

    # Submit by pasting an experiment file.
    page.click("text=New experiment")
    page.click("text=Or upload an experiment file")
    page.fill("#id_text", LONG_PARALLEL)
    page.click("button[name=upload]")
    page.wait_for_url(EXPERIMENT_PAGE)
    experiment = Experiment.objects.get(name="long parallel, to cancel")
    code = str(experiment.code)
    page.wait_for_selector("#live .status.s-running", timeout=90_000)
    _wait_for(
        lambda: ProcessGroup.objects.filter(experiment=experiment, role="foreground").exists(),
        60,
        "the foreground run to start",
    )
    assert find_marked(code), "the trainings should be running"
    page.click("text=Cancel…")
    shoot(page, "20-cancel-confirm")
    page.click("button:has-text('Cancel experiment')")
    page.wait_for_selector("#live .status.s-cancelled", timeout=60_000)
    _wait_for(lambda: find_marked(code) == [], 30, "every process of the experiment to end")
    assert not ProcessGroup.objects.filter(experiment=experiment, ended_at__isnull=True).exists()
    shoot(page, "21-cancelled")

    # An orphan: a real process group left behind by the finished experiment, carrying
    # its marker as every training Wattlab starts does (a process without it is refused).
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        start_new_session=True,
        env={**os.environ, ENV_MARKER: code, ENV_ROLE: "background"},
    )
    try:
        host = Host.objects.get(hostname=worker.hostname)
        group = ProcessGroup.objects.create(
            host=host,
            pgid=leftover.pid,
            leader_pid=leftover.pid,
            leader_create_time=psutil.Process(leftover.pid).create_time(),
            role="background",
            experiment=experiment,
            started_at=timezone.now(),
        )
        page.goto(f"{live_server.url}/admin/experiments/processgroup/?orphaned=yes")
        row = page.locator(
            f"tr:has(td:text-is('{leftover.pid}')), tr:has(th:has-text('{leftover.pid}'))"
        )
        row.locator("input[name=_selected_action]").check()
        page.select_option("select[name=action]", "terminate")
        shoot(page, "22-admin-orphans")
        page.click("button[name=index]")
        page.wait_for_selector("text=terminate request")
        _wait_for(
            lambda: leftover.poll() is not None, 60, "the orphan to be terminated by the worker"
        )
        # The control worker writes the result once terminate has returned.
        _wait_for(
            lambda: ProcessGroup.objects.get(pk=group.pk).terminate_result != "",
            30,
            "the termination's result to be recorded",
        )
        group.refresh_from_db()
        assert group.terminate_result == "terminated"
        assert group.ended_at is not None
        # Ended now, so no longer among the orphans the list opens on: under "all".
        page.goto(f"{live_server.url}/admin/experiments/processgroup/?orphaned=all")
        assert "terminated" in page.inner_text("#result_list")
        assert "root" in page.inner_text("#result_list")
        shoot(page, "23-admin-terminated")
    finally:
        if leftover.poll() is None:
            leftover.kill()
        leftover.wait(timeout=10)
    assert page.js_errors == []
