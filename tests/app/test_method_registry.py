"""Issue 12 item 13: the energy methods are one registry (``core.contract.METHODS``);
the model's choices, the pages' labels and the CPU meter chain all read it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from core.contract import CPU_METHODS, METHOD_INFO, METHODS, MethodInfo
from experiments.models import Run
from experiments.templatetags.wattlab import energy, method_label
from workers.energy import session
from workers.energy.meters import CpuReading


def test_the_model_choices_are_the_registry() -> None:
    assert Run.Method.choices == [(m.name, m.label) for m in METHODS]
    assert Run.Method.LEGACY_POWER_SUM == "legacy_power_sum"


def test_the_pages_label_every_method_from_the_registry() -> None:
    for info in METHODS:
        assert method_label(info.name) == info.label
        assert f">{info.short}</span>" in energy(1.0, info.name)


def test_the_cpu_meters_are_tried_in_the_registry_order(tmp_path: Path) -> None:
    assert [m.name for m in CPU_METHODS] == ["rapl", "perf", "estimate"]
    _meter, reasons = session._open_cpu(tmp_path / "no-powercap", try_perf=False)
    assert list(reasons) == ["rapl", "perf"]


class OneJouleMeter:
    """A new CPU meter, known to the engine through one registry entry only."""

    method = "one_joule"
    device = "test meter"
    whole_machine = False
    updated_at: float | None = None

    def __init__(self, root: Path) -> None:
        self.root = root

    def start(self, foreground_pid: int | None) -> None: ...

    def poll(self) -> None: ...

    def total(self) -> CpuReading:
        return CpuReading(1.0, None)

    def stop(self) -> CpuReading:
        return CpuReading(1.0, None)


def test_a_new_cpu_meter_needs_its_module_and_one_registration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = MethodInfo(
        "one_joule",
        "one joule, always",
        "1 J",
        cpu_meter=f"{__name__}:OneJouleMeter",
        cpu_sampling="sampler",
        covers_dram=False,
    )
    monkeypatch.setattr(session, "CPU_METHODS", (entry, *CPU_METHODS))
    monkeypatch.setattr(session, "METHOD_INFO", {**METHOD_INFO, entry.name: entry})
    meters = session.open_meters([0], powercap_root=tmp_path, double="synthetic:10")
    assert isinstance(meters.cpu, OneJouleMeter) and meters.cpu.root == tmp_path
    m = session.Measurement(meters=meters, hz=20.0)
    m.start(foreground_pid=os.getpid())
    report, _ = m.stop()
    assert (report.cpu.value, report.cpu.method) == (1.0, "one_joule")
    assert report.cpu.sampling_period_s == pytest.approx(0.05)  # "sampler"
    assert "one_joule does not cover DRAM" in report.dram.flags
    assert dataclasses.asdict(entry)["cpu_meter"].endswith("OneJouleMeter")
