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


# --- The downloads beside the HTML: Markdown, LaTeX, SVG -----------------------------

HOSTILE = r"50% of_a & #1 {x} \evil | *b* <script>x</script>"
DOWNLOADS = ("report/", "report.html", "report.md", "report.tex", "report/versus.svg")


def _measured(owner, wl, *, name="exp", runs=6):
    """Solo and parallel on a GPU host: NVML counter and RAPL, the hardware recorded."""
    h = factories.host("gpu01")
    h.gpus[0].update(name="NVIDIA A100-SXM4-40GB", uuid="GPU-1234-abcd")
    h.meters = {
        "gpu": {"method": "nvml", "driver": "550.54.15"},
        "cpu": {"method": "rapl", "model": "AMD EPYC 7742 64-Core Processor"},
    }
    h.cpu_count = 128
    h.save()
    out = []
    for mode in ("solo", "parallel"):
        exp = factories.experiment(
            owner, wl, name=name, status="succeeded", mode=mode, host=h, gpu_index=0
        )
        for i in range(runs):
            factories.run(
                exp,
                0,
                i,
                hyperparameters={"learning_rate": 0.01, "note": "a|b"},
                gpu_energy_j=(1500.0 if mode == "solo" else 2000.0) + i,
                gpu_method="counter",
                gpu_uuid="GPU-1234-abcd",
                cpu_energy_j=300.0 + i,
                cpu_method="rapl",
                provenance={
                    "gpu": {"method": "counter", "sampling_period_s": 0.1},
                    "cpu": {"method": "rapl", "sampling_period_s": 0.1},
                },
                device_state={
                    "gpus": [{"index": 0, "name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-1234-abcd"}]
                },
                device_settings_key="NVIDIA A100-SXM4-40GB · 400 W",
            )
        out.append(exp)
    return out


@pytest.mark.parametrize("suffix", DOWNLOADS)
def test_the_report_and_its_downloads_follow_the_experiments_permission_rule(
    suffix, client, as_owner, as_member, as_staff, owner, wl
):
    _solo, par = _demo(owner, wl)
    for who in (as_owner, as_member, as_staff):
        assert who.get(f"/experiments/{par.code}/{suffix}").status_code == 200
    # Unknown to everyone: 404, as the report.
    unknown = "00000000-0000-4000-8000-000000000000"
    assert as_member.get(f"/experiments/{unknown}/{suffix}").status_code == 404
    response = client.get(f"/experiments/{par.code}/{suffix}")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_chart_the_report_does_not_have_is_a_404(as_member, owner, wl):
    _solo, par = _demo(owner, wl)
    assert as_member.get(f"/experiments/{par.code}/report/nope.svg").status_code == 404


def test_the_page_links_every_download_and_the_downloaded_file_links_none(as_member, owner, wl):
    _solo, par = _demo(owner, wl)
    page = as_member.get(f"/experiments/{par.code}/report/?figure=cpu").content.decode()
    for suffix in ("report.html", "report.md", "report.tex", "report/versus.svg"):
        assert f'href="/experiments/{par.code}/{suffix}?figure=cpu"' in page
    html = as_member.get(f"/experiments/{par.code}/report.html").content.decode()
    # Nothing that needs the server: no link, form or script, nothing fetched.
    assert not re.search(r"""(href|src|action)\s*=\s*["']?(/|https?:)""", html)
    assert not re.search(r"<script|<form|<link|<img|<iframe", html, re.I)
    assert "Recompute with today's factors" not in html
    assert "report.md" not in html and "versus.svg" not in html


