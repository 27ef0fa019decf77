"""The import-linter contracts in pyproject.toml hold, and each one breaks when the
import it forbids is added (to a copy of the code, never the checkout itself)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("core", "experiments", "workers", "webapp")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("layering")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _with_import(copy: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    path = copy / module
    original = path.read_text()
    path.write_text(original + f"\n{line}\n")
    try:
        return _lint_imports(copy)
    finally:
        path.write_text(original)


def test_the_code_keeps_every_contract(copy: Path) -> None:
    done = _lint_imports(copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "workers/runner.py",
            "import django.db  # noqa",
            "The engine (workers/ but tasks.py) imports no Django and nothing of the app",
        ),
        (
            "workers/energy/sampler.py",
            "from experiments import selectors  # noqa",
            "The engine (workers/ but tasks.py) imports no Django and nothing of the app",
        ),
        (
            "core/coverage.py",
            "from django.conf import settings  # noqa",
            "Pure modules import no Django and nothing else of Wattlab",
        ),
        (
            "experiments/mutation.py",
            "import django  # noqa",
            "Pure modules import no Django and nothing else of Wattlab",
        ),
        (
            "experiments/views/traces.py",
            "from workers.energy import session  # noqa",
            "The app, pages included, does not import the engine",
        ),
        (
            "core/trace.py",
            "from experiments import mutation  # noqa",
            "No cycles between the top-level packages",
        ),
        (
            "experiments/queues.py",
            "from webapp import celery  # noqa",
            "No cycles between the top-level packages",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    copy: Path, module: str, line: str, contract: str
) -> None:
    done = _with_import(copy, module, line)
    assert done.returncode != 0, done.stdout
    assert f"{contract} BROKEN" in done.stdout


def test_the_celery_app_is_current_in_every_thread() -> None:
    # experiments.queues sends through celery.current_app instead of importing
    # webapp.celery: that must be the project's app in a request thread too.
    from celery import current_app

    from webapp.celery import app

    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(current_app._get_current_object()))
    thread.start()
    thread.join()
    assert seen == [app]
