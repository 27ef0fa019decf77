"""How long a comparison takes to compute, cold (no cache): what Compare's first view
after a cache loss, its CSV and the API's comparison cost, and what the worker spends
keeping each workload's comparison when an experiment ends.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wattlab_bench \\
        .venv/bin/python bench/bench_compare.py --repeats 5

Against a history from ``bench/generate_history.py`` (its first workload draws from 12
configurations, thousands of runs each; the others spread over hundreds). For each
workload, the default view and the CPU figure in kgCO2e (each run converted with its own
factors): the fastest and median wall time of ``selectors.compare_workload`` and the
fastest CPU time of this process (what Python spends; the rest is the database's, and
waiting for a core on a loaded machine). Run it from another checkout (``git archive``)
with the same command to compare two versions on one database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "wattlab-benchmarks-only-not-a-secret")

import django  # noqa: E402

django.setup()

from experiments import selectors  # noqa: E402
from experiments.figures import BY_KEY  # noqa: E402
from experiments.models import Workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", type=int, default=5, help="the first N workloads")
    args = parser.parse_args()
    views = {"default": {}, "CPU figure in kgCO2e": {"figure": BY_KEY["cpu"], "unit": "kgCO2e"}}
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    for workload in Workload.objects.order_by("id")[: args.workloads]:
        for name, kwargs in views.items():
            walls: list[float] = []
            cpus: list[float] = []
            rows = 0
            for _ in range(args.repeats):
                wall, cpu = time.perf_counter(), time.process_time()
                data = selectors.compare_workload(workload=workload, **kwargs)  # type: ignore[arg-type]
                walls.append((time.perf_counter() - wall) * 1000)
                cpus.append((time.process_time() - cpu) * 1000)
                rows = len(data.rows)
            print(
                f"{workload.name:20s} {name:21s} rows={rows:3d} "
                f"wall min {min(walls):6.0f} ms, median {statistics.median(walls):6.0f} ms; "
                f"CPU min {min(cpus):5.0f} ms"
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
