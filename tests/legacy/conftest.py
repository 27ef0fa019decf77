from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command

LEGACY = Path(__file__).resolve().parents[2] / "data" / "legacy"


@pytest.fixture
def legacy_dir() -> Path:
    return LEGACY


@pytest.fixture
def workloads(db, legacy_dir, tmp_path):
    """The earlier profiler's registry imported as workloads (their programs under tmp_path)."""
    call_command(
        "import_legacy_workloads",
        str(legacy_dir / "models_config.json"),
        root=str(tmp_path),
        stdout=io.StringIO(),
    )
