"""Legacy history import speed, and mutation planning latency for the form.

Imports the earlier profiler's raw_data.csv (1,225 rows -> 1,015 runs) into a fresh
database, first as written (one bulk_create), then with Run rows saved one by one (the
naive way), and times a re-import (which must add nothing). Then times
``count_available`` and ``plan_configurations`` on the profiler's spaces, as the new-
experiment form calls them.

    .venv/bin/python bench/bench_legacy_import.py            # SQLite in a temp dir
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wattlab_bench_legacy \
        .venv/bin/python bench/bench_legacy_import.py        # an existing, scratch PG db
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEGACY = REPO / "data" / "legacy"
sys.path.insert(0, str(REPO))
TMP = tempfile.mkdtemp(prefix="wattlab-bench-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{TMP}/bench.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from experiments.models import Experiment, Run, Workload  # noqa: E402
from experiments.mutation import count_available, parse_space, plan_configurations  # noqa: E402


def _fresh() -> None:
    Run.objects.all().delete()
    Experiment.objects.all().delete()


def _timed(label: str) -> float:
    start = time.perf_counter()
    call_command("import_legacy_results", str(LEGACY / "raw_data.csv"), stdout=io.StringIO())
    took = time.perf_counter() - start
    print(f"{label:<34} {took:8.3f} s   runs now {Run.objects.count()}")
    return took


def main() -> None:
    call_command("migrate", verbosity=0)
    call_command(
        "import_legacy_workloads",
        str(LEGACY / "models_config.json"),
        root=TMP,
        stdout=io.StringIO(),
    )
    print(f"database: {connection.vendor}")
    _fresh()
    bulk = _timed("import (bulk_create)")
    again = _timed("re-import (adds nothing)")
    _fresh()
    original = Run.objects.bulk_create

    def one_by_one(objs, batch_size=None, **kwargs):  # type: ignore[no-untyped-def]
        for obj in objs:
            obj.save(force_insert=True)
        return objs

    Run.objects.bulk_create = one_by_one  # type: ignore[method-assign]
    try:
        naive = _timed("import (one INSERT per run)")
    finally:
        Run.objects.bulk_create = original  # type: ignore[method-assign]
    print(f"one-by-one / bulk ratio: {naive / bulk:.2f}x; re-import / import: {again / bulk:.2f}")

    for name, mutate, strategy in [
        ("mrt-oast-default", ["epochs"], "together"),
        ("mrt-oast-default", ["epochs", "learning_rate", "seed", "dropout"], "together"),
        ("mrt-oast-default", ["seed", "epochs"], "one_at_a_time"),
        ("bug-localization-by-dnn-and-rvsm-default", ["max_iter", "kfold"], "together"),
    ]:
        space = parse_space(Workload.objects.get(name=name).hyperparameters)
        start = time.perf_counter()
        available = count_available(space, fixed={}, mutate=mutate, strategy=strategy, seen=())
        count_s = time.perf_counter() - start
        n = 10 if available is None else min(10, available)
        start = time.perf_counter()
        plan_configurations(space, fixed={}, mutate=mutate, n=n, seed=1, strategy=strategy)
        plan_s = time.perf_counter() - start
        print(
            f"{name} {'+'.join(mutate)} {strategy}: available {available}, "
            f"count {count_s * 1000:.1f} ms, plan of {n} {plan_s * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
