"""The compare page on any energy figure: a host without a GPU still compares (on CPU),
every chart, table and CSV names its figure, methods and the runs lacking it, and two
picked groups get the statistics."""

from __future__ import annotations

import csv
import io

import pytest

from experiments import stats
from experiments.models import Run
from tests.web import factories

ESTIMATE = dict(Run.Method.choices)["estimate"]

pytestmark = [pytest.mark.django_db, pytest.mark.backends]


def _cpu_only(owner, wl, solo=(300.0, 310.0, 305.0), par=(400.0, 420.0, 410.0)):
    """A laptop's demo: no GPU figure, CPU estimated, solo and parallel."""
    s = factories.experiment(owner, wl, status="succeeded")
    p = factories.experiment(owner, wl, status="succeeded", mode="parallel")
    for exp, energies in ((s, solo), (p, par)):
        for i, e in enumerate(energies):
            factories.run(exp, 0, i, gpu_energy_j=None, gpu_method="unavailable", cpu_energy_j=e)
    return s, p


def test_a_host_without_a_gpu_compares_on_cpu_and_says_so(as_member, owner, wl):
    _cpu_only(owner, wl)
    page = as_member.get("/compare/?workload=mnist").content.decode()
    assert "6 of 6 finished runs of mnist have the figure <strong>CPU energy (package)" in page
    assert f"CPU energy (package) methods: {ESTIMATE} (6)." in page
    assert "methods: ." not in page
    assert "nothing measured both ways yet" not in page
    assert "CPU energy (package), parallel vs solo (median, 95 % interval or the values)" in page
    # A CPU estimate of the foreground alone cannot tell what sharing costs: said.
    assert "What this page cannot show" in page
    assert "cannot tell what sharing costs on this figure" in page
    # The figure list offers every figure with how many runs have it.
    assert "GPU energy (device) (0 of 6 runs)" in page


def test_the_gpu_figure_on_the_same_runs_says_all_six_lack_it(as_member, owner, wl):
    _cpu_only(owner, wl)
    page = as_member.get("/compare/?workload=mnist&figure=gpu").content.decode()
    assert "0 of 6 finished runs of mnist have the figure <strong>GPU energy (device)" in page
    assert "(6 lack it)" in page
    assert "GPU energy (device) methods: none." in page
    # Runs to pick are listed whatever figures they have.
    assert page.count('name="pick"') == 6
    assert "not measured" in page


def test_an_unknown_figure_is_named_and_the_default_shown(as_member, owner, wl):
    _cpu_only(owner, wl)
    response = as_member.get("/compare/?workload=mnist&figure=<b>watts")
    assert response.status_code == 200
    page = response.content.decode()
    assert "There is no energy figure “&lt;b&gt;watts”; showing CPU energy (package)" in page


def test_the_csv_names_the_figure_its_methods_and_the_runs_lacking_it(as_member, owner, wl):
    solo = [300.0, 310.0, 305.0, 298.0, 303.0, 301.0, 299.0]
    par = [400.0, 420.0, 410.0, 405.0, 415.0, 412.0, 408.0]
    s, _p = _cpu_only(owner, wl, solo, par)
    factories.run(s, 1, 0, gpu_energy_j=None, cpu_energy_j=None, cpu_method="unavailable")
    text = as_member.get("/compare/?workload=mnist&figure=cpu&format=csv").content.decode()
    rows = list(csv.reader(io.StringIO(text)))
    header, first = rows[0], dict(zip(rows[0], rows[1], strict=True))
    assert {"figure", "solo_ci95_low_j", "parallel_over_solo_ci95_low", "mann_whitney_p"} <= set(
        header
    )
    expected = stats.compare(par, solo)
    assert first["figure"] == "cpu" and first["runs_lacking_figure"] == "1"
    assert first["figure_methods"] == f"{ESTIMATE} (14)"
    assert (first["finished_runs"], first["runs_with_figure"]) == ("15", "14")
    assert float(first["parallel_over_solo"]) == pytest.approx(410.0 / 301.0)
    assert float(first["parallel_over_solo_ci95_low"]) == pytest.approx(expected.ratio_low)
    assert float(first["mann_whitney_p"]) == pytest.approx(expected.p_value)
    # A foreground-only estimate: the numbers, and no verdict on what sharing costs.
    assert first["verdict"].startswith("cannot tell what sharing costs")


def test_two_picked_groups_get_the_statistics(as_member, owner, wl):
    s, p = _cpu_only(owner, wl)
    refs = lambda e: [f"{e.code}:1.{i + 1}.1" for i in range(3)]  # noqa: E731
    url = "/compare/?workload=mnist&figure=cpu&" + "&".join(
        [f"pick={r}" for r in refs(p)] + [f"vs={r}" for r in refs(s)]
    )
    response = as_member.get(url)
    groups = response.context["groups"]
    assert groups["comparison"] == stats.compare([400.0, 420.0, 410.0], [300.0, 310.0, 305.0])
    page = response.content.decode()
    assert "Group A against group B (CPU energy (package)):</strong> too few runs" in page
    assert "too few runs for a 95 % interval" in page


def test_chart_links_are_the_run_pages_reverse_gives(owner, wl):
    """The charts' links are built from one reverse() (600 cost a cold page ~30 ms)."""
    import importlib

    from django.urls import reverse

    from experiments import selectors

    compare_view = importlib.import_module("experiments.views.compare")
    s, p = _cpu_only(owner, wl)
    data = selectors.compare_workload(workload=wl)
    assert len(data.points) == 6
    hrefs = compare_view.run_hrefs(data.points)
    for point in data.points:
        assert hrefs[id(point)] == reverse(
            "run_detail", kwargs={"code": point.code, "run": point.run_ref}
        )


def test_a_trend_needs_three_distinct_values_and_says_so_otherwise(as_member, owner, wl):
    s = factories.experiment(owner, wl, status="succeeded")
    p = factories.experiment(owner, wl, status="succeeded", mode="parallel")
    for i, lr in enumerate((0.01, 0.02, 0.03, 0.01)):  # solo: three distinct values
        factories.run(s, i, 0, hyperparameters={"learning_rate": lr, "epochs": 2})
    for i, lr in enumerate((0.01, 0.03, 0.01)):  # parallel: two
        factories.run(p, i, 0, hyperparameters={"learning_rate": lr, "epochs": 2})
    page = as_member.get("/compare/?workload=mnist").content.decode()
    assert "solo: " in page and "per unit of learning_rate" in page
    assert (
        "parallel: no trend fitted: the runs have 2 distinct values of learning_rate, and a "
        "line needs at least 3" in page
    )
    chart = page[page.index("against learning_rate") :]
    assert chart.count('class="band"') == 1  # solo's band only
