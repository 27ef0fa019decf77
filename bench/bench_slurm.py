"""Experiments through Slurm on an idle one-node cluster (scripts/slurm_cluster.py).

1. Submit -> the training's start: ``experiment_submit`` to ``Run.started_at`` (taken
   by the runner as it starts the training), with ``manage.py slurm_dispatch --loop``
   running beside it as on a login node, split into the dispatcher taking it
   (``slurm_submitted_at``), sbatch and Slurm starting the job (its StartTime, to the
   second), the job's worker starting and claiming the experiment
   (``Experiment.started_at``), and the worker to the training.
2. The dispatcher's cost per queued experiment: one pass over N queued experiments
   (N sbatch calls; the jobs wait in a partition that is down, so nothing runs), then
   one pass following the N pending jobs (one squeue call), each timed in this
   process and divided by N; sbatch's own time is measured apart.

    .venv/bin/python bench/bench_slurm.py                       # SQLite, fresh
    .venv/bin/python bench/bench_slurm.py --repeats 10 --queued 100 \\
        --database-url postgres://postgres@127.0.0.1:5432/wattlab_bench_slurm

Needs root and Debian's slurm-wlm and munge (the cluster is started and stopped here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import slurm_cluster  # noqa: E402

PARKED = {"parked": "State=DOWN"}

EXPERIMENT = """
name: slurm-latency-{i}
foreground:
  workload: digits-mlp
  hyperparameters: {{epochs: 1, hidden: 16, seed: {i}}}
