"""Submit -> foreground start latency on an idle worker, per broker.

Latency = the foreground training's recorded start (Run.started_at, taken by the
runner when it starts the process) minus the instant before ``experiment_submit``;
both clocks are this machine's. Each broker runs in its own child process (settings
are read at start), with a fresh SQLite database and a real worker started by
``scripts/worker.py``; the worker is idle before each submission.

    .venv/bin/python bench/bench_submit_latency.py                 # both brokers
    .venv/bin/python bench/bench_submit_latency.py --broker redis --repeats 10
    # queued right behind the previous experiment, Wattlab's pool against Celery's own:
    .venv/bin/python bench/bench_submit_latency.py --broker redis --idle 0 --pool both
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IDLE_S = 6.0

EXPERIMENT = """
name: latency-{i}
foreground:
  workload: digits-mlp
  hyperparameters: {{epochs: 1, hidden: 16, seed: {i}}}
sleep_between_runs: 0
timeout: 60
"""


def _measure(repeats: int, idle_s: float) -> dict[str, object]:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from experiments import services
    from experiments.expfile import parse_experiment_text
    from experiments.models import Experiment, Run

    call_command("migrate", verbosity=0)
    call_command("load_workloads", str(ROOT / "examples" / "workloads"), verbosity=0)
    host = f"bench-{uuid.uuid4().hex[:6]}"
    log_path = Path(settings.VAR_DIR) / "worker.log"
    env = dict(os.environ, WATTLAB_HOSTNAME=host)
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "worker.py")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while f"cpu0@{host} ready." not in log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("worker did not start:\n" + log_path.read_text()[-2000:])
            time.sleep(0.2)
        time.sleep(2.0)
        latencies: list[float] = []
        for i in range(repeats):
            spec = parse_experiment_text(EXPERIMENT.format(i=i))
            before = time.time()
            experiment = services.experiment_submit(owner=None, spec=spec, source="cli")
            while True:
                run = Run.objects.filter(experiment=experiment).first()
                if run is not None and run.started_at is not None:
                    break
                time.sleep(0.01)
            latencies.append(run.started_at.timestamp() - before)
            while Experiment.objects.get(id=experiment.id).is_active:
                time.sleep(0.01)
            # Idle again: the worker replaces its pool child after each task (one task
            # per child); with Celery's own pool that can take until its 5 s maintenance
            # tick (workers/pool.py). --idle 0 submits the next one at once instead:
            # an experiment queued right behind another.
            time.sleep(idle_s)
    finally:
        # Keep the worker's log beside the results (gitignored) to see where time went.
        results = ROOT / "bench" / "results"
        results.mkdir(exist_ok=True)
        broker = "redis" if settings.REDIS_URL else "filesystem"
        pool = "celery" if settings.CELERY_WORKER_POOL == "prefork" else "wattlab"
        log_name = f"submit-latency-worker-{broker}-{pool}.log"
        (results / log_name).write_bytes(log_path.read_bytes())
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        finally:
            try:
                os.killpg(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return {
        "broker": "redis" if settings.REDIS_URL else "filesystem",
        "pool": settings.CELERY_WORKER_POOL,
        "idle_s": idle_s,
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "repeats": repeats,
        "median_s": statistics.median(latencies),
        "min_s": min(latencies),
        "max_s": max(latencies),
        "all_s": [round(x, 4) for x in latencies],
    }


def _run_child(
    broker: str, repeats: int, redis_url: str, database_url: str, pool: str, idle_s: float
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="wattlab-bench-") as var:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            DJANGO_SETTINGS_MODULE="webapp.settings",
            WATTLAB_VAR_DIR=var,
            WATTLAB_SQLITE_PATH=str(Path(var) / "bench.sqlite3"),
            WATTLAB_QUEUE_PREFIX=f"bench{uuid.uuid4().hex[:6]}.",
            WATTLAB_HEARTBEAT_SECONDS="2",
            WATTLAB_WORKER_POOL=pool,
        )
        if broker == "redis":
            env["REDIS_URL"] = redis_url
            if database_url:  # the team setup: Redis + PostgreSQL
                env["DATABASE_URL"] = database_url
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--repeats", str(repeats), "--idle", str(idle_s)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{broker} run failed:\n{done.stderr[-3000:]}")
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "filesystem", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="database for the Redis run (e.g. postgres://postgres@127.0.0.1:5432/wattlab_bench;"
        " it must exist); default: a fresh SQLite file",
    )
    parser.add_argument(
        "--idle", type=float, default=IDLE_S, help="seconds between one end and the next submit"
    )
    parser.add_argument(
        "--pool",
        choices=["wattlab", "celery", "both"],
        default="wattlab",
        help="the worker's pool: Wattlab's (workers/pool.py) or Celery's own prefork",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args.repeats, args.idle)))
        return 0
    brokers = ["redis", "filesystem"] if args.broker == "both" else [args.broker]
    pools = {"wattlab": "workers.pool:TaskPool", "celery": "prefork"}
    chosen = list(pools) if args.pool == "both" else [args.pool]
    results = [
        _run_child(b, args.repeats, args.redis_url, args.database_url, pools[p], args.idle)
        for b in brokers
        for p in chosen
    ]
    print(
        f"{'broker':<12}{'database':<12}{'pool':<24}{'median':>10}{'min':>10}{'max':>10}"
        f"  (s, n={args.repeats}, idle {args.idle:g} s)"
    )
    for r in results:
        print(
            f"{r['broker']:<12}{r['database']:<12}{r['pool']!s:<24}{r['median_s']:>10.3f}"
            f"{r['min_s']:>10.3f}{r['max_s']:>10.3f}"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
