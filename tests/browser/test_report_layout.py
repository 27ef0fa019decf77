"""The experiment report as a person reads it, on the page and as the downloaded file:
at a phone's width (390 px) and at a desktop's, no table runs past its card (a wide one
scrolls inside its own focusable, named region), the verdict column keeps a readable
width instead of one word per line, the chart's bars keep their drawn height, and
axe-core finds nothing serious."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.browser.conftest import axe_violations, login, shoot
from tests.web import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1360, "height": 900}}

#: Per card: how far its content runs past it; per scrolling table region: whether a
#: keyboard reaches it and what it is called; per verdict cell: its width in px.
LAYOUT = """() => ({
  page: document.documentElement.scrollWidth - window.innerWidth,
  cards: [...document.querySelectorAll('section.card')]
    .map(c => [c.id, c.scrollWidth - c.clientWidth]).filter(([, over]) => over > 1),
  regions: [...document.querySelectorAll('table')].map(t => {
    const box = t.closest('.scroll');
    return box ? [box.getAttribute('tabindex'), box.getAttribute('aria-label')] : ['none', ''];
  }),
  verdicts: [...document.querySelectorAll('td.verdict-text')]
    .map(td => Math.round(td.getBoundingClientRect().width)),
  // A chart's bar drawn at the height it was given, not a stylesheet's.
  bars: [...document.querySelectorAll('svg.chart rect.bar')].map(r =>
    Math.abs(r.getBBox().height - parseFloat(r.getAttribute('height')))).filter(d => d > 0.5),
  nbars: document.querySelectorAll('svg.chart rect.bar').length,
})"""


def _long_verdicts():
    """Parallel and solo on a laptop (CPU estimate): the verdict explains at length why
    it cannot tell what sharing costs."""
    user = get_user_model().objects.create_user("olivia", password="pw-olivia-123")
    wl = factories.workload("mnist-cnn")
    solo = factories.experiment(user, wl, name="laptop solo", status="succeeded")
    par = factories.experiment(
        user, wl, name="laptop parallel", status="succeeded", mode="parallel"
    )
    for exp, base in ((solo, 300.0), (par, 400.0)):
        for c in range(2):
            for i in range(3):
                factories.run(
                    exp,
                    c,
                    i,
                    hyperparameters={"learning_rate": [0.01, 0.003][c], "epochs": 2},
                    gpu_energy_j=None,
                    gpu_method="unavailable",
                    cpu_energy_j=base + 10 * i + c,
                    coverage_percent=96.0 if exp is par else None,
                    coverage_verdict="good" if exp is par else "",
                )
    return par


def _check(page, name: str) -> list[str]:
    layout = page.evaluate(LAYOUT)
    assert layout["page"] <= 0, (name, layout)
    assert layout["cards"] == [], (name, layout)
    assert layout["regions"] and all(tab == "0" and label for tab, label in layout["regions"]), (
        name,
        layout,
    )
    # One word per line would be ~100 px; a readable measure is at least twice that.
    assert layout["verdicts"] and min(layout["verdicts"]) >= 200, (name, layout)
    assert layout["nbars"] == 4 and layout["bars"] == [], (name, layout)
    return axe_violations(page, name)


def test_the_report_fits_a_phone_and_a_desktop_on_the_page_and_downloaded(live_server, browser):
    par = _long_verdicts()
    found: list[str] = []
    for width, viewport in WIDTHS.items():
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        try:
            login(page, live_server, "olivia", "pw-olivia-123")
            page.goto(f"{live_server.url}/experiments/{par.code}/report/")
            shoot(page, f"report-{width}")
            found += _check(page, f"report-{width}")
            downloaded = page.request.get(f"{live_server.url}/experiments/{par.code}/report.html")
            assert downloaded.ok
            page.set_content(downloaded.text())
            shoot(page, f"report-download-{width}")
            found += _check(page, f"report-download-{width}")
        finally:
            context.close()
    assert found == [], "\n".join(found)
