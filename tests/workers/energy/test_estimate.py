import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from workers.energy.estimate import (
    WATTS_ENV,
    EstimateCpuMeter,
    _descendants,
    _Member,
    watts_per_core_from_env,
)

# A child that starts a grandchild; both burn CPU for a while, then exit.
BURN = (
    "import subprocess, sys, time\n"
    "def burn(s):\n"
    "    end = time.process_time() + s\n"
    "    while time.process_time() < end: pass\n"
    "g = subprocess.Popen([sys.executable, '-c', "
    "'import time\\nend=time.process_time()+0.4\\nwhile time.process_time()<end: pass'])\n"
    "burn(0.4)\n"
    "g.wait()\n"
    "time.sleep(1.2)\n"
)


def test_it_counts_the_cpu_time_of_children_and_grandchildren() -> None:
    proc = subprocess.Popen([sys.executable, "-c", BURN])
    meter = EstimateCpuMeter(watts_per_core=12.0)
    meter.start(proc.pid)
    while proc.poll() is None:
        meter.poll()  # at most once a second; the child idles long enough to be seen
        time.sleep(0.05)
    reading = meter.stop()
    assert meter.cpu_seconds >= 0.6
    assert reading.package_j == pytest.approx(meter.cpu_seconds * 12.0)
    assert reading.dram_j is None
    assert any("12 W per busy core" in f for f in reading.flags)


def test_without_a_foreground_process_there_is_no_estimate() -> None:
    meter = EstimateCpuMeter(watts_per_core=10.0)
    meter.start(None)
    assert meter.stop().package_j is None


def test_the_assumed_watts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WATTS_ENV, "7.5")
    assert watts_per_core_from_env() == 7.5
    monkeypatch.setenv(WATTS_ENV, "many")
    with pytest.raises(ValueError, match=WATTS_ENV):
        watts_per_core_from_env()


def _package(root: Path, name: str, limit_uw: int | None, constraint: str = "long_term") -> None:
    # Laid out like the intel_rapl driver's zone; energy_uj root-only as since Linux 5.10
    # does not matter: only the limit is read.
    root.mkdir(parents=True)
    (root / "name").write_text(name + "\n")
    (root / "energy_uj").write_text("0\n")
    if limit_uw is not None:
        (root / "constraint_0_name").write_text(constraint + "\n")
        (root / "constraint_0_power_limit_uw").write_text(f"{limit_uw}\n")


def _cpuinfo(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: X\nmodel name\t: {model}\nflags\t\t: fpu\n")
    return path


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WATTS_ENV, raising=False)


def test_watts_per_core_come_from_the_package_power_limits_in_powercap(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    _package(root / "intel-rapl:0", "package-0", 205_000_000)
    _package(root / "intel-rapl:1", "package-1", 205_000_000)
    _package(root / "intel-rapl-mmio:0", "package-0", 205_000_000)  # the same package again
    _package(root / "intel-rapl:0" / "intel-rapl:0:0", "core", 99_000_000)
    cpuinfo = _cpuinfo(tmp_path, "Intel(R) Xeon(R) Platinum 8480+")
    meter = EstimateCpuMeter(powercap_root=root, cpuinfo=cpuinfo, cores=56)
    assert meter.watts_per_core == pytest.approx(410 / 56)
    assert meter.assumed.source == "powercap"
    meter.start(None)
    assert meter.stop().package_j is None  # no process: still no number


def test_without_a_power_limit_the_cpu_model_family_table_is_used(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    _package(root / "intel-rapl:0", "package-0", None)  # AMD: no constraint files
    cpuinfo = _cpuinfo(tmp_path, "AMD EPYC 7763 64-Core Processor")
    meter = EstimateCpuMeter(powercap_root=root, cpuinfo=cpuinfo, cores=64)
    assert meter.watts_per_core == pytest.approx(280 / 64)
    assert meter.assumed.source == "table"
    assert "Milan" in meter.assumed.flag()


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("AMD EPYC 9654 96-Core Processor", 360 / 96),
        ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 270 / 40),
        ("Intel(R) Xeon(R) Platinum 8280 CPU @ 2.70GHz", 205 / 28),
        ("Intel(R) Xeon(R) Platinum 8480+", 350 / 56),
    ],
)
def test_the_family_table_reads_the_generation_from_the_model_name(
    tmp_path: Path, model: str, expected: float
) -> None:
    meter = EstimateCpuMeter(powercap_root=tmp_path / "none", cpuinfo=_cpuinfo(tmp_path, model))
    assert meter.watts_per_core == pytest.approx(expected)


