"""Rows for view tests, created directly (the services are tested elsewhere)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from core.trace import encode_trace
from experiments.models import BackgroundRun, Experiment, Host, ProcessGroup, Run, Workload

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
    {"name": "epochs", "flag": "--epochs", "type": "int", "default": 2, "min": 1, "max": 20},
    {
        "name": "optimizer",
        "flag": "--opt",
        "type": "choice",
        "default": "sgd",
        "choices": ["sgd", "adam"],
    },
]


def workload(name: str = "mnist", **kw: Any) -> Workload:
    defaults: dict[str, Any] = {
        "workdir": "/tmp",
        "argv": ["python", "train.py"],
        "hyperparameters": HPARAMS,
        "metric_patterns": {"accuracy": r"acc(?:uracy)?[:=]\s*([0-9.]+)"},
    }
    defaults.update(kw)
    return Workload.objects.create(name=name, **defaults)


def experiment(owner: Any, fg: Workload, **kw: Any) -> Experiment:
    defaults: dict[str, Any] = {"name": "exp", "mode": "solo", "total_runs": 2, "configurations": 2}
    defaults.update(kw)
    return Experiment.objects.create(owner=owner, foreground_workload=fg, **defaults)


def sample_trace(seconds: float = 10.0, hz: float = 2.0) -> bytes:
    n = int(seconds * hz)
    t = [i / hz for i in range(n)]
    return encode_trace(
        {
            "t": t,
            "gpu0.power_w": [120.0 + 30 * ((i % 7) / 7) for i in range(n)],
            "gpu0.util_pct": [80.0 + (i % 5) for i in range(n)],
            "gpu0.temp_c": [60.0 + i * 0.1 for i in range(n)],
            "gpu0.mem_mib": [2048.0 for _ in range(n)],
        },
        meta={"source": "synthetic trace written by the test"},
    )


def run(exp: Experiment, config: int = 0, repeat: int = 0, **kw: Any) -> Run:
    start = kw.pop("started_at", timezone.now() - dt.timedelta(seconds=60))
    defaults: dict[str, Any] = {
        "status": Run.Status.SUCCEEDED,
        "started_at": start,
        "ended_at": start + dt.timedelta(seconds=10),
        "duration_s": 10.0,
        "hyperparameters": {"learning_rate": 0.01 * (config + 1), "epochs": 2},
        "gpu_energy_j": 1500.0 + 100 * config + 10 * repeat,
        "gpu_method": "counter",
        "cpu_energy_j": 300.0,
        "cpu_method": "estimate",
        "gpu_power_avg_w": 150.0,
        "metrics": {"accuracy": 0.9 + 0.01 * config},
        "log_tail": "epoch 1\naccuracy: 0.91\n<script>alert(1)</script>\n",
    }
    if exp.mode == "parallel":
        # A parallel run of a real worker has its coverage: good unless a test says.
        defaults.update(coverage_percent=99.0, coverage_verdict="good")
    defaults.update(kw)
    return Run.objects.create(experiment=exp, config_index=config, repeat_index=repeat, **defaults)


def background_run(
    exp: Experiment, index: int, start: dt.datetime, seconds: float, **kw: Any
) -> BackgroundRun:
    return BackgroundRun.objects.create(
        experiment=exp,
        index=index,
        started_at=start,
        ended_at=start + dt.timedelta(seconds=seconds),
        exit_code=0,
        **kw,
    )


def host(name: str = "gpu01", *, online: bool = True) -> Host:
    beat = timezone.now() if online else timezone.now() - dt.timedelta(hours=1)
    return Host.objects.create(
        hostname=name,
        queue=f"gpu.{name}.0",
        control_queue=f"control.{name}",
        gpus=[
            {
                "index": 0,
                "name": "RTX 3080",
                "uuid": "GPU-1",
                "memory_mib": 10240,
                "energy_counter": True,
            }
        ],
        last_heartbeat=beat,
    )


def process_group(exp: Experiment, h: Host, **kw: Any) -> ProcessGroup:
    defaults: dict[str, Any] = {
        "pgid": 4242,
        "leader_pid": 4242,
        "leader_create_time": 1.0,
        "role": "background",
        "started_at": timezone.now(),
    }
    defaults.update(kw)
    return ProcessGroup.objects.create(experiment=exp, host=h, **defaults)
