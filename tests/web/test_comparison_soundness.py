"""Issue 16: the comparison respects coverage, never pools methods, holds at small n,
says what it cannot tell, and the page, the report, the CSV and the API agree on every
number for the same selection."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from typing import get_args

import pytest
from django.test import Client

from experiments import carbon, figures, stats, summary
from experiments.api import FigureKey, UnitName, token_create
from experiments.models import Experiment, Run, Workload
from experiments.templatetags.wattlab import joules, percent, times
from tests.web import factories

pytestmark = [pytest.mark.django_db, pytest.mark.backends]

SAME = {"learning_rate": 0.01, "epochs": 2}
SOLO_J = [1000.0, 1012.0, 995.0, 1004.0, 1020.0, 990.0, 1008.0]
PAR_J = [1300.0, 1290.0, 1310.0, 1284.0, 1322.0, 1305.0, 1296.0]


def _api(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='t')}")


def _pair(owner, wl, *, solo=SOLO_J, par=PAR_J, coverage=None, **run):
    """A solo and a parallel experiment of one configuration, GPU-measured."""
    s = factories.experiment(
        owner, wl, status="succeeded", plan=[{"index": 0, "hyperparameters": SAME}]
    )
    bg = Workload.objects.filter(name="bg").first() or factories.workload("bg")
    p = factories.experiment(
        owner,
        wl,
        status="succeeded",
        mode="parallel",
        background_workload=bg,
        plan=[{"index": 0, "hyperparameters": SAME}],
    )
    for i, e in enumerate(solo):
        factories.run(
            s, 0, i, hyperparameters=SAME, gpu_energy_j=e, duration_s=10.0 + i / 10, **run
        )
    covers = coverage or [99.0] * len(par)
    for i, (e, c) in enumerate(zip(par, covers, strict=True)):
        verdict = "good" if c >= 95 else "partial" if c >= 80 else "insufficient"
        factories.run(
            p,
            0,
            i,
            hyperparameters=SAME,
            gpu_energy_j=e,
            duration_s=13.0 + i / 10,
            coverage_percent=c,
            coverage_verdict=verdict,
            **run,
        )
    return s, p


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_a_parallel_run_at_60_percent_coverage_is_left_out_and_counted(
    as_member, member, owner, wl
):
    _s, p = _pair(owner, wl, par=[*PAR_J, 9000.0], coverage=[99.0] * 7 + [59.4])
    response = as_member.get("/compare/?workload=mnist")
    row = response.context["data"].rows[0]
    assert row.parallel.n == 7 and row.parallel.median == 1300.0  # 9000 J not pooled
    assert row.left_out == 1
    page = _text(response.content.decode())
    assert "1 parallel run left out (coverage short of good, ≥ 95 %): coverage 59.4 %" in page
    assert "Include them (marked)" in page
    # Each parallel group shows its coverage: median and lowest of the counted runs.
    assert "99.0 %, 99.0 %" in page and "(1 left out)" in page

    # The switch puts it back, counted and marked.
    response = as_member.get("/compare/?workload=mnist&coverage=all")
    row = response.context["data"].rows[0]
    assert row.parallel.n == 8 and row.parallel.short_of_good == 1 and row.left_out == 0
    assert "1 short of good" in response.content.decode()

    # The CSV, the API and the report say the same.
    rows = list(
        csv.DictReader(
            io.StringIO(as_member.get("/compare/?workload=mnist&format=csv").content.decode())
        )
    )
    assert rows[0]["parallel_left_out"] == "1" and rows[0]["parallel_left_out_coverage"] == "59.4"
    doc = _api(member).get("/api/workloads/mnist/comparison").json()
    assert doc["parallel_runs_left_out"] == 1 and doc["left_out_coverage"] == [59.4]
    report = _text(as_member.get(f"/experiments/{p.code}/report/").content.decode())
    assert "1 parallel run left out (coverage short of good, ≥ 95 %): coverage 59.4 %" in report


def test_an_estimate_group_and_a_rapl_group_are_not_pooled(as_member, owner, wl):
    s = factories.experiment(owner, wl, status="succeeded")
    no_gpu = {"hyperparameters": SAME, "gpu_energy_j": None, "gpu_method": "unavailable"}
    for i in range(3):
        factories.run(s, 0, i, cpu_energy_j=300.0 + i, cpu_method="estimate", **no_gpu)
        factories.run(s, 0, 3 + i, cpu_energy_j=900.0 + i, cpu_method="rapl", **no_gpu)
    data = as_member.get("/compare/?workload=mnist&figure=cpu").context["data"]
    assert [(r.method, r.solo.n, r.solo.median) for r in data.rows] == [
        ("estimate", 3, 301.0),
        ("rapl", 3, 901.0),
    ]


def test_runs_at_two_gpu_settings_are_two_groups_each_naming_its_settings(
    as_member, member, owner, wl
):
    """Issue 19 records the GPUs' settings (power limit, clocks) on each run: runs of one
    configuration at two power limits are not pooled into one median."""
    at_300 = "NVIDIA Fake 100 · 300 W · app clocks 1980/2619 MHz"
    at_700 = "NVIDIA Fake 100 · 700 W · app clocks 1980/2619 MHz"
    s, p = _pair(owner, wl, solo=SOLO_J[:3], par=PAR_J[:3], device_settings_key=at_700)
    for i in range(3):
        for e, energy in ((s, 800.0), (p, 1100.0)):
            factories.run(
                e,
                0,
                3 + i,
                hyperparameters=SAME,
                gpu_energy_j=energy + i,
                device_settings_key=at_300,
            )
    response = as_member.get("/compare/?workload=mnist")
    rows = sorted(response.context["data"].rows, key=lambda r: r.device_settings)
    assert [(r.device_settings, r.solo.n, r.solo.median, r.parallel.n) for r in rows] == [
        (at_300, 3, 801.0, 3),
        (at_700, 3, 1000.0, 3),
    ]
    assert all(r.paired for r in rows)
    # submit --wait's table tells the two rows apart the same way.
    labels = sorted(row[0] for row in summary.sharing_rows(response.context["data"].table, []))
    assert labels == [
        f"defaults (GPU counter, CPU estimate, GPU settings: {k})" for k in (at_300, at_700)
    ]
    page = _text(response.content.decode())
    assert f"GPU counter, CPU estimate, GPU settings: {at_300}" in page
    assert f"GPU settings: {at_700}" in page
    # The API and the CSV name each row's settings too.
    doc = _api(member).get("/api/workloads/mnist/comparison").json()
    assert sorted(r["device_settings"] for r in doc["rows"]) == [at_300, at_700]
    methods = {"gpu_method", "gpu_foreground_method", "cpu_method", "dram_method"}
    assert all(set(r["methods"]) == methods for r in doc["rows"])
    csv_rows = list(
        csv.DictReader(
            io.StringIO(as_member.get("/compare/?workload=mnist&format=csv").content.decode())
        )
    )
    assert sorted(r["device_settings"] for r in csv_rows) == [at_300, at_700]
    # Runs without recorded settings (no GPU, or measured before they were recorded)
    # are one group among themselves, named by their methods alone.
    s2 = factories.experiment(owner, wl, status="succeeded")
    factories.run(s2, 0, 0, hyperparameters={"learning_rate": 0.5, "epochs": 2})
    rows = as_member.get("/compare/?workload=mnist").context["data"].rows
    plain = [r for r in rows if r.hyperparameters["learning_rate"] == 0.5]
    assert [(r.device_settings, r.measured_with) for r in plain] == [
        ("", "GPU counter, CPU estimate")
    ]


def test_a_cpu_estimate_comparison_gives_no_no_difference_verdict(as_member, member, owner, wl):
    """Enough runs for a verdict, the same energies both ways: the old page said "no
    significant difference"; a foreground-only estimate cannot tell, and says why."""
    cpu = {"gpu_energy_j": None, "gpu_method": "unavailable", "cpu_method": "estimate"}
    s = factories.experiment(owner, wl, status="succeeded")
    p = factories.experiment(owner, wl, status="succeeded", mode="parallel")
    for i in range(8):
        factories.run(s, 0, i, hyperparameters=SAME, cpu_energy_j=300.0 + i, **cpu)
        factories.run(p, 0, i, hyperparameters=SAME, cpu_energy_j=300.5 + i, **cpu)
    response = as_member.get("/compare/?workload=mnist")
    assert response.context["data"].figure.key == "cpu"
    page = _text(response.content.decode())
    assert "no significant difference" not in page
    assert "What this page cannot show" in page
    assert "the GPU was not measured on this host (no NVML)" in page
    assert "estimate of the foreground's own CPU time: the background is not in it" in page
    assert "run on a GPU host" in page and "RAPL" in page
    # Solo and parallel still pair, and the slowdown (durations) is shown.
    row = response.context["data"].rows[0]
    assert row.paired and row.slowdown is not None and row.sharing == []
    report = _text(as_member.get(f"/experiments/{p.code}/report/").content.decode())
    assert "no significant difference" not in report
    assert "No energy figure of these runs can show what sharing the device costs" in report
    doc = _api(member).get(f"/api/experiments/{p.code}/comparison").json()
    assert doc["rows"][0]["verdict"].startswith("cannot tell what sharing costs")
    assert "RAPL" in doc["cannot_show"] and "run on a GPU host" in doc["cannot_show"]
    assert doc["sharing_cannot_show"].startswith("No energy figure of these runs")