def test_an_unknown_cpu_gets_the_generic_figure_and_says_so(tmp_path: Path) -> None:
    meter = EstimateCpuMeter(
        powercap_root=tmp_path / "none", cpuinfo=_cpuinfo(tmp_path, "Some ARM thing")
    )
    assert meter.watts_per_core < 10.0  # the old 10 W is too high for current servers
    assert meter.assumed.source == "default"


def test_the_flag_says_where_the_watts_come_from(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    _package(root / "intel-rapl:0", "package-0", 280_000_000)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    meter = EstimateCpuMeter(powercap_root=root, cpuinfo=tmp_path / "none", cores=64)
    meter.start(proc.pid)
    proc.wait()
    flags = meter.stop().flags
    assert "watts per core from powercap: package power limit 280 W" in " ".join(flags)
    assert "/ 64 cores" in " ".join(flags)


def test_the_environment_overrides_powercap_and_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "powercap"
    _package(root / "intel-rapl:0", "package-0", 280_000_000)
    monkeypatch.setenv(WATTS_ENV, "7.5")
    meter = EstimateCpuMeter(powercap_root=root, cores=64)
    assert (meter.watts_per_core, meter.assumed.source) == (7.5, "env")


# A child that starts a grandchild, both then idle: a tree that holds still.
TREE = (
    "import subprocess, sys, time\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
    "print(g.pid, flush=True)\n"
    "time.sleep(30)\n"
)


def test_the_tree_is_found_as_psutil_finds_it_and_its_cpu_time_read_the_same() -> None:
    # The estimate reads /proc itself (issue 8: the overhead benchmark): the members
    # and their CPU seconds must be psutil's, to the last bit of the float.
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        leader = _Member(proc.pid)
        try:
            ours = [pid for pid, _start in _descendants(leader)]
            theirs = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
            assert ours == theirs == [grandchild]
            for pid in (proc.pid, grandchild):
                os.kill(pid, signal.SIGSTOP)  # frozen CPU times: one moment, two readers
            for pid in (proc.pid, grandchild):
                t = psutil.Process(pid).cpu_times()
                expected = float(t.user + t.system + t.children_user + t.children_system)
                member = _Member(pid)
                try:
                    assert member.cpu_seconds() == expected
                finally:
                    member.close()
        finally:
            leader.close()
    finally:
        for pid in (proc.pid, grandchild):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_a_member_is_its_process_not_its_pid_number() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    member = _Member(proc.pid)
    try:
        with pytest.raises(ProcessLookupError):
            _Member(proc.pid, start=b"1")  # started at another time: a reused pid
        proc.kill()
        proc.wait()  # reaped: the kept descriptor no longer reads anything
        with pytest.raises(OSError):
            member.cpu_seconds()
    finally:
        member.close()


def test_the_running_figure_is_the_readings() -> None:
    proc = subprocess.Popen([sys.executable, "-c", BURN])
    meter = EstimateCpuMeter(watts_per_core=12.0)
    meter.start(proc.pid)
    time.sleep(1.1)
    meter.poll()
    assert meter.running_j() == meter.total().package_j
    proc.wait()
    reading = meter.stop()
    assert meter.running_j() == reading.package_j
    assert meter._members == []  # every kept /proc descriptor is closed at stop
    empty = EstimateCpuMeter(watts_per_core=12.0)
    empty.start(None)
    assert empty.running_j() is None and empty.total().package_j is None
