"""The live compose test (marker ``compose``) runs only when asked for, by
``make test-compose`` (``-m compose``): it needs root, Docker and several minutes, and
``make test`` must stay within its time. The fast checks beside it run with the suite."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "compose" in (config.option.markexpr or ""):
        return
    live = [item for item in items if item.get_closest_marker("compose")]
    if live:
        config.hook.pytest_deselected(items=live)
        items[:] = [item for item in items if not item.get_closest_marker("compose")]