def test_the_methods_paragraph_names_meters_n_interval_test_and_coverage_rule(as_member, owner, wl):
    from core.coverage import verdict_rule

    _solo, par = _measured(owner, wl)
    page = as_member.get(f"/experiments/{par.code}/report/?figure=gpu")
    methods = page.context["methods"]
    assert "GPU energy: NVML energy counter (6 runs), read through NVML" in methods
    assert "CPU package energy: RAPL powercap counter (6 runs)" in methods
    assert "Sampling period: GPU 0.1 s; CPU 0.1 s" in methods
    assert "solo n = 6, parallel n = 6" in methods
    assert stats.MEDIAN_METHOD in methods and stats.RATIO_METHOD in methods
    assert stats.TEST_METHOD in methods
    assert verdict_rule() in methods
    assert "No figure of these runs is an estimate" in methods
    md = as_member.get(f"/experiments/{par.code}/report.md?figure=gpu").content.decode()
    tex = as_member.get(f"/experiments/{par.code}/report.tex?figure=gpu").content.decode()
    for text in (page.content.decode(), md, tex):
        assert "NVML energy counter" in text and "RAPL powercap counter" in text
        assert "order-statistic (binomial) 95" in text
        assert "solo n = 6, parallel n = 6" in text
    assert "≥ 95 % good" in md and r"$\geq$ 95 \% good" in tex


def test_a_cpu_estimate_is_named_as_one_in_the_methods(as_member, owner, wl):
    _solo, par = _demo(owner, wl)
    methods = as_member.get(f"/experiments/{par.code}/report/").context["methods"]
    assert "GPU energy: not measured (3 runs)." in methods
    assert "Estimates, not measurements: the CPU energy" in methods
    assert "solo n = 3, parallel n = 3" in methods


def test_the_hardware_comes_from_the_records(as_member, owner, wl):
    _solo, par = _measured(owner, wl)
    facts = dict(
        (f.label, f.value)
        for f in as_member.get(f"/experiments/{par.code}/report/").context["hardware"]
    )
    assert facts["GPU model"] == "NVIDIA A100-SXM4-40GB"
    assert facts["GPU UUID"] == "GPU-1234-abcd"
    assert facts["GPU driver"] == "550.54.15"
    assert facts["CPU model"] == "AMD EPYC 7742 64-Core Processor"
    assert facts["Host"] == "gpu01"


def test_hardware_that_was_not_recorded_says_so(as_member, owner, wl):
    _solo, par = _demo(owner, wl)
    response = as_member.get(f"/experiments/{par.code}/report/")
    facts = {f.label: f.value for f in response.context["hardware"]}
    for label in ("GPU model", "GPU UUID", "GPU driver", "CPU model", "Host"):
        assert facts[label] == "not recorded", label
    assert "not recorded" in response.content.decode()


def _md_tables(text: str) -> dict[str, list[list[str]]]:
    """Each '## title' followed by a pipe table: its rows, cells split on unescaped |."""
    out: dict[str, list[list[str]]] = {}
    title = ""
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
        elif line.startswith("|") and title:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            out.setdefault(title, []).append(cells)
    return out


def test_the_markdown_tables_parse_into_rows(as_member, owner, wl):
    _solo, par = _measured(owner, wl)
    response = as_member.get(f"/experiments/{par.code}/report.md?figure=gpu")
    assert response["Content-Disposition"] == (
        f'attachment; filename="wattlab-report-{par.code}.md"'
    )
    tables = _md_tables(response.content.decode())
    runs = tables["Energy per run: GPU energy \\(device)".replace("\\(", "(")]
    header, rule, *rows = runs
    assert header[:2] == ["Run", "Status"] and set(rule) == {"---"}
    assert len(rows) == 6 and all(len(r) == len(header) for r in rows)
    # A | inside a value is escaped, not a new column; the exact value is kept.
    assert r"learning\_rate=0.01" in rows[0][2] and r"note=a\|b" in rows[0][2]
    assert rows[0][4] == "2 kJ (2000 J)"
    versus = tables["Parallel against solo: GPU energy (device)"]
    assert len(versus) == 3 and versus[0][0] == "Configuration"
    assert "1.5 kJ (1502.5 J)" in versus[2]  # solo median, exact beside it


