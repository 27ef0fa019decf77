"""Reads behind the compare page and the orphan filter."""

from __future__ import annotations

import pytest
from django.db import connection

from experiments import comparison, figures, selectors, stats
from tests.web import factories

pytestmark = [pytest.mark.django_db, pytest.mark.backends]


def _history(owner, wl):
    solo = factories.experiment(owner, wl, status="succeeded")
    par = factories.experiment(owner, wl, status="succeeded", mode="parallel")
    same = {"learning_rate": 0.01, "epochs": 2}
    for i, energy in enumerate([100.0, 140.0, 120.0]):
        factories.run(solo, 0, i, hyperparameters=same, gpu_energy_j=energy)
    # The same configuration written with a float epoch (1 == 1.0) groups together.
    for i, energy in enumerate([150.0, 190.0]):
        factories.run(
            par, 0, i, hyperparameters={"learning_rate": 0.01, "epochs": 2.0}, gpu_energy_j=energy
        )
    factories.run(
        par, 1, 0, hyperparameters={"learning_rate": 0.05, "epochs": 2}, gpu_energy_j=300.0
    )
    factories.run(par, 2, 0, hyperparameters=same, gpu_energy_j=None, gpu_method="unavailable")
    factories.run(par, 3, 0, hyperparameters=same, status="failed", gpu_energy_j=999.0)


def test_compare_gives_median_spread_n_and_ratio_per_configuration(owner, wl):
    _history(owner, wl)
    data = selectors.compare_workload(workload=wl)
    assert data.total_runs == 6 and data.configurations == 2
    both = data.rows[0]
    solo = both.solo.summary
    assert (solo.n, solo.median, solo.min, solo.max) == (3, 120.0, 100.0, 140.0)
    assert (both.parallel.n, both.parallel.median) == (2, 170.0)
    assert both.ratio == pytest.approx(170.0 / 120.0)
    only_parallel = data.rows[1]
    assert only_parallel.solo.n == 0 and only_parallel.ratio is None


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_database_groups_the_same_runs_as_python(owner, wl):
    _history(owner, wl)

    def content(groups):
        return sorted(
            (
                g.key,
                g.mode,
                g.setup,
                sorted(zip(g.values, g.durations, g.coverage, g.verdicts, strict=True)),
                sorted(zip(*(g.parts[p] for p in comparison.PARTS), strict=True), key=str),
            )
            for g in groups
        )

    for figure in figures.FIGURES:
        for limit in (1, 50):
            for unit in ("J", "kgCO2e"):
                in_db, configs_db = selectors.compare._groups_postgres(wl, figure, limit, unit)
                in_py, configs_py = selectors.compare._groups_python(wl, figure, limit, unit)
                assert configs_db == configs_py
                assert content(in_db) == content(in_py)


def test_a_run_lacking_the_gpu_figure_is_counted_and_gpu_stays_the_default(owner, wl):
    _history(owner, wl)
    data = selectors.compare_workload(workload=wl)
    # 7 finished runs; 6 have a GPU figure, 7 a CPU one: GPU is preferred (over half).
    assert data.figure.key == "gpu"
    assert (data.finished_runs, data.total_runs, data.lacking) == (7, 6, 1)
    assert data.methods == {"counter": 6}
    assert data.methods_text == "NVML energy counter (6)"
    # Runs to pick are listed whatever figures they have.
    assert len(data.recent) == 7
    assert [p.value for p in data.recent if p.value is None] == [None]


def test_runs_without_any_gpu_figure_compare_on_cpu(owner, wl):
    solo = factories.experiment(owner, wl, status="succeeded")
    par = factories.experiment(owner, wl, status="succeeded", mode="parallel")
    for exp, energies in ((solo, [300.0, 310.0, 305.0]), (par, [400.0, 420.0, 410.0])):
        for i, e in enumerate(energies):
            factories.run(exp, 0, i, gpu_energy_j=None, gpu_method="unavailable", cpu_energy_j=e)
    data = selectors.compare_workload(workload=wl)
    assert data.figure.key == "cpu"
    assert data.figure_counts == {
        "gpu": 0,
        "gpu_foreground": 0,
        "cpu": 6,
        "dram": 0,
        "total": 0,
    }
    row = data.rows[0]
    assert (row.solo.median, row.parallel.median) == (305.0, 410.0)
    # The statistics are experiments.stats' on exactly these values.
    expected = stats.compare([400.0, 420.0, 410.0], [300.0, 310.0, 305.0])
    assert row.comparison == expected
    assert row.solo.summary == expected.b
    # A CPU estimate of the foreground alone cannot show what sharing costs: no verdict.
    assert row.verdict.startswith("cannot tell what sharing costs on this figure")
    assert "estimate of the foreground's own CPU time" in row.verdict
    # Asking for a figure no run has gives an empty comparison that says so.
    gpu = selectors.compare_workload(workload=wl, figure=figures.BY_KEY["gpu"])
    assert gpu.rows == [] and gpu.lacking == 6 and gpu.methods_text == "none"


def test_total_exists_only_where_every_part_does(owner, wl):
    e = factories.experiment(owner, wl, status="succeeded")
    factories.run(e, 0, 0, gpu_energy_j=100.0, cpu_energy_j=20.0, dram_energy_j=5.0)
    factories.run(e, 0, 1, gpu_energy_j=100.0, cpu_energy_j=20.0, dram_energy_j=None)
    data = selectors.compare_workload(workload=wl, figure=figures.BY_KEY["total"])
    assert data.total_runs == 1 and data.lacking == 1
    assert data.rows[0].solo.median == 125.0
    assert [p.value for p in data.points] == [125.0]
    assert data.methods == {"counter + estimate + unknown": 1}


def test_the_table_is_cut_to_the_configurations_measured_most(owner, wl):
    _history(owner, wl)
    data = selectors.compare_workload(workload=wl, row_limit=1)
    assert len(data.rows) == 1 and data.configurations == 2
    assert data.rows[0].solo.n == 3


def test_pareto_front_keeps_points_nothing_beats_on_both_energy_and_metric():
    points = [(100.0, 0.90), (120.0, 0.95), (110.0, 0.85), (130.0, 0.94), (90.0, 0.80)]
    assert selectors.pareto_front(points) == [4, 0, 1]


def test_run_refs_that_do_not_parse_are_ignored(owner, wl):
    e = factories.experiment(owner, wl)
    factories.run(e, 1, 2, attempt=3)
    # Labels count from 1: "2.3.3" is the stored (1, 2, 3); "1.0.3" names nothing.
    found = selectors.runs_by_refs(
        [f"{e.code}:2.3.3", "nonsense", f"{e.code}:x.y.z", ":2.3.3", f"{e.code}:1.0.3"]
    )
    assert [(r.config_index, r.repeat_index, r.attempt) for r in found] == [(1, 2, 3)]


def test_connection_vendor_is_known():
    assert connection.vendor in {"postgresql", "sqlite"}
