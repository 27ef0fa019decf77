"""Playwright driving Debian's chromium (never a downloaded browser)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django's async-safety
    # check would then refuse the ORM calls the tests make between browser steps.
    # Only while a browser is open, so other tests keep the check.
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch(sync_playwright)
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


def _launch(sync_playwright):
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.js_errors = errors  # type: ignore[attr-defined]
    yield pg
    context.close()


def shoot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


AXE_REPORTS = SCREENSHOTS.parent / "axe"
#: Failing impacts, and rules that fail whatever axe rates them: the issue names empty
#: table headers (axe: "minor") beside the serious ones.
FAILING_IMPACTS = {"serious", "critical"}
ALWAYS_FAILING_RULES = {"empty-table-header"}


def axe_violations(page, name: str) -> list[str]:
    """axe-core (bundled by axe-playwright-python) on the page as it stands: WCAG 2.1
    A/AA and axe's best practices. Returns one line per failing violation (empty =
    accessible enough); the whole report goes to test-artifacts/axe/<name>.json."""
    import json

    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    AXE_REPORTS.mkdir(parents=True, exist_ok=True)
    (AXE_REPORTS / f"{name}.json").write_text(json.dumps(results.response["violations"], indent=1))
    return [
        f"{name}: {v['id']} ({v['impact']}) on {len(v['nodes'])} element(s), e.g. "
        f"{v['nodes'][0]['html'][:160]!r}: {v['help']}"
        for v in results.response["violations"]
        if v["impact"] in FAILING_IMPACTS or v["id"] in ALWAYS_FAILING_RULES
    ]