def test_the_latex_has_a_tabular_with_the_rows_and_escapes_a_hostile_name(as_member, owner, wl):
    _solo, par = _measured(owner, wl, name=HOSTILE)
    response = as_member.get(f"/experiments/{par.code}/report.tex?figure=gpu")
    assert response.status_code == 200
    tex = response.content.decode()
    assert r"\begin{tabular}" in tex and tex.count(r"\begin{tabular}") == 5
    assert r"\end{document}" in tex
    assert (
        r"\section*{Wattlab report: 50\% of\_a \& \#1 \{x\} \textbackslash{}evil "
        r"\textbar{} *b* \textless{}script\textgreater{}x\textless{}/script\textgreater{}}"
    ) in tex
    # No special character of the name reaches LaTeX unescaped.
    body = tex.split(r"\begin{document}", 1)[1]
    # Less column breaks and the line-end comment after \resizebox (ours, not the name's).
    text = body.replace(r"\textbackslash{}", "").replace(" & ", " ").replace("{%\n", "{\n")
    assert not re.search(r"[^\x00-\x7f]", tex)  # pdflatex reads it without Unicode help
    assert not re.search(r"(?<!\\)[%&#_]", text)
    rows = [line for line in body.splitlines() if line.startswith("1.")]
    assert len(rows) == 6 and all(line.endswith(r"\\") for line in rows)
    assert "learning\\_rate=0.01" in rows[0]


def test_the_markdown_escapes_a_hostile_name(as_member, owner, wl):
    _solo, par = _measured(owner, wl, name=HOSTILE)
    md = as_member.get(f"/experiments/{par.code}/report.md").content.decode()
    first = md.splitlines()[0]
    assert first == (
        r"# Wattlab report: 50% of\_a & \#1 {x} \\evil \| \*b\* \<script\>x\</script\>"
    )
    assert "<script>" not in md


def test_the_chart_downloads_as_a_standalone_svg(as_member, owner, wl):
    import xml.etree.ElementTree as ET

    _solo, par = _measured(owner, wl, name=HOSTILE)
    response = as_member.get(f"/experiments/{par.code}/report/versus.svg?figure=gpu")
    assert response["Content-Type"].startswith("image/svg+xml")
    assert response["Content-Disposition"] == (
        f'attachment; filename="wattlab-report-{par.code}-versus.svg"'
    )
    root = ET.fromstring(response.content)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg" and root.get("width") and root.get("height")
    assert root.find(f"{ns}title").text.startswith("GPU energy (device), parallel vs solo")
    labels = [t.text for t in root.iter(f"{ns}text") if t.get("class") == "label"]
    assert "GPU energy (device) (J)" in labels and "configuration" in labels
    assert root.find(f"{ns}style") is not None  # its styles travel with it
    assert len(root.findall(f".//{ns}rect[@class='bar']")) == 2


def test_an_experiment_without_finished_runs_has_every_download(as_member, owner, wl):
    exp = factories.experiment(owner, wl, name=HOSTILE, status="queued", mode="parallel")
    factories.run(exp, 0, 0, status="failed", gpu_energy_j=None, cpu_energy_j=None)
    for suffix in DOWNLOADS:
        response = as_member.get(f"/experiments/{exp.code}/{suffix}")
        assert response.status_code == 200, suffix
    methods = as_member.get(f"/experiments/{exp.code}/report/").context["methods"]
    assert methods.startswith("0 finished runs")
    import xml.etree.ElementTree as ET

    root = ET.fromstring(as_member.get(f"/experiments/{exp.code}/report/versus.svg").content)
    # Nothing to draw: the file still says what it is.
    assert root.find("{http://www.w3.org/2000/svg}title").text.endswith("parallel vs solo")


def test_energies_scale_with_the_exact_value_on_hover(as_member, owner, wl):
    _solo, par = _measured(owner, wl)
    page = as_member.get(f"/experiments/{par.code}/report/?figure=gpu").content.decode()
    assert '<span class="q" title="2000 J">2 kJ</span>' in page
    assert "kWh" not in re.sub(r"<style>.*?</style>", "", page, flags=re.S).replace(
        "gCO2e/kWh", ""
    ).replace("kWh × PUE", "").replace("J, kJ, Wh or kWh", "")


@pytest.mark.parametrize("suffix", DOWNLOADS)
def test_odd_query_values_never_break_a_download(suffix, as_member, owner, wl):
    _solo, par = _demo(owner, wl)
    query = "?figure=%3Cscript%3E&factors=today&include_partial=%00&unit=kWh"
    assert as_member.get(f"/experiments/{par.code}/{suffix}{query}").status_code == 200
