"""Monitoring overhead: CPU time spent measuring, per second of run, as % of one core.

One run, side by side, on the same workload (a child process keeping one core busy):

- ``wattlab``: our Measurement at 10 Hz with the meters this host has (here: no GPU,
  CPU estimate), in its own process;
- ``wattlab+gpu-double``: the same with the synthetic GPU double (adds the per-tick
  GPU bookkeeping; the double's read is cheaper than a real NVML call);
- ``wattlab+rapl-tree``: the RAPL meter reading a powercap-like file tree (two zones,
  read every tick) that this process rewrites each second (the CPU time of those
  writes is taken out: they stand in for the kernel): the RAPL path's own bookkeeping
  (wrap handling, power per tick), not the kernel's MSR read behind a real
  ``energy_uj``;
- ``floor``: a sampler thread whose 10 Hz tick does nothing: what waking a Python
  thread ten times a second costs on this host under the same load (no ratio);
- ``codecarbon@0.1s``: CodeCarbon's OfflineEmissionsTracker at the same 10 Hz rate
  (the finest like-for-like setting; it has no minimum interval);
- ``codecarbon@1s``: the same at 1 s, a common "fine" setting.

Each monitor runs in its own process whose main thread only sleeps, so that
process's CPU time between start() and stop() is the monitor's cost (CodeCarbon
starts a new threading.Timer thread per tick, so per-thread accounting cannot follow
it; process CPU time can). For ours, the sampler thread's own CPU time
(``time.thread_time`` inside the thread) is reported too. Start-up costs (imports,
CodeCarbon's hardware detection) are excluded for both.

Ours includes what the runner does besides sampling: every ``--live-every`` seconds
(2 s, as the runner) the main thread takes ``trace_bytes()`` for the live chart: that
is in the process CPU time, and its own share is the ``live ms`` column (``live KB``:
the last live trace's size). ``stop ms`` is the one-off cost of ``stop()`` (report and
stored trace), taken after the window and not in the percentage.

    .venv/bin/python bench/bench_monitoring_overhead.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BURN = (
    "import time\nend = time.monotonic() + {s}\n"
    "while time.monotonic() < end:\n    sum(range(1000))\n"
)


def _rapl_tree(root: Path) -> list[Path]:
    """A powercap-like tree: package-0 and its dram zone, as the intel_rapl driver lays
    them out (a plain file tree, labelled as such in the results)."""
    files = []
    for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0/intel-rapl:0:0", "dram")):
        d = root / zone
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text("0\n")
        (d / "max_energy_range_uj").write_text("262143328850\n")
        files.append(d / "energy_uj")
    return files


def monitor(kind: str, pid: int, seconds: float, live_every: float) -> dict[str, float | str]:
    """Runs in a child process: measure ``pid`` for ``seconds``; print our CPU cost."""
    if kind == "floor":
        # A 10 Hz sampler thread whose tick does nothing: the cost of waking a Python
        # thread ten times a second on this host, under the same load, for reference.
        from workers.energy.sampler import Sampler

        sampler = Sampler(lambda now: None, 10.0)
        cpu0, t0 = time.process_time(), time.monotonic()
        sampler.start()
        time.sleep(seconds)
        cpu1, t1 = time.process_time(), time.monotonic()
        sampler.stop()
        return {
            "kind": kind,
            "process_cpu_s": cpu1 - cpu0,
            "thread_cpu_s": sampler.cpu_s,
            "live_cpu_s": float("nan"),
            "live_kb": float("nan"),
            "stop_cpu_s": float("nan"),
            "wall_s": t1 - t0,
            "samples": float(sampler.ticks),
            "meters": "none: an empty 10 Hz tick (reference)",
        }
    if kind.startswith("wattlab"):
        from workers.energy.rapl import RaplCpuMeter
        from workers.energy.session import Measurement, MeterSet, open_meters

        tmp = Path(tempfile.mkdtemp(prefix="wattlab-bench-rapl-"))
        counters: list[Path] = []
        if kind == "wattlab+rapl-tree":
            counters = _rapl_tree(tmp / "powercap")
            meters = MeterSet([], RaplCpuMeter(tmp / "powercap"))
        else:
            double = "synthetic:250" if kind == "wattlab+gpu-double" else ""
            meters = open_meters([0], double=double)
        m = Measurement(meters=meters, hz=10.0)
        live_cpu = 0.0
        live_bytes = 0
        cpu0, t0 = time.process_time(), time.monotonic()
        m.start(foreground_pid=pid)
        # The runner's thread: the live chart's trace every live_every seconds (and,
        # for the RAPL tree, the "kernel" moving its counters once a second).
        end = t0 + seconds
        next_live = t0 + live_every
        next_tick = t0 + 1.0
        energy = 0
        kernel_cpu = 0.0  # the stand-in kernel's writes: not monitoring, taken out below
        while (now := time.monotonic()) < end:
            if counters and now >= next_tick:
                c = time.process_time()
                energy += 50_000_000  # 50 J per second: a 50 W package
                for path in counters:
                    path.write_text(f"{energy}\n")
                kernel_cpu += time.process_time() - c
                next_tick += 1.0
            if now >= next_live:
                c = time.process_time()
                live_bytes = len(m.trace_bytes())
                live_cpu += time.process_time() - c
                next_live += live_every
            time.sleep(max(0.0, min(next_live, next_tick if counters else end, end) - now))
        cpu1, t1 = time.process_time(), time.monotonic()
        report, trace = m.stop()
        cpu2 = time.process_time()
        meters.close()
        shutil.rmtree(tmp, ignore_errors=True)
        return {
            "kind": kind,
            "process_cpu_s": cpu1 - cpu0 - kernel_cpu,
            "thread_cpu_s": report.summaries["sampler_cpu_s"] or 0.0,
            "live_cpu_s": live_cpu,
            "live_kb": live_bytes / 1000,
            "stop_cpu_s": cpu2 - cpu1,
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
        "live_cpu_s": float("nan"),
        "live_kb": float("nan"),
        "stop_cpu_s": float("nan"),
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
        default="floor,wattlab,wattlab+gpu-double,wattlab+rapl-tree,codecarbon@0.1s,codecarbon@1s",
        help="comma-separated monitors to run side by side",
    )
    parser.add_argument(
        "--live-every", type=float, default=2.0, help="seconds between live traces (runner: 2)"
    )
    args = parser.parse_args()
    if args.monitor:
        print(json.dumps(monitor(args.monitor, args.pid, args.seconds, args.live_every)))
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
                "--live-every",
                str(args.live_every),
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
    print(f"live trace every {args.live_every:g} s in ours (as the runner)")
    print(
        f"{'monitor':22} {'samples':>8} {'cpu s':>8} {'% of a core':>12} {'thread %':>9} "
        f"{'live ms':>8} {'live KB':>8} {'stop ms':>8}  meters"
    )
    shares: dict[str, float] = {}
    for r in results:
        share = 100 * r["process_cpu_s"] / r["wall_s"]
        thread = 100 * r["thread_cpu_s"] / r["wall_s"]
        shares[r["kind"]] = share
        print(
            f"{r['kind']:22} {r['samples']:8.0f} {r['process_cpu_s']:8.3f} {share:11.3f}% "
            f"{thread:8.3f}% {1000 * r['live_cpu_s']:8.1f} {r['live_kb']:8.1f} "
            f"{1000 * r['stop_cpu_s']:8.1f}  {r['meters']}"
        )
    ours = {k: v for k, v in shares.items() if k.startswith("wattlab")}  # not the floor
    for theirs in (k for k in shares if k.startswith("codecarbon")):
        for mine, share in ours.items():
            if share > 0:
                print(f"ratio {theirs} / {mine} = {shares[theirs] / share:.1f}x")


if __name__ == "__main__":
    main()
