"""The experiment report: settings, coverage, energy, carbon, cost and the comparison
against solo, on a page that prints and as a self-contained HTML download."""

from __future__ import annotations

import re

import pytest

from experiments import stats
from tests.web import factories

pytestmark = pytest.mark.django_db


def _demo(owner, wl):
    """A laptop's demo: solo and parallel, same configuration, CPU only."""
    solo = factories.experiment(owner, wl, status="succeeded")
    par = factories.experiment(owner, wl, status="succeeded", mode="parallel")
    for exp, energies in ((solo, [300.0, 310.0, 305.0]), (par, [400.0, 420.0, 410.0])):
        for i, e in enumerate(energies):
            factories.run(
                exp,
                0,
                i,
                hyperparameters={"learning_rate": 0.01, "epochs": 2},
                gpu_energy_j=None,
                gpu_method="unavailable",
                cpu_energy_j=e,
                coverage_percent=96.0 if exp is par else None,
                coverage_verdict="good" if exp is par else "",
            )
    return solo, par


def test_the_report_has_settings_coverage_energy_carbon_and_the_comparison(as_member, owner, wl):
    _solo, par = _demo(owner, wl)
    response = as_member.get(f"/experiments/{par.code}/report/")
    assert response.status_code == 200
    page = response.content.decode()
    for section in ("settings", "coverage", "energy", "carbon-and-cost", "versus"):
        assert f'id="{section}"' in page
    assert "Energy per run: CPU energy (package)" in page
    assert "3 of 3 finished runs have a coverage figure: median 96.0 %" in page
    assert "Against solo: CPU energy (package)" in page
    row = response.context["versus"].rows[0]
    expected = stats.compare([400.0, 420.0, 410.0], [300.0, 310.0, 305.0])
    assert row.comparison == expected
    assert "too few runs for a 95 % interval" in page
    # A CPU estimate of the foreground alone: what sharing costs cannot be told.
    assert "cannot tell what sharing costs on this figure" in page
    assert 'id="sharing"' in page and "What sharing costs" in page
    assert "Print or save as PDF" in page


def test_a_solo_report_compares_against_parallel(as_member, owner, wl):
    solo, _par = _demo(owner, wl)
    page = as_member.get(f"/experiments/{solo.code}/report/").content.decode()
    assert "Against parallel: CPU energy (package)" in page
    assert "A solo experiment: no background, so no coverage." in page


def test_the_download_is_self_contained(as_member, owner, wl):
    _solo, par = _demo(owner, wl)
    response = as_member.get(f"/experiments/{par.code}/report.html")
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="wattlab-report-{par.code}.html"'
    )
    html = response.content.decode()
    # Nothing fetched from elsewhere: styles inline, charts inline SVG, no scripts.
    assert not re.search(r"<link[^>]+stylesheet|<script|<img", html)
    assert "<style>" in html and "svg" in html
    assert ".card" in html  # the app's stylesheet, inlined
    assert "back to the experiment" not in html


def test_only_signed_in_users_see_a_report(client, owner, wl):
    _solo, par = _demo(owner, wl)
    response = client.get(f"/experiments/{par.code}/report/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
