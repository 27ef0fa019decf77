"""The demo on this host as it is: no GPU, no NVML double, no RAPL; the CPU figure is
the labelled estimate. A real worker runs a small parallel experiment and the solo one
with the same configurations, two runs each (``make run`` submits three, longer);
then the run page shows CPU power over time with the background's starts and ends,
Compare pairs solo and parallel, shows each group's values (two runs are too few for
a 95 % interval), the slowdown, and says plainly what it cannot show on this host (no
energy figure here can show what sharing costs: the GPU is not measured, the CPU figure
is an estimate of the foreground alone), and every page passes axe-core. Screenshots:
test-artifacts/screenshots/3*.png."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model

from experiments.expfile import parse_experiment_text
from experiments.models import Experiment, Run
from experiments.services import experiment_submit
from tests.browser.conftest import axe_violations, login, shoot
from tests.browser.test_accessibility import visit_every_page
from tests.conftest import demo_pair

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Background runs shorter than a foreground run, so each window holds starts and ends,
# but seconds long: each restart leaves a gap of tens of milliseconds (more on a loaded
# machine), and runs of a third of a second left a window 85 % covered, short of good.
# Two runs a configuration (make run's demo has three): too few for an interval either
# way, and the test's trainings are a third of its CPU time less.
PARALLEL, SOLO = demo_pair(
    "small demo", epochs=60, hidden=256, background_epochs=100, background_hidden=64,
    sleep=0.5, startup_wait=1, runs_per_config=2,
)  # fmt: skip


def test_after_the_demo_without_a_gpu_the_run_shows_cpu_power_and_every_page_passes_axe(
    digits_workload, celery_worker_factory, live_server, page
):
    celery_worker_factory(WATTLAB_METER_DOUBLE="")  # the real meters of this host
    user = get_user_model().objects.create_user("demo", password="pw-demo-12345")
    codes = [
        str(experiment_submit(owner=user, spec=parse_experiment_text(text)).code)
        for text in (PARALLEL, SOLO)
    ]
    deadline = time.monotonic() + 300
    while Experiment.objects.filter(code__in=codes, status__in=("queued", "running")).exists():
        assert time.monotonic() < deadline, "the demo did not finish within 5 minutes"
        time.sleep(0.5)
    parallel = Experiment.objects.get(code=codes[0])
    assert parallel.status == "succeeded", parallel.error
    run = Run.objects.get(experiment=parallel, config_index=0, repeat_index=0, attempt=1)
    assert run.gpu_method == "unavailable" and run.cpu_method == "estimate"

    login(page, live_server, "demo", "pw-demo-12345")
    page.goto(f"{live_server.url}/experiments/{parallel.code}/runs/1.1.1/")
    power = page.locator("figure.chartbox", has=page.locator("figcaption", has_text="CPU power"))
    assert power.count() == 1
    assert "an estimate, not measured" in power.inner_text()
    assert power.locator("polyline").count() >= 1
    assert power.locator("polyline title").first.text_content() == "CPU (estimate)"
    starts = power.locator("line.marker title", has_text="starts")
    ends = power.locator("line.marker title", has_text="ends")
    assert starts.count() >= 1 and ends.count() >= 1
    assert "The GPU was not measured on this host" in page.inner_text("main")
    power.scroll_into_view_if_needed()
    shoot(page, "30-demo-run-cpu-power-no-gpu")

    page.goto(f"{live_server.url}/compare/?workload=digits-mlp")
    # A parallel run counts only with good coverage (the background restarts at once
    # after each end, so its windows are covered; one short of it is left out, said).
    good = {
        cfg: Run.objects.filter(
            experiment=parallel, config_index=cfg, status="succeeded", coverage_verdict="good"
        ).count()
        for cfg in (0, 1)
    }
    covered = sorted(
        Run.objects.filter(experiment=parallel).values_list("config_index", "coverage_percent")
    )
    assert all(good.values()), f"every configuration has a covered parallel run: {covered}"
    left_out = 4 - sum(good.values())
    if left_out:
        assert f"{left_out} parallel run" in page.inner_text("#left-out")
    # Parallel against solo on the CPU figure: solo and parallel pair, each group's
    # values shown (two runs are too few for a 95 % interval), no whisker.
    chart = page.locator("svg", has_text="CPU energy (package), parallel vs solo")
    assert chart.count() == 1
    tips = chart.locator("rect title").all_text_contents()
    assert len(tips) == 4, tips
    assert all("too few runs for a 95 % interval, the values" in t for t in tips), tips
    assert chart.locator("line.whisker").count() == 0
    assert chart.locator("circle.value").count() == 4 + sum(good.values())
    # What sharing costs: the slowdown per configuration; what this host cannot show.
    sharing = page.locator("#sharing-table tbody tr")
    assert sharing.count() == 2
    assert all("×" in row for row in sharing.all_inner_texts())
    cannot = page.inner_text("#cannot-show")
    assert "No energy figure of these runs can show what sharing the device costs" in cannot
    assert "run on a GPU host" in cannot and "RAPL" in cannot
    assert "no significant difference" not in page.inner_text("main")
    shoot(page, "31-demo-compare-no-gpu")

    found = axe_violations(page, "demo-compare")
    found += visit_every_page(page, live_server.url, str(parallel.code), "1.1.1", "digits-mlp")
    assert found == [], "\n".join(found)
    assert page.js_errors == []
