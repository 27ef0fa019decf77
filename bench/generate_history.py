"""Generate a team-scale history in PostgreSQL for the page benchmarks.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wattlab_bench \
        .venv/bin/python bench/generate_history.py --runs 100000 --background 1000000

Creates (after migrating) users, workloads, hosts and experiments, then runs and
background runs with COPY (the ORM's bulk_create would take minutes at this size).
Every run carries a real encoded sample trace (``core.trace``), a few
distinct synthetic traces reused. A handful of experiments are left "running" so the
live fragment has something to poll. This is a benchmark fixture, not a test; the data
is synthetic and labelled so (workload descriptions, run flags).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from core.trace import encode_trace  # noqa: E402
from experiments.models import Experiment, Host, Workload  # noqa: E402

SYNTHETIC = "synthetic benchmark data (bench/generate_history.py)"
HPARAMS = [
    {
        "name": "learning_rate",
        "flag": "--lr",
        "type": "float",
        "default": 0.01,
        "min": 0.0001,
        "max": 0.1,
        "distribution": "log_uniform",
    },
    {
        "name": "batch_size",
        "flag": "--bs",
        "type": "choice",
        "default": 32,
        "choices": [16, 32, 64, 128],
    },
    {"name": "epochs", "flag": "--epochs", "type": "int", "default": 10, "min": 1, "max": 50},
]


def _traces(count: int, samples: int) -> list[bytes]:
    rng = random.Random(1)
    out = []
    for _ in range(count):
        base = rng.uniform(120, 300)
        out.append(
            encode_trace(
                {
                    "t": [i * 0.5 for i in range(samples)],
                    "gpu0.power_w": [base + rng.uniform(-20, 20) for _ in range(samples)],
                    "gpu0.util_pct": [rng.uniform(60, 100) for _ in range(samples)],
                    "gpu0.temp_c": [55 + i * 0.05 for i in range(samples)],
                    "gpu0.mem_mib": [4096.0 for _ in range(samples)],
                },
                meta={"source": SYNTHETIC, "hz": 2.0},
            )
        )
    return out


def _copy(table: str, columns: list[str], rows) -> int:  # type: ignore[no-untyped-def]
    n = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--background", type=int, default=1_000_000)
    parser.add_argument("--runs-per-experiment", type=int, default=20)
    parser.add_argument("--trace-samples", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--repeated-workloads",
        type=int,
        default=1,
        help="the first N workloads draw from 12 fixed configurations (3 learning rates x "
        "4 batch sizes), so the compare page's statistics run on every row it shows",
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("generate_history needs PostgreSQL: set DATABASE_URL=postgres://...")

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    rng = random.Random(args.seed)
    User = get_user_model()
    users = []
    for i in range(12):
        user, _ = User.objects.get_or_create(username=f"researcher{i:02d}")
        user.set_password("bench-password")
        user.is_staff = i == 0
        user.save()
        users.append(user)
    workloads = []
    for name in ("resnet50-imagenet", "bert-base-squad", "vit-cifar", "gpt2-small", "unet-kits"):
        w, _ = Workload.objects.get_or_create(
            name=name,
            defaults={
                "workdir": "/srv/train",
                "argv": ["python", "train.py"],
                "hyperparameters": HPARAMS,
                "description": SYNTHETIC,
                "metric_patterns": {"accuracy": r"acc=([0-9.]+)"},
            },
        )
        workloads.append(w)
    hosts = []
    for i in range(4):
        h, _ = Host.objects.get_or_create(
            hostname=f"gpu{i:02d}",
            defaults={"queue": f"gpu.gpu{i:02d}.0", "gpus": [{"index": 0, "name": "RTX 3080"}]},
        )
        h.last_heartbeat = timezone.now()
        h.save()
        hosts.append(h)

    n_exp = max(1, args.runs // args.runs_per_experiment)
    # Only parallel experiments (every other one) have background runs.
    bg_per_exp = max(1, args.background // max(1, (n_exp + 1) // 2))
    now = timezone.now()
    t0 = now - dt.timedelta(days=365)
    span = (now - t0).total_seconds()
    print(
        f"{n_exp} experiments x {args.runs_per_experiment} runs, "
        f"{bg_per_exp} background runs per parallel experiment"
    )

    exp_rows = []
    plan = []
    for i in range(n_exp):
        created = t0 + dt.timedelta(seconds=span * i / n_exp)
        parallel = i % 2 == 0
        running = i >= n_exp - 5  # the newest few are live
        fg = workloads[i % len(workloads)]
        bg = workloads[(i + 1) % len(workloads)] if parallel else None
        code = uuid.uuid4()
        status = "running" if running else rng.choice(["succeeded"] * 8 + ["failed", "cancelled"])
        exp_rows.append(
            (
                str(code),
                f"study {i}",
                "parallel" if parallel else "solo",
                status,
                "web",
                users[i % len(users)].pk,
                fg.pk,
                json.dumps({}),
                json.dumps(["learning_rate"]),
                "together",
                args.runs_per_experiment,
                args.seed + i,
                1,
                60.0,
                3600.0,
                0,
                bg.pk if bg else None,
                json.dumps({}),
                2.0,
                5.0,
                "keep",
                "any",
                json.dumps({"name": f"study {i}", "source": SYNTHETIC}),
                json.dumps([]),
                args.runs_per_experiment,
                args.runs_per_experiment - (5 if running else 0),
                hosts[i % len(hosts)].pk,
                0,
                created,
                created,
                None if running else created + dt.timedelta(hours=2),
                created,
                "",
                json.dumps([]),
                rng.uniform(1e5, 1e6),
                rng.uniform(1e4, 1e5),
                rng.choice(["good", "good", "partial", "insufficient"]) if parallel else "",
                False,
                "",
            )
        )
        plan.append((created, parallel, running, i % len(workloads) < args.repeated_workloads))
    exp_cols = [
        "code",
        "name",
        "mode",
        "status",
        "source",
        "owner_id",
        "foreground_workload_id",
        "fg_hyperparameters",
        "mutate",
        "strategy",
        "configurations",
        "seed",
        "runs_per_config",
        "sleep_between_runs",
        "timeout",
        "max_retries",
        "background_workload_id",
        "bg_hyperparameters",
        "restart_delay",
        "startup_wait",
        "between_runs",
        "target",
        "submitted_config",
        "plan",
        "total_runs",
        "runs_done",
        "host_id",
        "gpu_index",
        "created_at",
        "started_at",
        "ended_at",
        "heartbeat_at",
        "error",
        "events",
        "gpu_energy_j",
        "cpu_energy_j",
        "worst_verdict",
        "imported",
        "legacy_id",
    ]
    _copy("experiments_experiment", exp_cols, exp_rows)
    # COPY keeps row order; the newest n_exp ids are the ones just written.
    ids = sorted(Experiment.objects.order_by("-id").values_list("id", flat=True)[:n_exp])
    print(f"experiments: {len(ids)} in {time.monotonic() - started:.0f} s")

    traces = _traces(24, args.trace_samples)
    run_cols = [
        "experiment_id",
        "config_index",
        "repeat_index",
        "attempt",
        "hyperparameters",
        "status",
        "started_at",
        "ended_at",
        "duration_s",
        "exit_code",
        "error",
        "log",
        "log_tail",
        "metrics",
        "gpu_energy_j",
        "gpu_method",
        "cpu_energy_j",
        "cpu_method",
        "dram_method",
        "provenance",
        "gpu_power_avg_w",
        "coverage_percent",
        "coverage_verdict",
        "flags",
        "trace",
        "imported",
        "legacy_id",
        "factors",
        "gpu_foreground_method",
        "gpu_uuid",
    ]
    provenance = json.dumps({"gpu": {"method": "counter", "device": SYNTHETIC}})
    flags = json.dumps([SYNTHETIC])
    # The carbon and cost factors a run keeps when it finishes (synthetic values).
    factors = json.dumps(
        {
            "carbon_intensity_g_per_kwh": 350.0,
            "pue": 1.2,
            "price_per_kwh": 0.25,
            "currency": "EUR",
            "set_at": t0.isoformat(),
            "source": "admin",
            "host": SYNTHETIC,
        }
    )

    def runs():  # type: ignore[no-untyped-def]
        for exp_id, (created, parallel, running, repeated) in zip(ids, plan, strict=True):
            for c in range(args.runs_per_experiment):
                start = created + dt.timedelta(seconds=300 * c)
                live = running and c >= args.runs_per_experiment - 5
                if repeated:
                    lr = rng.choice([0.001, 0.01, 0.05])
                else:
                    lr = round(10 ** rng.uniform(-4, -1), 6)
                energy = rng.uniform(2e4, 9e4) * (1.3 if parallel else 1.0)
                cov = rng.uniform(70, 100) if parallel else None
                yield (
                    exp_id,
                    c,
                    0,
                    0,
                    json.dumps(
                        {
                            "learning_rate": lr,
                            "batch_size": rng.choice([16, 32, 64, 128]),
                            "epochs": 10,
                        }
                    ),
                    "running" if live else "succeeded",
                    start,
                    None if live else start + dt.timedelta(seconds=240),
                    None if live else 240.0,
                    None if live else 0,
                    "",
                    "",
                    "acc=0.9\n",
                    json.dumps(
                        {}
                        if live
                        else {"accuracy": rng.uniform(0.7, 0.95), "loss": rng.uniform(0.05, 1)}
                    ),
                    None if live else energy,
                    "" if live else "counter",
                    None if live else energy / 5,
                    "" if live else "estimate",
                    "unavailable",
                    provenance,
                    energy / 240,
                    cov,
                    ""
                    if cov is None
                    else ("good" if cov >= 95 else "partial" if cov >= 80 else "insufficient"),
                    flags,
                    traces[c % len(traces)],
                    False,
                    "",
                    "{}" if live else factors,
                    "",  # no foreground share: no idle baseline in synthetic data
                    "",
                )

    n = _copy("experiments_run", run_cols, runs())
    print(f"runs: {n} in {time.monotonic() - started:.0f} s")

    bg_cols = [
        "experiment_id",
        "index",
        "started_at",
        "ended_at",
        "exit_code",
        "stopped",
        "log",
        "log_tail",
    ]

    def background():  # type: ignore[no-untyped-def]
        for exp_id, (created, parallel, running, _repeated) in zip(ids, plan, strict=True):
            if not parallel:
                continue
            at = created - dt.timedelta(seconds=5)
            for b in range(bg_per_exp):
                live = running and b == bg_per_exp - 1
                yield (
                    exp_id,
                    b,
                    at,
                    None if live else at + dt.timedelta(seconds=28),
                    None if live else 0,
                    False,
                    "",
                    "",
                )
                at += dt.timedelta(seconds=30)

    n = _copy("experiments_backgroundrun", bg_cols, background())
    print(f"background runs: {n} in {time.monotonic() - started:.0f} s")
    with connection.cursor() as cursor:
        # What autovacuum does to a table that has settled: statistics, and the
        # visibility map that lets the compare page's checks read only the covering
        # index (a freshly copied table has none until autovacuum visits it).
        cursor.execute("VACUUM ANALYZE")
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
