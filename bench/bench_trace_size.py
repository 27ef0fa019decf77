"""Trace size: bytes stored per hour of samples at 10 Hz for one GPU.

Three hour-long traces go through the real encoder (core.trace):

- ``recorded+noise``: the recorded RTX 3080 Person_reID run (one sample per ~1-2 s)
  interpolated to 10 Hz, with Gaussian noise (sigma 4 W, 1 % util) added on top,
  since a 10 Hz NVML stream is noisier than the recording's 1 s averages;
- ``random walk``: power and utilisation as bounded random walks (a pessimistic
  case: nothing repeats);
- ``constant``: an idle GPU (the best case).

Timestamps carry the sampler's real jitter (each reading 0-3 ms late). The trace is
compared with storing a row per sample: CSV text (the earlier tool's format), JSON
objects (what an API would ship), and a PostgreSQL row of 5 floats + 2 bigints
(24-byte tuple header + 4-byte item pointer + 56 bytes of data + a b-tree entry of
~20 bytes for (run_id, t)).

    .venv/bin/python bench/bench_trace_size.py
"""

from __future__ import annotations

import bisect
import csv
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.trace import decode_trace, encode_trace, gpu_key  # noqa: E402

HZ, SECONDS = 10.0, 3600.0
N = int(HZ * SECONDS)
PG_ROW_BYTES = 24 + 4 + 7 * 8 + 20


def _times(rng: random.Random) -> list[float]:
    return [k / HZ + (rng.uniform(0.0, 0.003) if k else 0.0) for k in range(N)]


def recorded(rng: random.Random) -> dict[str, list[float | None]]:
    run = REPO / "data" / "traces" / "rtx3080" / "Person_reID_baseline_pytorch_hrnet18_001"
    with (run / "gpu_power.csv").open() as fh:
        rows = list(csv.reader(fh))[1:]
    with (run / "gpu_utilization.csv").open() as fh:
        util_rows = list(csv.reader(fh))[1:]
    with (run / "gpu_temperature.csv").open() as fh:
        temp_rows = list(csv.reader(fh))[1:]
    t0 = float(rows[0][0])
    rt = [float(r[0]) - t0 for r in rows]
    t = _times(rng)

    def at(series: list[list[str]], x: float) -> float:
        i = min(max(bisect.bisect_right(rt, x % rt[-1]) - 1, 0), len(series) - 1)
        return float(series[i][1])

    return {
        "t": list(t),
        gpu_key(0, "power_w"): [max(at(rows, x) + rng.gauss(0, 4.0), 0.0) for x in t],
        gpu_key(0, "util_pct"): [min(max(at(util_rows, x) + rng.gauss(0, 1.0), 0), 100) for x in t],
        gpu_key(0, "mem_mib"): [float(6000 + int(x // 600)) for x in t],
        gpu_key(0, "temp_c"): [at(temp_rows, x) for x in t],
    }


def random_walk(rng: random.Random) -> dict[str, list[float | None]]:
    p, u = 200.0, 50.0
    power: list[float | None] = []
    util: list[float | None] = []
    for _ in range(N):
        p = min(max(p + rng.gauss(0, 5.0), 30.0), 350.0)
        u = min(max(u + rng.gauss(0, 3.0), 0.0), 100.0)
        power.append(p)
        util.append(float(round(u)))
    return {
        "t": list(_times(rng)),
        gpu_key(0, "power_w"): power,
        gpu_key(0, "util_pct"): util,
        gpu_key(0, "mem_mib"): [8000.0 + rng.randint(0, 3) for _ in range(N)],
        gpu_key(0, "temp_c"): [70.0 + rng.randint(0, 1) for _ in range(N)],
    }


def constant(rng: random.Random) -> dict[str, list[float | None]]:
    return {
        "t": list(_times(rng)),
        gpu_key(0, "power_w"): [25.0] * N,
        gpu_key(0, "util_pct"): [0.0] * N,
        gpu_key(0, "mem_mib"): [500.0] * N,
        gpu_key(0, "temp_c"): [35.0] * N,
    }


def main() -> None:
    rng = random.Random(7)
    print(f"one GPU, {N} samples ({SECONDS:g} s at {HZ:g} Hz); target < 500 KB per hour")
    print(
        f"{'trace':16} {'trace KB':>9} {'B/sample':>9} {'CSV KB':>8} {'JSON KB':>8} "
        f"{'PG rows KB':>10}"
    )
    for name, make in (
        ("recorded+noise", recorded),
        ("random walk", random_walk),
        ("constant", constant),
    ):
        channels = make(rng)
        data = encode_trace(channels, {"hz": HZ, "gpus": [{"index": 0, "device": name}]})
        assert len(decode_trace(data)["t"]) == N
        keys = list(channels)
        csv_bytes = sum(len(",".join(f"{channels[k][i]:.3f}" for k in keys)) + 1 for i in range(N))
        json_bytes = len(
            json.dumps([{k: round(channels[k][i] or 0.0, 3) for k in keys} for i in range(N)])
        )
        print(
            f"{name:16} {len(data) / 1000:9.3f} {len(data) / N:9.2f} {csv_bytes / 1000:8.0f} "
            f"{json_bytes / 1000:8.0f} {N * PG_ROW_BYTES / 1000:10.0f}"
        )


if __name__ == "__main__":
    main()
