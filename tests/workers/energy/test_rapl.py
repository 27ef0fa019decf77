from pathlib import Path

import pytest

from workers.energy.meters import MeterUnavailable
from workers.energy.rapl import DEFAULT_POWERCAP_ROOT, WHOLE_MACHINE_FLAG, RaplCpuMeter

MAX_RANGE = 262_143_328_850


def _zone(path: Path, name: str, energy_uj: int, max_range: int = MAX_RANGE) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path / "energy_uj"


@pytest.fixture
def powercap(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A fake /sys/class/powercap laid out like the intel_rapl driver's."""
    root = tmp_path / "powercap"
    pkg = _zone(root / "intel-rapl:0", "package-0", 1_000_000)
    core = _zone(root / "intel-rapl:0" / "intel-rapl:0:0", "core", 500_000)
    dram = _zone(root / "intel-rapl:0" / "intel-rapl:0:1", "dram", 2_000_000)
    psys = _zone(root / "intel-rapl:1", "psys", 9_000_000)
    mmio = _zone(root / "intel-rapl-mmio:0", "package-0", 7_000_000)
    # /sys/class/powercap also lists every subzone at top level, as a symlink.
    (root / "intel-rapl:0:1").symlink_to(root / "intel-rapl:0" / "intel-rapl:0:1")
    return root, {"pkg": pkg, "core": core, "dram": dram, "psys": psys, "mmio": mmio}


def test_it_sums_package_and_dram_once_and_ignores_core_psys_and_mmio(
    powercap: tuple[Path, dict[str, Path]],
) -> None:
    root, files = powercap
    meter = RaplCpuMeter(root)
    meter.start(None)
    files["pkg"].write_text(f"{1_000_000 + 30_000_000}\n")  # +30 J
    files["dram"].write_text(f"{2_000_000 + 4_500_000}\n")  # +4.5 J
    files["core"].write_text("99000000\n")
    files["psys"].write_text("99000000\n")
    files["mmio"].write_text("99000000\n")
    reading = meter.stop()
    assert reading.package_j == pytest.approx(30.0)
    assert reading.dram_j == pytest.approx(4.5)
    assert WHOLE_MACHINE_FLAG in reading.flags
    assert "package-0" in meter.device and "dram" in meter.device


def test_it_handles_a_counter_wraparound(powercap: tuple[Path, dict[str, Path]]) -> None:
    root, files = powercap
    files["pkg"].write_text(f"{MAX_RANGE - 10_000_000}\n")
    meter = RaplCpuMeter(root)
    meter.start(None)
    files["pkg"].write_text(f"{MAX_RANGE - 1_000_000}\n")  # +9 J
    meter.poll()
    files["pkg"].write_text("5000000\n")  # wrapped: +1 J to the top, +5 J after
    meter.poll()
    files["pkg"].write_text("8000000\n")  # +3 J
    reading = meter.stop()
    assert reading.package_j == pytest.approx(18.0)
    assert any("wrapped 1 time" in f for f in reading.flags)


def test_a_tree_without_dram_reports_dram_as_not_measured(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    _zone(root / "intel-rapl:0", "package-0", 0)
    meter = RaplCpuMeter(root)
    meter.start(None)
    assert meter.stop().dram_j is None


def test_a_tree_with_no_rapl_zone_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "powercap" / "other:0").mkdir(parents=True)
    with pytest.raises(MeterUnavailable, match="no RAPL package or dram zone"):
        RaplCpuMeter(tmp_path / "powercap")


def test_powercap_on_this_machine_is_unavailable_with_a_reason() -> None:
    # For real: this dev box has no powercap tree (and non-root users could not read
    # energy_uj anyway). Where a host can read it, this check does not apply.
    try:
        RaplCpuMeter(DEFAULT_POWERCAP_ROOT)
    except MeterUnavailable as exc:
        assert str(DEFAULT_POWERCAP_ROOT) in str(exc) or "energy_uj" in str(exc)
    else:
        pytest.skip("this host can read RAPL")


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_wrap_with_an_unreadable_range_is_bridged_and_the_total_keeps_counting(
    tmp_path: Path,
) -> None:
    root = tmp_path / "powercap"
    energy = _zone(root / "intel-rapl:0", "package-0", 0)
    (root / "intel-rapl:0" / "max_energy_range_uj").unlink()  # unreadable range
    (root / "intel-rapl:0" / "max_energy_range_uj").mkdir()  # (reading it fails)
    clock = _Clock()
    energy.write_text(f"{MAX_RANGE - 3_000_000}\n")
    meter = RaplCpuMeter(root, clock=clock)
    meter.start(None)
    clock.now += 0.1
    energy.write_text(f"{MAX_RANGE - 1_000_000}\n")  # +2 J in 0.1 s: 20 W
    meter.poll()
    clock.now += 0.1
    energy.write_text("500000\n")  # wrapped: unknown part + 0.5 J; bridged at 20 W = 2 J
    meter.poll()
    clock.now += 0.1
    energy.write_text("2500000\n")  # +2 J: counting goes on after the wrap
    meter.poll()
    clock.now += 0.1
    energy.write_text("4500000\n")  # +2 J
    reading = meter.stop()
    assert reading.package_j == pytest.approx(8.0)
    assert any("max_energy_range_uj unreadable" in f for f in reading.flags)


def test_a_bridged_wrap_counts_at_least_what_was_counted_since_the_wrap(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    energy = _zone(root / "intel-rapl:0", "package-0", 0)
    (root / "intel-rapl:0" / "max_energy_range_uj").write_text("not a number\n")
    energy.write_text("9000000\n")
    meter = RaplCpuMeter(root)
    meter.start(None)
    energy.write_text("3000000\n")  # a wrap before any rate is known: >= 3 J
    reading = meter.stop()
    assert reading.package_j == pytest.approx(3.0)


@pytest.mark.parametrize("with_dram", [True, False])
def test_the_running_figure_is_package_plus_dram_of_the_reading(
    tmp_path: Path, with_dram: bool
) -> None:
    # What the live power line asks every tick, without building a reading.
    root = tmp_path / "powercap"
    pkg = _zone(root / "intel-rapl:0", "package-0", 1_000_000)
    dram = _zone(root / "intel-rapl:0" / "intel-rapl:0:1", "dram", 0) if with_dram else None
    meter = RaplCpuMeter(root)
    meter.start(None)
    for step in range(1, 4):
        pkg.write_text(f"{1_000_000 + step * 3_333_333}\n")
        if dram is not None:
            dram.write_text(f"{step * 1_111_111}\n")
        meter.poll()
        reading = meter.total()
        assert reading.package_j is not None
        assert meter.running_j() == reading.package_j + (reading.dram_j or 0.0)
    meter.stop()
