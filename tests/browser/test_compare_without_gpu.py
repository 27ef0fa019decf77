"""Done means (issues 11 and 16): on a host without a GPU, after a demo-like solo and
parallel experiment run by a REAL Celery worker (no meter double: CPU energy only,
labelled), Compare pairs parallel against solo for the CPU figure, shows each group's
values (three runs: too few for a 95 % interval), gives no verdict on what sharing costs
(a foreground-only estimate cannot show it) and says what is missing; the report shows
the same. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model

from experiments.models import Experiment
from tests.browser.conftest import login, shoot

# Not in the SQLite run (marker backends): the comparison's queries run on both databases
# in test_comparison_soundness and test_compare_figures, the queue in test_tasks.
pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXPERIMENT_PAGE = re.compile(r".*/experiments/[0-9a-f-]{36}/$")

SOLO = """name: cpu demo solo
foreground:
  workload: digits-mlp
  hyperparameters: {epochs: 3, hidden: 64}
runs_per_config: 3
sleep_between_runs: 0.2
timeout: 120
"""

# The same configuration with a background training beside it: one background run
# outlasts the experiment, so every foreground window is covered (good coverage).
PARALLEL = (
    SOLO.replace("name: cpu demo solo", "name: cpu demo parallel")
    + """background:
  workload: digits-mlp
  hyperparameters: {epochs: 300, hidden: 1024}
  restart_delay: 0
  startup_wait: 1
"""
)


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _upload(page, live_server, text: str) -> None:
    page.goto(f"{live_server.url}/experiments/new/")
    page.click("text=Or upload an experiment file")
    page.fill("#id_text", text)
    with page.expect_navigation(url=EXPERIMENT_PAGE):
        page.click("button[name=upload]")


def test_compare_shows_parallel_against_solo_on_cpu_with_intervals_without_a_gpu(
    digits_workload, celery_worker_factory, live_server, page
):
    celery_worker_factory()  # no WATTLAB_METER_DOUBLE: this machine's own meters, no GPU
    get_user_model().objects.create_user("lena", password="pw-lena-12345")
    login(page, live_server, "lena", "pw-lena-12345")
    _upload(page, live_server, SOLO)
    _upload(page, live_server, PARALLEL)
    _wait_for(
        lambda: Experiment.objects.filter(status="succeeded").count() == 2,
        400,
        "both experiments to succeed",
    )
    exps = list(Experiment.objects.all())
    runs = [r for e in exps for r in e.runs.filter(status="succeeded")]
    assert len(runs) == 6
    assert all(r.gpu_energy_j is None for r in runs), "this host has no GPU"
    assert all(r.cpu_energy_j is not None for r in runs)

    page.goto(f"{live_server.url}/compare/?workload=digits-mlp")
    page.wait_for_selector("#versus-table")
    line = page.inner_text("#figure-line")
    assert "6 of 6 finished runs of digits-mlp have the figure CPU energy (package)" in line
    assert "methods: ." not in page.inner_text("body")
    chart = page.locator("svg", has_text="CPU energy (package), parallel vs solo")
    assert chart.count() == 1
    counted = Experiment.objects.get(name="cpu demo parallel").runs.filter(
        status="succeeded", coverage_verdict="good"
    )
    assert counted.count() >= 1, "a covered parallel run"
    # Two bars (solo, parallel), each with its values as dots: three runs are too few
    # for a 95 % interval, so none is drawn.
    assert chart.locator("rect title").count() == 2
    tips = chart.locator("rect title").all_text_contents()
    assert all("too few runs for a 95 % interval, the values" in t for t in tips), tips
    assert chart.locator("line.whisker").count() == 0
    assert chart.locator("circle.value").count() == 3 + counted.count()
    row = page.inner_text("#versus-table tbody tr")
    assert "cannot tell what sharing costs on this figure" in row
    assert "no significant difference" not in page.inner_text("main")
    assert "run on a GPU host" in page.inner_text("#cannot-show")
    shoot(page, "30-compare-cpu-parallel-vs-solo")

    parallel = Experiment.objects.get(name="cpu demo parallel")
    page.goto(f"{live_server.url}/experiments/{parallel.code}/report/")
    page.wait_for_selector("#versus")
    assert "Against solo: CPU energy (package)" in page.inner_text("#versus")
    assert page.locator("#versus circle.value").count() == 3 + counted.count()
    assert "run on a GPU host" in page.inner_text("#cannot-show")
    shoot(page, "31-report-cpu-against-solo")
    assert page.js_errors == []