def test_a_group_of_three_shows_no_95_percent_interval_but_its_values(as_member, owner, wl):
    _pair(owner, wl, solo=SOLO_J[:3], par=PAR_J[:3])
    response = as_member.get("/compare/?workload=mnist")
    page = _text(response.content.decode())
    assert "too few runs for a 95 % interval: 995 J, 1 kJ, 1.01 kJ" in page
    assert "bootstrap" not in page
    svg = response.context["versus"]
    assert 'class="whisker"' not in svg and svg.count('class="value"') == 6
    # The chart's caption counts what it draws.
    assert "The chart draws 1 of the 1 row in the table" in page


def test_the_page_report_csv_and_api_agree_on_every_number(as_member, member, owner, wl):
    s, p = _pair(owner, wl)
    _pair(owner, wl, solo=SOLO_J[:4], par=PAR_J[:5])  # more runs of the same configuration
    page_response = as_member.get("/compare/?workload=mnist&figure=gpu")
    page = _text(page_response.content.decode())
    report = _text(as_member.get(f"/experiments/{p.code}/report/?figure=gpu").content.decode())
    rows = list(
        csv.DictReader(
            io.StringIO(
                as_member.get("/compare/?workload=mnist&figure=gpu&format=csv").content.decode()
            )
        )
    )
    api = _api(member).get("/api/workloads/mnist/comparison?figure=gpu").json()
    api_exp = _api(member).get(f"/api/experiments/{p.code}/comparison?figure=gpu").json()
    assert len(rows) == len(api["rows"]) == len(api_exp["rows"]) == 1
    row, csv_row = api["rows"][0], rows[0]
    assert api_exp["rows"][0] == row  # the experiment's configurations: the same row
    solo, par = row["solo"], row["parallel"]
    assert (solo["n"], par["n"]) == (11, 12)
    for side, mode in ((solo, "solo"), (par, "parallel")):
        for key in ("median", "ci95_low", "ci95_high"):
            assert float(csv_row[f"{mode}_{key}_j"]) == side[key]
        shown = (
            f"{joules(side['median'])} ({joules(side['ci95_low'])} – {joules(side['ci95_high'])})"
        )
        assert shown in page and shown in report
    versus = row["parallel_over_solo"]
    assert float(csv_row["parallel_over_solo"]) == versus["ratio"]
    assert float(csv_row["mann_whitney_p"]) == versus["p_value"]
    ratio = f"{times(versus['ratio'])} ({times(versus['ci95_low'])}–{times(versus['ci95_high'])})"
    assert ratio in page and ratio in report
    slow = row["slowdown"]
    slowdown = f"{times(slow['ratio'])} ({times(slow['ci95_low'])}–{times(slow['ci95_high'])})"
    assert slowdown in page and slowdown in report
    assert float(csv_row["slowdown"]) == slow["ratio"]
    gpu = row["energy_ratios"]["gpu"]
    assert gpu["ratio"] == versus["ratio"] and float(csv_row["energy_ratio_gpu"]) == gpu["ratio"]
    cov = f"{percent(par['coverage_median'])}, {percent(par['coverage_min'])}"
    assert cov in page and cov in report
    assert (
        row["verdict"] in page and row["verdict"] in report and csv_row["verdict"] == row["verdict"]
    )
    assert stats.format_p(versus["p_value"]) in page
    # The data the page was drawn from is the API's, number for number.
    drawn = page_response.context["data"].rows[0]
    assert drawn.comparison.ratio == versus["ratio"] and drawn.solo.summary.low == solo["ci95_low"]


