"""Shared helpers for engine tests: real child programs, a unique marker per test."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.nvml import FakeNvmlLibrary
from workers.procgroup import find_marked

PROGRAMS = Path(__file__).resolve().parent / "programs"
PY = sys.executable


def program(name: str, *args: str) -> list[str]:
    return [PY, str(PROGRAMS / name), *args]


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """True for a live process; a zombie has ended (only its parent's bookkeeping is left)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def read_pids(path: Path, count: int) -> list[int]:
    wait_for(path.exists, what=f"{path}")
    pids = [int(line) for line in path.read_text().split()]
    assert len(pids) == count, pids
    return pids


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique experiment marker; whatever still carries it after the test is killed
    (so one failing test cannot leak processes into the others) and the test fails."""
    code = f"test-{uuid.uuid4()}"
    yield code
    leftovers = find_marked(code)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not leftovers, f"processes left behind by the test: {leftovers}"


def fake_nvml(monkeypatch: pytest.MonkeyPatch, count: int = 1) -> FakeNvmlLibrary:
    """The fake NVML library (tests/fakes/nvml.py) in place of pynvml for this process,
    NVML closed, per-process utilisation read on every sample."""
    from workers.energy import nvml

    lib = FakeNvmlLibrary(count)
    monkeypatch.setattr(nvml, "_pynvml", lib)
    monkeypatch.setattr(nvml, "_open_pid", None)
    monkeypatch.setattr(nvml, "_meters_open", 0)
    monkeypatch.setattr(nvml, "PROC_UTIL_PERIOD_S", 0.0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("WATTLAB_METER_DOUBLE", raising=False)
    return lib


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvmlLibrary:
    return fake_nvml(monkeypatch)


@pytest.fixture
def fake2(monkeypatch: pytest.MonkeyPatch) -> FakeNvmlLibrary:
    return fake_nvml(monkeypatch, count=2)
