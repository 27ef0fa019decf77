"""Every page rendered in a real browser with realistic rows, screenshotted for review."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.browser.conftest import login, shoot
from tests.web import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


SETTINGS_KEY = "NVIDIA H200 · 700 W · app clocks 1980/2619 MHz"
#: A run's GPU settings as workers.energy.device_state records them.
DEVICE_STATE = {
    "settings_key": SETTINGS_KEY,
    "gpus": [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "uuid": "GPU-0000",
            "reads": 30,
            "power_limit_w": 700.0,
            "app_sm_clock_mhz": 1980.0,
            "app_mem_clock_mhz": 2619.0,
            "sm_clock_mhz": {"min": 1755.0, "max": 1980.0, "mean": 1901.2},
            "mem_clock_mhz": {"min": 2619.0, "max": 2619.0, "mean": 2619.0},
            "clock_event_reasons": {"software power cap": 0.4},
            "sensor_periods": {"counter_s": 0.1, "power_s": 0.02, "observed_s": 1.0},
        }
    ],
    "changes": [],
}


def _history():
    user = get_user_model().objects.create_user(
        "olivia", password="pw-olivia-123", is_staff=True, is_superuser=True
    )
    other = get_user_model().objects.create_user("maxime", password="pw-maxime-123")
    wl = factories.workload("mnist-cnn")
    bg = factories.workload(
        "resnet18-cifar",
        hyperparameters=[
            {
                "name": "batch_size",
                "flag": "--bs",
                "type": "int",
                "default": 128,
                "min": 16,
                "max": 512,
            }
        ],
    )
    h = factories.host("gpu01")
    now = timezone.now()
    solo = factories.experiment(
        other,
        wl,
        name="baseline solo",
        status="succeeded",
        total_runs=6,
        runs_done=6,
        gpu_energy_j=9800.0,
        cpu_energy_j=2100.0,
        started_at=now - dt.timedelta(hours=3),
        ended_at=now - dt.timedelta(hours=2),
    )
    for c in range(3):
        for r in range(2):
            factories.run(
                solo,
                c,
                r,
                hyperparameters={"learning_rate": [0.01, 0.003, 0.03][c], "epochs": 2},
                gpu_energy_j=1500 + 120 * c + 30 * r,
                metrics={"accuracy": 0.95 + 0.01 * c - 0.004 * r},
            )
    par = factories.experiment(
        user,
        wl,
        name="lr sweep under resnet load",
        mode="parallel",
        status="running",
        total_runs=6,
        runs_done=3,
        background_workload=bg,
        gpu_energy_j=5400.0,
        cpu_energy_j=900.0,
        worst_verdict="partial",
        host=h,
        gpu_index=0,
        started_at=now - dt.timedelta(minutes=3),
        mutate=["learning_rate"],
        seed=7,
    )
    t0 = now - dt.timedelta(seconds=170)
    for i, (c, r) in enumerate([(0, 0), (0, 1), (1, 0)]):
        start = t0 + dt.timedelta(seconds=40 * i)
        factories.run(
            par,
            c,
            r,
            started_at=start,
            trace=factories.sample_trace(30, 2),
            hyperparameters={"learning_rate": [0.01, 0.003, 0.03][c], "epochs": 2},
            gpu_energy_j=1900 + 150 * c + 40 * r,
            duration_s=30,
            ended_at=start + dt.timedelta(seconds=30),
            coverage_percent=[99.1, 86.4, 97.0][i],
            coverage_verdict=["good", "partial", "good"][i],
            metrics={"accuracy": 0.94 + 0.01 * c},
            cpu_foreground_j=120.0,
            cpu_foreground_method="estimate",
            device_settings_key=SETTINGS_KEY,
            device_state=DEVICE_STATE,
        )
    factories.run(
        par,
        1,
        1,
        status="running",
        started_at=t0 + dt.timedelta(seconds=120),
        ended_at=None,
        duration_s=None,
        gpu_energy_j=None,
        gpu_method="",
        cpu_energy_j=None,
        cpu_method="",
        metrics={},
        trace=factories.sample_trace(40, 2),
    )
    at = t0 - dt.timedelta(seconds=5)
    for b in range(9):
        factories.background_run(par, b, at, 17)
        at += dt.timedelta(seconds=19 if b != 2 else 24)
    factories.experiment(other, wl, name="queued lr sweep", status="queued", total_runs=4)
    return user, par


def test_every_page_renders_and_is_screenshotted(live_server, page):
    user, par = _history()
    page.goto(f"{live_server.url}/")
    page.wait_for_selector("#id_username")  # everything is behind login
    shoot(page, "00-login")
    login(page, live_server, "olivia", "pw-olivia-123")
    shoot(page, "01-experiment-list")
    page.goto(f"{live_server.url}/experiments/new/")
    page.select_option("#id_workload", "mnist-cnn")
    page.wait_for_selector("#id_hp__learning_rate")
    page.check("#id_parallel")
    shoot(page, "02-new-experiment")
    page.fill("#id_name", "too many epochs")
    page.fill("#id_hp__epochs", "99")
    page.click("button[name=submit]")
    page.wait_for_selector("tr.has-error")
    assert page.input_value("#id_name") == "too many epochs"  # nothing typed is lost
    assert "less than or equal to 20" in page.inner_text("tr.has-error")
    shoot(page, "02b-new-experiment-errors")
    page.goto(f"{live_server.url}/experiments/{par.code}/")
    page.wait_for_selector("svg.timeline")
    shoot(page, "03-experiment-detail")
    page.goto(f"{live_server.url}/experiments/{par.code}/runs/1.2.1/")
    assert SETTINGS_KEY in page.locator("section.device-settings").inner_text()
    shoot(page, "04-run-detail")
    page.goto(f"{live_server.url}/compare/?workload=mnist-cnn")
    shoot(page, "05-compare")
    page.goto(f"{live_server.url}/hosts/")
    shoot(page, "06-hosts")
    page.goto(f"{live_server.url}/account/tokens/")
    page.click("text=Create a token")
    assert page.locator("pre.token").inner_text().startswith("wl_")
    shoot(page, "07-api-tokens")
    page.goto(f"{live_server.url}/api/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)  # local files, no CDN
    shoot(page, "08-api-docs")
    assert page.js_errors == []