def test_the_csv_reads_as_it_is_its_first_line_the_header(as_member, owner, wl):
    _pair(owner, wl)
    text = as_member.get("/compare/?workload=mnist&format=csv").content.decode()
    try:
        import pandas
    except ImportError:
        first = next(csv.reader(io.StringIO(text)))
        assert first[:3] == ["workload", "figure", "figure_label"]
        assert not text.startswith("#")
    else:
        frame = pandas.read_csv(io.StringIO(text))
        assert list(frame["workload"]) == ["mnist"]
        assert frame["solo_n"][0] == 7
    header = next(csv.reader(io.StringIO(text)))
    for column in ("figure_methods", "coverage_rule", "runs_lacking_figure", "median_interval"):
        assert column in header


def test_add_runs_queues_exactly_the_rows_configurations(as_member, member, owner, wl):
    other = {"learning_rate": 0.05, "epochs": 3}
    _pair(owner, wl, solo=SOLO_J[:3], par=PAR_J[:3])
    e = factories.experiment(owner, wl, status="succeeded", timeout=77.0, sleep_between_runs=2.0)
    factories.run(e, 0, 0, hyperparameters=other)
    page = as_member.get("/compare/?workload=mnist").content.decode()
    assert page.count('action="/compare/add-runs/"') == 3  # two rows, the whole table
    # The whole table's form carries each configuration, and the runs the rows need.
    whole = page[page.index("Add runs of every configuration above") :]
    whole = whole[: whole.index("</form>")]
    posted = [
        json.loads(html.unescape(v))
        for v in re.findall(r'name="configuration" value="([^"]+)"', whole)
    ]
    assert sorted(posted, key=str) == sorted([SAME, other], key=str)
    data = as_member.get("/compare/?workload=mnist").context["data"]
    assert f'value="{max(r.suggested_runs for r in data.rows)}"' in whole
    response = as_member.post(
        "/compare/add-runs/",
        {"workload": "mnist", "configuration": json.dumps(SAME), "runs": "4", "mode": "both"},
    )
    assert response.status_code == 302, response.content
    assert response["Location"] == "/compare/?workload=mnist"
    added = list(Experiment.objects.filter(status="queued").order_by("mode"))
    assert [(x.mode, x.runs_per_config, x.total_runs) for x in added] == [
        ("parallel", 4, 4),
        ("solo", 4, 4),
    ]
    assert all(x.plan == [{"index": 0, "hyperparameters": SAME}] for x in added)
    assert all(x.owner == member for x in added)
    assert added[0].background_workload is not None  # the parallel one keeps a background
    assert "chosen on Compare" in added[0].events[0]["message"]
    # The whole table: each configuration once, solo only, the solo settings kept.
    as_member.post(
        "/compare/add-runs/",
        {
            "workload": "mnist",
            "configuration": [json.dumps(SAME), json.dumps(other), json.dumps(SAME)],
            "runs": "2",
            "mode": "solo",
        },
    )
    whole = Experiment.objects.filter(status="queued", mode="solo").latest("id")
    assert [entry["hyperparameters"] for entry in whole.plan] == [SAME, other]
    assert whole.timeout == 77.0 and whole.total_runs == 4


