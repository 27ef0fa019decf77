"""WCAG 2.1 AA, kept: axe-core in chromium on every page (login, list, new experiment,
experiment, run, compare, hosts, tokens), failing on serious or critical violations
and on empty table headers. Two histories: the rendered-pages one (a running
experiment, its live progress bars, a finished solo study), and a real demo on this
host without a GPU (tests/browser/test_journeys.py runs the demo pages too)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import axe_violations, login
from tests.browser.test_pages_render import _history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def visit_every_page(page, base: str, code: str, run_ref: str, workload: str) -> list[str]:
    """Each page as a user reaches it, axe on each; the failing violations of all."""
    found: list[str] = []
    page.goto(f"{base}/")
    found += axe_violations(page, "list")
    page.goto(f"{base}/experiments/new/")
    page.select_option("#id_workload", workload)
    page.wait_for_selector("#id_hp__learning_rate")
    page.check("#id_parallel")
    page.wait_for_load_state("networkidle")
    found += axe_violations(page, "new-experiment")
    page.goto(f"{base}/experiments/{code}/")
    page.wait_for_selector("svg.timeline")
    found += axe_violations(page, "experiment")
    page.goto(f"{base}/experiments/{code}/runs/{run_ref}/")
    found += axe_violations(page, "run")
    page.goto(f"{base}/experiments/{code}/report/")
    found += axe_violations(page, "report")
    page.goto(f"{base}/compare/?workload={workload}")
    found += axe_violations(page, "compare")
    page.goto(f"{base}/hosts/")
    found += axe_violations(page, "hosts")
    page.goto(f"{base}/account/tokens/")
    found += axe_violations(page, "tokens")
    page.click("text=Create a token")
    page.wait_for_selector("pre.token")
    found += axe_violations(page, "token-created")
    return found


def test_every_page_meets_wcag_21_aa_by_axe(live_server, page):
    _user, par = _history()
    page.goto(f"{live_server.url}/")
    page.wait_for_selector("#id_username")
    found = axe_violations(page, "login")
    login(page, live_server, "olivia", "pw-olivia-123")
    found += visit_every_page(page, live_server.url, str(par.code), "1.2.1", "mnist-cnn")
    assert found == [], "\n".join(found)


def visit_admin_pages(page, base: str) -> list[str]:
    """The admin a staff member uses (index, each model's list, the forms they open),
    axe on each; the failing violations of all."""
    from experiments.models import Experiment, Host, Run, Workload

    found: list[str] = []
    page.goto(f"{base}/admin/")
    found += axe_violations(page, "admin-index")
    for model in ("experiment", "run", "backgroundrun", "processgroup", "host", "workload"):
        page.goto(f"{base}/admin/experiments/{model}/")
        found += axe_violations(page, f"admin-{model}-list")
    for name, path in (
        ("experiment", f"experiment/{Experiment.objects.order_by('id').first().pk}"),
        ("run", f"run/{Run.objects.order_by('id').first().pk}"),
        ("host", f"host/{Host.objects.order_by('id').first().pk}"),
        ("workload", f"workload/{Workload.objects.order_by('id').first().pk}"),
    ):
        page.goto(f"{base}/admin/experiments/{path}/change/")
        found += axe_violations(page, f"admin-{name}-change")
    page.goto(f"{base}/admin/experiments/workload/add/")
    found += axe_violations(page, "admin-workload-add")
    page.goto(f"{base}/admin/auth/user/")
    found += axe_violations(page, "admin-user-list")
    return found


def test_admin_pages_meet_wcag_21_aa_by_axe(live_server, page):
    _history()
    login(page, live_server, "olivia", "pw-olivia-123")
    found = visit_admin_pages(page, live_server.url)
    assert found == [], "\n".join(found)
