import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.energy.meters import MeterUnavailable
from workers.energy.perf import (
    PKG_EVENT,
    RAM_EVENT,
    PerfCpuMeter,
    parse_perf_stat,
    perf_error_reason,
    probe_events,
)

TRACES = Path(__file__).resolve().parents[3] / "data" / "traces" / "rtx3080"
RUNS = sorted(p for p in TRACES.iterdir() if (p / "cpu_energy_raw.txt").is_file())


def _legacy_metrics(run: Path) -> dict[str, float]:
    data = json.loads((run / "experiment.json").read_text())
    block = data.get("foreground", data)
    return dict(block["energy_metrics"])


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_it_parses_recorded_perf_output_with_thousands_separators(run: Path) -> None:
    # Recorded: the real `perf stat -e power/energy-pkg/,power/energy-ram/` output of
    # two RTX 3080 host runs (shared/traces), checked against what the earlier tool read.
    result = parse_perf_stat((run / "cpu_energy_raw.txt").read_text())
    legacy = _legacy_metrics(run)
    assert result.joules[PKG_EVENT] == pytest.approx(legacy["cpu_energy_pkg_joules"])
    assert result.joules[RAM_EVENT] == pytest.approx(legacy["cpu_energy_ram_joules"])
    assert result.elapsed_s is not None and result.elapsed_s > 100


def test_unsupported_counters_are_none_not_zero() -> None:
    text = """
 Performance counter stats for 'system wide':

     <not supported> Joules power/energy-ram/
            1'234.50 Joules power/energy-pkg/

       1.001 seconds time elapsed
"""
    result = parse_perf_stat(text)
    assert result.joules == {RAM_EVENT: None, PKG_EVENT: 1234.5}
    assert result.elapsed_s == pytest.approx(1.001)


def test_c_locale_output_without_grouping() -> None:
    result = parse_perf_stat("             12.34 Joules power/energy-pkg/\n")
    assert result.joules[PKG_EVENT] == pytest.approx(12.34)


def test_perf_on_this_machine_reports_why_it_cannot_count_energy() -> None:
    # For real: /usr/bin/perf exists here but the kernel exposes no `power` PMU.
    try:
        events = probe_events()
    except MeterUnavailable as exc:
        assert "perf" in str(exc)
    else:
        pytest.skip(f"this host's perf counts {events}")


# What perf 6.1 prints on this VM (no `power` PMU terms), copied verbatim.
NO_POWER_PMU = """event syntax error: 'power/energy-pkg/'
                           \\___ unknown term 'energy-pkg' for pmu 'power'

valid terms: event,config,config1,config2,name,period,percore,metric-id
"""


def test_perf_error_reason_is_one_readable_line_without_the_pointer_art() -> None:
    assert perf_error_reason(NO_POWER_PMU, 129) == (
        "event syntax error: 'power/energy-pkg/': unknown term 'energy-pkg' for pmu 'power'"
    )
    assert perf_error_reason("", 1) == "exit code 1"


def _perf_counts_here() -> bool:
    perf = shutil.which("perf")
    if perf is None:
        return False
    done = subprocess.run(
        [perf, "stat", "-a", "-e", "cpu-clock", "--", "true"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0


needs_perf = pytest.mark.skipif(
    not _perf_counts_here(), reason="perf cannot count system wide for this user"
)


def _slow_perf(tmp_path: Path, *, control: bool) -> str:
    """The real perf, reached 0.6 s late (a loaded host); without ``control`` it
    rejects --control as a perf before 5.9 does."""
    wrapper = tmp_path / "slow-perf"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        f"if {not control} and '--control' in sys.argv:\n"
        '    sys.stderr.write("unknown option `control\'\\n")\n'
        "    sys.exit(129)\n"
        "time.sleep(0.6)\n"
        f"os.execv({shutil.which('perf')!r}, [{shutil.which('perf')!r}, *sys.argv[1:]])\n"
    )
    wrapper.chmod(0o755)
    return str(wrapper)


@needs_perf
def test_perf_counts_from_the_window_start_even_when_it_is_slow_to_start(tmp_path: Path) -> None:
    # Real perf counting a software event (this host has no power PMU): what is
    # checked is when it counts, not what.
    meter = PerfCpuMeter(events=["cpu-clock"], perf=_slow_perf(tmp_path, control=True))
    meter.start(None)
    time.sleep(1.0)
    reading = meter.stop()
    assert meter.aligned
    assert meter.window_s is not None and meter.counted_s is not None
    assert meter.counted_s == pytest.approx(meter.window_s, abs=0.1)
    assert not any("started" in f and "late" in f for f in reading.flags)


@needs_perf
def test_a_perf_without_control_that_starts_late_is_flagged(tmp_path: Path) -> None:
    meter = PerfCpuMeter(events=["cpu-clock"], perf=_slow_perf(tmp_path, control=False))
    meter.start(None)
    time.sleep(2.5)  # the wrapper's interpreter start-up adds to its 0.6 s on a busy host
    reading = meter.stop()
    assert not meter.aligned
    late = [f for f in reading.flags if "late" in f]
    assert late, reading.flags
    assert "no --control" in late[0]
    assert meter.window_s is not None and meter.counted_s is not None
    assert meter.window_s - meter.counted_s >= 0.5