def test_add_runs_refuses_bad_input_with_a_message(as_member, owner, wl):
    _pair(owner, wl, solo=SOLO_J[:3], par=PAR_J[:3])
    for data in (
        {"workload": "mnist", "configuration": "{not json", "runs": "2", "mode": "solo"},
        {"workload": "mnist", "configuration": json.dumps(SAME), "runs": "0", "mode": "solo"},
        {"workload": "mnist", "configuration": json.dumps(SAME), "runs": "2", "mode": "both?"},
        {
            "workload": "mnist",
            "configuration": json.dumps({"epochs": 9999}),
            "runs": "2",
            "mode": "solo",
        },
        {"workload": "nope", "configuration": json.dumps(SAME), "runs": "2", "mode": "solo"},
        {"workload": "mnist", "configuration": '{"a\\u0000": 1}', "runs": "2", "mode": "solo"},
        {"workload": "mnist", "configuration": '{"epochs": [1]}', "runs": "2", "mode": "solo"},
        {"workload": "mnist", "configuration": '{"epochs": 1e400}', "runs": "2", "mode": "solo"},
    ):
        response = as_member.post("/compare/add-runs/", data, follow=True)
        assert response.status_code == 200
        assert "Cannot add runs" in response.content.decode(), data
    assert not Experiment.objects.filter(status="queued").exists()


