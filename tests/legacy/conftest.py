from __future__ import annotations

from pathlib import Path

import pytest

LEGACY = Path(__file__).resolve().parents[2] / ".." / "shared" / "legacy"


@pytest.fixture
def legacy_dir() -> Path:
    return LEGACY
