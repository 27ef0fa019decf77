"""The pages as a person sees them: at a phone's width (390 px) no page is wider than
the screen (the navigation wraps, wide tables and charts scroll inside their own box,
which a keyboard reaches: axe-core finds nothing serious there either),
and at a desktop's every chart draws its points, bars, lines and bands inside its plot
area, its legend outside it."""

from __future__ import annotations

import pytest

from experiments.models import Experiment
from tests.browser.conftest import axe_violations, login, shoot
from tests.browser.test_pages_render import _history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}

#: Elements that stick out past the right edge of the screen and are not inside a box
#: that scrolls them: what makes a page wider than the screen.
OVERFLOWING = """() => {
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= window.innerWidth + 1) continue;
    let p = el.parentElement, clipped = false;
    while (p && p !== document.body) {
      const s = getComputedStyle(p).overflowX;
      if (s === 'auto' || s === 'scroll' || s === 'hidden') { clipped = true; break; }
      p = p.parentElement;
    }
    const edge = Math.round(r.right);
    if (!clipped) out.push(`${el.tagName.toLowerCase()}.${el.className} (right edge ${edge} px)`);
  }
  return out.slice(0, 8);
}"""


def _pages(par: Experiment, solo: Experiment) -> dict[str, str]:
    return {
        "list": "/",
        "experiment": f"/experiments/{par.code}/",
        "run": f"/experiments/{par.code}/runs/1.2.1/",
        "compare": "/compare/?workload=mnist-cnn",
        "report": f"/experiments/{solo.code}/report/",
        "new-experiment": "/experiments/new/",
    }


def test_no_page_is_wider_than_a_phone(live_server, browser):
    _user, par = _history()
    solo = Experiment.objects.get(name="baseline solo")
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        login(page, live_server, "olivia", "pw-olivia-123")
        too_wide, axe = {}, []
        for name, path in _pages(par, solo).items():
            page.goto(live_server.url + path)
            if name == "new-experiment":  # its widest state: parameters and background
                page.select_option("#id_workload", "mnist-cnn")
                page.wait_for_selector("#id_hp__learning_rate")
                page.check("#id_parallel")
            page.wait_for_load_state("networkidle")
            shoot(page, f"phone-{name}")
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > PHONE["width"]:
                too_wide[name] = (width, page.evaluate(OVERFLOWING))
            # What scrolls sideways here must be reachable by keyboard too (axe).
            axe += axe_violations(page, f"phone-{name}")
            # Every link of the navigation is on the screen, none past its edge.
            for link in page.locator("header.topbar a, header.topbar button").all():
                box = link.bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], name
        assert too_wide == {}
        assert axe == [], "\n".join(axe)
    finally:
        context.close()


#: Per chart: the marks drawn outside the plot area (data-plot-area, in the chart's
#: own units), legend items drawn inside it, and how many marks there are.
MARKS = """() => [...document.querySelectorAll('svg.chart[data-plot-area]')].map(svg => {
  const [left, top, right, bottom] = svg.dataset.plotArea.split(' ').map(Number);
  const marks = svg.querySelectorAll(
    'circle:not(.key), polyline, polygon, rect.bar, line.whisker');
  const outside = [];
  for (const el of marks) {
    const b = el.getBBox();
    if (b.x < left - 0.5 || b.y < top - 0.5 || b.x + b.width > right + 0.5
        || b.y + b.height > bottom + 0.5) {
      outside.push(el.outerHTML.slice(0, 140));
    }
  }
  const legendInside = [...svg.querySelectorAll('.key, text.legend')]
    .filter(k => k.getBBox().y + k.getBBox().height > top + 0.5).map(k => k.outerHTML.slice(0, 80));
  return {title: svg.getAttribute('aria-label'), marks: marks.length, outside, legendInside};
})"""


def test_every_charts_marks_lie_inside_its_plot_area(live_server, page):
    _user, par = _history()
    login(page, live_server, "olivia", "pw-olivia-123")
    seen = []
    for path in (
        "/compare/?workload=mnist-cnn",
        f"/experiments/{par.code}/runs/1.2.1/",
        f"/experiments/{par.code}/",
    ):
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        seen += page.evaluate(MARKS)
    assert len(seen) >= 4, seen  # the compare page's three, the run's power at least
    for chart in seen:
        assert chart["marks"] > 0, chart
        assert chart["outside"] == [], chart
        assert chart["legendInside"] == [], chart
    titles = " | ".join(c["title"] for c in seen)
    assert "against learning_rate" in titles and "parallel vs solo" in titles, titles