def test_non_finite_energies_are_left_out_and_counted_on_every_page(as_member, member, owner, wl):
    """Issue 18: an energy edited to 1.7e308 J made Compare, the report and the API 500
    (OverflowError in "more runs needed"; inf and an AttributeError for the total)."""
    s, p = _pair(owner, wl, solo=SOLO_J[:4], par=PAR_J[:4], cpu_energy_j=300.0, dram_energy_j=10.0)
    # Edited in the admin: each part is a float, their sum (the total) is not.
    Run.objects.filter(experiment=s, repeat_index__in=(0, 1)).update(
        gpu_energy_j=1.7e308, cpu_energy_j=1.7e308
    )
    api = _api(member)
    for figure in ("gpu", "total"):
        compare = as_member.get(f"/compare/?workload=mnist&figure={figure}")
        report = as_member.get(f"/experiments/{p.code}/report/?figure={figure}")
        doc = api.get(f"/api/workloads/mnist/comparison?figure={figure}")
        assert (compare.status_code, report.status_code, doc.status_code) == (200, 200, 200)
        assert (
            as_member.get(f"/compare/?workload=mnist&figure={figure}&format=csv").status_code == 200
        )
    # 1.7e308 + 1.7e308 as a total is inf: two runs left out, said on each.
    total = _text(as_member.get("/compare/?workload=mnist&figure=total").content.decode())
    assert "2 values left out as not finite" in total
    doc = api.get("/api/workloads/mnist/comparison?figure=total").json()
    assert doc["runs_not_finite"] == 2 and doc["values_not_finite"] == 2
    assert doc["rows"][0]["solo"]["n"] == 2
    report = _text(as_member.get(f"/experiments/{s.code}/report/?figure=total").content.decode())
    assert "2 values left out as not finite" in report


def test_the_experiment_page_says_what_to_change_when_coverage_fell_short(as_member, owner, wl):
    _s, p = _pair(owner, wl, par=PAR_J[:3], coverage=[99.0, 76.5, 59.4])
    Run.objects.filter(experiment=p, repeat_index=2).update(
        provenance={"coverage": {"advice": "Reduce the restart delay.", "gaps": []}}
    )
    page = _text(as_member.get(f"/experiments/{p.code}/").content.decode())
    assert (
        "2 parallel runs left out (coverage short of good, ≥ 95 %): coverage 76.5 %, 59.4 %" in page
    )
    assert "What to change: Reduce the restart delay. See run 1.3.1 (59.4 %)" in page
    run_page = _text(as_member.get(f"/experiments/{p.code}/runs/1.3.1/").content.decode())
    assert "What to change: Reduce the restart delay." in run_page


def test_the_comparison_endpoint_is_in_the_openapi_schema(as_member):
    schema = as_member.get("/api/openapi.json").json()
    assert "/api/workloads/{name}/comparison" in schema["paths"]
    assert "/api/experiments/{code}/comparison" in schema["paths"]
    props = schema["components"]["schemas"]["ComparisonOut"]["properties"]
    assert {"rows", "cannot_show", "parallel_runs_left_out", "intervals"} <= set(props)
    row = schema["components"]["schemas"]["ComparisonRowOut"]["properties"]
    assert {"slowdown", "energy_ratios", "parallel_over_solo", "verdict"} <= set(row)
    assert "device_settings" in row
    # The figures and units the schema lists are the ones the server knows.
    assert set(get_args(FigureKey)) == {f.key for f in figures.FIGURES}
    assert set(get_args(UnitName)) == set(carbon.UNITS)
    params = schema["paths"]["/api/workloads/{name}/comparison"]["get"]["parameters"]
    unit = next(p for p in params if p["name"] == "unit")
    assert set(unit["schema"]["enum"]) == set(carbon.UNITS)
    answers = schema["paths"]["/api/workloads/{name}/comparison"]["get"]["responses"]
    assert {"200", "401", "404", "422"} <= set(answers)


def test_the_comparison_endpoint_refuses_unknown_figures_units_and_workloads(member, wl):
    api = _api(member)
    assert api.get("/api/workloads/nope/comparison").status_code == 404
    assert api.get("/api/workloads/a%00b/comparison").status_code == 404
    assert api.get("/api/workloads/mnist/comparison?figure=watts").status_code == 422
    assert api.get("/api/workloads/mnist/comparison?unit=BTU").status_code == 422
    assert api.get("/api/workloads/mnist/comparison?coverage=some").status_code == 422
    assert Client().get("/api/workloads/mnist/comparison").status_code == 401
