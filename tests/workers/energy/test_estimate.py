import subprocess
import sys
import time

import pytest

from workers.energy.estimate import WATTS_ENV, EstimateCpuMeter, watts_per_core_from_env

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