sleep_between_runs: 0
timeout: 60
target: slurm
"""


def _seconds(a: Any, b: Any) -> float:
    return float((b - a).total_seconds())


def _job_start(job_id: str) -> Any:
    import datetime as dt

    from django.utils import timezone

    done = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%S"],
        capture_output=True,
        text=True,
        check=True,
    )
    # squeue writes the controller's local time, without a zone.
    local = dt.datetime.fromisoformat(done.stdout.strip())
    return timezone.make_aware(local, dt.datetime.now().astimezone().tzinfo)


def _measure(repeats: int, queued: int, interval: float) -> dict[str, Any]:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from experiments import services
    from experiments.expfile import parse_experiment_text
    from experiments.models import Experiment, Run
    from experiments.slurm.cli import SlurmCli
    from experiments.slurm.dispatch import slurm_dispatch

    call_command("migrate", verbosity=0)
    call_command("load_workloads", str(ROOT / "examples" / "workloads"), verbosity=0)
    log_path = Path(settings.VAR_DIR) / "dispatch.log"
    with log_path.open("wb") as log:
        dispatcher = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "slurm_dispatch", "--loop"]
            + ["--interval", str(interval)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    phases: dict[str, list[float]] = {
        "pickup": [],
        "slurm_start": [],
        "worker_start": [],
        "to_training": [],
        "total": [],
    }
    try:
        for i in range(repeats):
            spec = parse_experiment_text(EXPERIMENT.format(i=i))
            experiment = services.experiment_submit(owner=None, spec=spec, source="cli")
            deadline = time.monotonic() + 120
            while True:
                run = Run.objects.filter(experiment=experiment).first()
                if run is not None and run.started_at is not None:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("no run started:\n" + log_path.read_text()[-2000:])
                time.sleep(0.01)
            experiment.refresh_from_db()
            phases["pickup"].append(_seconds(experiment.created_at, experiment.slurm_submitted_at))
            # Slurm's StartTime of the job (whole seconds): sbatch and scheduling before
            # it, the worker's own start (Python, Django, the claim) after.
            start = _job_start(experiment.slurm_job_id)
            phases["slurm_start"].append(_seconds(experiment.slurm_submitted_at, start))
            phases["worker_start"].append(_seconds(start, experiment.started_at))
            phases["to_training"].append(_seconds(experiment.started_at, run.started_at))
            phases["total"].append(_seconds(experiment.created_at, run.started_at))
            while Experiment.objects.get(id=experiment.id).is_active:
                time.sleep(0.05)
    finally:
        dispatcher.terminate()
        dispatcher.wait(timeout=30)

    # The dispatcher's cost: N experiments queued for a partition that is down.
    cli = SlurmCli(timeout=60)
    parked = [
        services.experiment_submit(
            owner=None,
            spec=parse_experiment_text(
                EXPERIMENT.format(i=1000 + i).replace("target: slurm", "target: slurm:parked")
            ),
            source="cli",
        )
        for i in range(queued)
    ]
    began = time.perf_counter()
    report = slurm_dispatch(cli=cli)
    submit_pass = time.perf_counter() - began
    assert report.submitted == queued, report.lines[-3:]
    began = time.perf_counter()
    slurm_dispatch(cli=cli)
    follow_pass = time.perf_counter() - began
    sbatch: list[float] = []
    for _ in range(10):
        began = time.perf_counter()
        job = cli.submit(["--partition=parked", "--output=/dev/null", "--hold"], "#!/bin/sh\n")
        sbatch.append(time.perf_counter() - began)
        cli.cancel([job])
    jobs = [e.slurm_job_id for e in Experiment.objects.filter(id__in=[p.id for p in parked])]
    cli.cancel(jobs)

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(values), 3),
            "min": round(min(values), 3),
            "max": round(max(values), 3),
        }

    return {
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "repeats": repeats,
        "interval_s": interval,
        "latency_s": {name: summary(values) for name, values in phases.items()},
        "all_total_s": [round(x, 3) for x in phases["total"]],
        "queued": queued,
        "submit_pass_s": round(submit_pass, 3),
        "submit_per_experiment_ms": round(1000 * submit_pass / queued, 1),
        "sbatch_alone_ms": round(1000 * statistics.median(sbatch), 1),
        "follow_pass_s": round(follow_pass, 3),
        "follow_per_experiment_ms": round(1000 * follow_pass / queued, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--queued", type=int, default=50, help="experiments for the cost pass")
    parser.add_argument(
        "--interval", type=float, default=0.5, help="slurm_dispatch --loop --interval (s)"
    )
    parser.add_argument(
        "--database-url", default="", help="PostgreSQL (must exist); default: a fresh SQLite file"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args.repeats, args.queued, args.interval)))
        return 0
    reason = slurm_cluster.why_not()
    if reason:
        print(f"bench_slurm: {reason}", file=sys.stderr)
        return 2
    with (
        slurm_cluster.throwaway_slurm(partitions=PARKED) as cluster,
        tempfile.TemporaryDirectory(prefix="wattlab-bench-slurm-") as var,
    ):
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            cluster.env,
            DJANGO_SETTINGS_MODULE="webapp.settings",
            DJANGO_SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "wattlab-benchmarks-only"),
            WATTLAB_VAR_DIR=var,
            WATTLAB_SQLITE_PATH=str(Path(var) / "bench.sqlite3"),
            WATTLAB_QUEUE_PREFIX=f"bench{uuid.uuid4().hex[:6]}.",
            WATTLAB_SLURM_ENABLED="1",
            WATTLAB_SLURM_SIGNAL_LEAD_SECONDS="0",
            WATTLAB_IDLE_PROBE_SECONDS="0",
        )
        if args.database_url:
            env["DATABASE_URL"] = args.database_url
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--repeats", str(args.repeats)]
            + ["--queued", str(args.queued), "--interval", str(args.interval)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(done.stderr[-4000:], file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
    latency = result["latency_s"]
    print(f"submit -> training start through Slurm ({result['database']}, n={args.repeats}):")
    for name in ("pickup", "slurm_start", "worker_start", "to_training", "total"):
        s = latency[name]
        print(f"  {name:<12} median {s['median']:.3f} s  min {s['min']:.3f}  max {s['max']:.3f}")
    print(
        f"dispatcher, {result['queued']} queued: submit pass {result['submit_pass_s']:.2f} s "
        f"({result['submit_per_experiment_ms']:.1f} ms each; sbatch alone "
        f"{result['sbatch_alone_ms']:.1f} ms), follow pass {result['follow_pass_s']:.3f} s "
        f"({result['follow_per_experiment_ms']:.2f} ms each)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
