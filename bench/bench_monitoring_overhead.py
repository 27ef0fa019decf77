"""Monitoring overhead: CPU time spent measuring, per second of run, as % of one core.

One run, side by side, on the same workload (a child process keeping one core busy):

- ``wattlab``: our Measurement at 10 Hz with the meters this host has (here: no GPU,
  CPU estimate), in its own process;
- ``wattlab+gpu-double``: the same with the synthetic GPU double (adds the per-tick
  GPU bookkeeping; the double's read is cheaper than a real NVML call);
- ``codecarbon@0.1s``: CodeCarbon's OfflineEmissionsTracker at the same 10 Hz rate
  (the finest like-for-like setting; it has no minimum interval);
- ``codecarbon@1s``: the same at 1 s, a common "fine" setting.

Each monitor runs in its own process whose main thread only sleeps, so that
process's CPU time between start() and stop() is the monitor's cost (CodeCarbon
starts a new threading.Timer thread per tick, so per-thread accounting cannot follow
it; process CPU time can). For ours, the sampler thread's own CPU time
(``time.thread_time`` inside the thread) is reported too. Start-up costs (imports,
CodeCarbon's hardware detection) are excluded for both.

    .venv/bin/python bench/bench_monitoring_overhead.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BURN = (
    "import time\nend = time.monotonic() + {s}\n"
    "while time.monotonic() < end:\n    sum(range(1000))\n"
)


def monitor(kind: str, pid: int, seconds: float) -> dict[str, float | str]:
    """Runs in a child process: measure ``pid`` for ``seconds``; print our CPU cost."""
    if kind.startswith("wattlab"):
        from workers.energy.session import Measurement, open_meters

        double = "synthetic:250" if kind == "wattlab+gpu-double" else ""
        meters = open_meters([0], double=double)
        m = Measurement(meters=meters, hz=10.0)
        cpu0, t0 = time.process_time(), time.monotonic()
        m.start(foreground_pid=pid)
        time.sleep(seconds)
        cpu1, t1 = time.process_time(), time.monotonic()
        report, trace = m.stop()
        meters.close()
        return {
            "kind": kind,
            "process_cpu_s": cpu1 - cpu0,
            "thread_cpu_s": report.summaries["sampler_cpu_s"] or 0.0,
            "wall_s": t1 - t0,
            "samples": report.summaries["samples"] or 0.0,
            "meters": f"gpu={report.gpu.method} cpu={report.cpu.method}",
        }
    from codecarbon import OfflineEmissionsTracker

    interval = 0.1 if kind == "codecarbon@0.1s" else 1.0
    tracker = OfflineEmissionsTracker(
        country_iso_code="USA",
        measure_power_secs=interval,
        save_to_file=False,
        log_level="error",
        allow_multiple_runs=True,
    )
    tracker.start()
    cpu0, t0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = time.process_time(), time.monotonic()
    samples = float(getattr(tracker, "_measure_occurrence", 0))
    hardware = ", ".join(type(h).__name__ for h in getattr(tracker, "_hardware", []))
    tracker.stop()
    return {
        "kind": kind,
        "process_cpu_s": cpu1 - cpu0,
        "thread_cpu_s": float("nan"),
        "wall_s": t1 - t0,
        "samples": samples,
        "meters": f"codecarbon offline: {hardware}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--monitor", help=argparse.SUPPRESS)
    parser.add_argument("--pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--kinds",
        default="wattlab,wattlab+gpu-double,codecarbon@0.1s,codecarbon@1s",
        help="comma-separated monitors to run side by side",
    )
    args = parser.parse_args()
    if args.monitor:
        print(json.dumps(monitor(args.monitor, args.pid, args.seconds)))
        return

    workload = subprocess.Popen(
        [sys.executable, "-c", BURN.format(s=args.seconds + 60)], start_new_session=True
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("WATTLAB_METER_DOUBLE", None)
    kinds = args.kinds.split(",")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--monitor",
                k,
                "--pid",
                str(workload.pid),
                "--seconds",
                str(args.seconds),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # CodeCarbon logs at INFO whatever log_level says
            text=True,
            env=env,
        )
        for k in kinds
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=args.seconds + 300)
            if proc.returncode != 0:
                raise SystemExit(f"a monitor failed:\n{err}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        workload.kill()
        workload.wait()
    print(f"workload: one busy core for the run; window {args.seconds:g} s; {os.cpu_count()} CPUs")
    print(f"{'monitor':22} {'samples':>8} {'cpu s':>8} {'% of a core':>12} {'thread %':>9}  meters")
    ours = None
    for r in results:
        share = 100 * r["process_cpu_s"] / r["wall_s"]
        thread = 100 * r["thread_cpu_s"] / r["wall_s"]
        if r["kind"] == "wattlab":
            ours = share
        print(
            f"{r['kind']:22} {r['samples']:8.0f} {r['process_cpu_s']:8.3f} {share:11.3f}% "
            f"{thread:8.3f}%  {r['meters']}"
        )
    if ours:
        for r in results:
            if r["kind"].startswith("codecarbon"):
                share = 100 * r["process_cpu_s"] / r["wall_s"]
                print(f"ratio {r['kind']} / wattlab = {share / ours:.1f}x")


if __name__ == "__main__":
    main()
