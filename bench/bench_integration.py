"""Energy integration error on synthetic power traces with a known integral.

1. Offline: an hour of samples at 10 Hz with the sampler's real-world timing
   (each reading 0-3 ms late, 0.5 % of ticks skipped) on waveforms whose integral is
   known in closed form; trapezoid over the real timestamps vs the exact joules.
2. End to end: a real Measurement (sampler thread, monotonic clock) on the synthetic
   GPU double *without* an energy counter, so the integrated path is used, vs the
   exact integral over the same window.
3. The earlier tool's one-second sum on the recorded RTX 3080 traces, against the
   trapezoid over the recorded timestamps and against mean power x run duration.

    .venv/bin/python bench/bench_integration.py
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workers.energy.doubles import SyntheticGpuMeter, sine_power  # noqa: E402
from workers.energy.estimate import EstimateCpuMeter  # noqa: E402
from workers.energy.integrate import legacy_one_second_sum_j, trapezoid_j  # noqa: E402
from workers.energy.session import Measurement, MeterSet  # noqa: E402

Wave = tuple[str, Callable[[float], float], Callable[[float], float]]


def waves() -> list[Wave]:
    sine = sine_power(220.0, 60.0, period_s=37.0)

    def epochs(t: float) -> float:
        # Training-like: 90 s at ~280 W then a 10 s evaluation dip to 120 W, with a
        # 2 s ramp between them (a jump is averaged by NVML's power window anyway).
        x = t % 100.0
        if x < 88.0:
            return 280.0
        if x < 90.0:
            return 280.0 - 80.0 * (x - 88.0)
        return 120.0

    def epochs_energy(t: float) -> float:
        full, x = divmod(t, 100.0)
        per = 88.0 * 280.0 + (280.0 + 120.0) + 10.0 * 120.0
        part = 280.0 * min(x, 88.0)
        if x > 88.0:
            dx = min(x, 90.0) - 88.0
            part += 280.0 * dx - 40.0 * dx * dx
        if x > 90.0:
            part += 120.0 * (x - 90.0)
        return full * per + part

    def noisy(t: float) -> float:
        return 200.0 + 40.0 * math.sin(t / 3.0) + 25.0 * math.sin(t * 1.7 + 1.0)

    def noisy_energy(t: float) -> float:
        return (
            200.0 * t
            + 120.0 * (1 - math.cos(t / 3.0))
            + 25.0 / 1.7 * (math.cos(1.0) - math.cos(t * 1.7 + 1.0))
        )

    return [
        ("sine 220±60 W, 37 s period", *sine),
        ("epochs 280/120 W", epochs, epochs_energy),
        ("two sines, 0.27 Hz component", noisy, noisy_energy),
    ]


def offline(seconds: float, hz: float, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for name, power, energy in waves():
        times, k, period = [0.0], 1, 1.0 / hz
        while True:
            t = k * period + rng.uniform(0.0, 0.003)
            if t > seconds:
                break
            times.append(t)
            k += 2 if rng.random() < 0.005 else 1
        times.append(seconds)  # the closing sample at stop()
        est = trapezoid_j(times, [power(t) for t in times]) or 0.0
        exact = energy(seconds) - energy(0.0)
        out.append(
            {
                "wave": name,
                "samples": len(times),
                "exact_j": exact,
                "trapezoid_j": est,
                "error_pct": 100 * (est - exact) / exact,
            }
        )
    return out


def end_to_end(seconds: float) -> dict[str, Any]:
    power, energy = sine_power(200.0, 80.0, period_s=5.0)
    gpu = SyntheticGpuMeter(power, None, label="sine 200±80 W, 5 s period, no counter")
    m = Measurement(meters=MeterSet([gpu], EstimateCpuMeter(watts_per_core=10.0)), hz=10.0)
    m.start(foreground_pid=os.getpid())
    time.sleep(seconds)
    report, _ = m.stop()
    duration = report.summaries["duration_s"] or 0.0
    value = report.gpu.value or 0.0
    exact = energy(duration)
    return {
        "seconds": duration,
        "method": report.gpu.method,
        "measured_j": value,
        "exact_j": exact,
        "error_pct": 100 * (value - exact) / exact,
    }


def legacy() -> list[dict[str, Any]]:
    root = REPO / "data" / "traces" / "rtx3080"
    out = []
    for run in sorted(p for p in root.iterdir() if (p / "gpu_power.csv").is_file()):
        with (run / "gpu_power.csv").open() as fh:
            rows = list(csv.reader(fh))[1:]
        t = [float(r[0]) for r in rows]
        p = [float(r[1]) for r in rows]
        info = json.loads((run / "experiment.json").read_text())
        duration = info.get("foreground", info)["duration_seconds"]
        one_s = legacy_one_second_sum_j(p)
        trap = trapezoid_j(t, p) or 0.0
        mean_x_duration = sum(p) / len(p) * duration
        out.append(
            {
                "run": run.name,
                "samples": len(p),
                "span_s": t[-1] - t[0],
                "legacy_sum_j": one_s,
                "trapezoid_j": trap,
                "vs_trapezoid_pct": 100 * (one_s - trap) / trap,
                "vs_mean_x_duration_pct": 100 * (one_s - mean_x_duration) / mean_x_duration,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3600.0, help="offline trace length")
    parser.add_argument("--live-seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"1. offline, {args.seconds:g} s at 10 Hz, readings 0-3 ms late, 0.5 % ticks skipped")
    for r in offline(args.seconds, 10.0, args.seed):
        print(
            f"   {r['wave']:32} n={r['samples']:6} exact {r['exact_j']:12.1f} J  "
            f"trapezoid {r['trapezoid_j']:12.1f} J  error {r['error_pct']:+.5f} %"
        )
    e = end_to_end(args.live_seconds)
    print(
        f"2. live Measurement {e['seconds']:.2f} s ({e['method']}): measured "
        f"{e['measured_j']:.2f} J, exact {e['exact_j']:.2f} J, error {e['error_pct']:+.5f} %"
    )
    print("3. earlier tool's one-second sum on the recorded RTX 3080 traces")
    for r in legacy():
        print(
            f"   {r['run']:42} n={r['samples']} span {r['span_s']:.0f} s: sum "
            f"{r['legacy_sum_j']:.0f} J, trapezoid {r['trapezoid_j']:.0f} J "
            f"({r['vs_trapezoid_pct']:+.2f} %), vs mean x duration "
            f"{r['vs_mean_x_duration_pct']:+.2f} %"
        )


if __name__ == "__main__":
    main()
