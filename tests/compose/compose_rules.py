"""What docker-compose.yml must keep for the deployment to work, read from the file alone
(fast: ``make test`` checks it; ``make test-compose`` shows the same things live).

Each rule names a way the file once could, or easily could, break the deployment: a
worker that listens on queues the web app never sends to, run logs written where the web
app cannot read them, a GPU requirement on a CPU host, services started before what they
need.
"""

from __future__ import annotations

import shlex
from typing import Any

from experiments.queues import SHARED_CONTROL_QUEUE, SHARED_QUEUE

#: The services built from Wattlab's image.
WATTLAB_SERVICES = ("migrate", "web", "reaper", "worker")
#: Settings every Wattlab service must agree on.
SHARED_SETTINGS = ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "WATTLAB_QUEUE_PREFIX")


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount point -> named volume (or host path)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts[str(volume.get("target"))] = str(volume.get("source"))
        else:
            source, _, rest = str(volume).partition(":")
            mounts[rest.split(":")[0]] = source
    return mounts


def _depends(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {name: "service_started" for name in depends}
    return {
        name: (spec or {}).get("condition", "service_started") for name, spec in depends.items()
    }


def worker_queues(command: list[str], prefix: str) -> list[str] | None:
    """The queues the worker's command consumes from where the file shows them:
    scripts/worker.py listens on the shared ones (and its host's); a plain ``celery
    worker`` on its ``-Q`` list, else on Celery's default queue only. None: unknown."""
    if any(part.endswith("scripts/worker.py") for part in command):
        return [prefix + SHARED_QUEUE, prefix + SHARED_CONTROL_QUEUE]
    if "celery" in " ".join(command) and "worker" in command:
        for flag in ("-Q", "--queues"):
            if flag in command[:-1]:
                return command[command.index(flag) + 1].split(",")
        return ["celery"]
    return None


def problems(compose: dict[str, Any]) -> list[str]:
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    missing = [name for name in ("postgres", "redis", *WATTLAB_SERVICES) if name not in services]
    if missing:
        return [f"services missing: {', '.join(missing)}"]
    found: list[str] = []
    web, worker = services["web"], services["worker"]
    web_env, worker_env = _environment(web), _environment(worker)

    for name in WATTLAB_SERVICES:
        if services[name].get("build") != web.get("build"):
            found.append(f"{name} is not built like web: one image serves them all")
        env = _environment(services[name])
        for key in SHARED_SETTINGS:
            if env.get(key, "") != web_env.get(key, ""):
                found.append(f"{name}'s {key} differs from web's")

    # The web app sends an experiment for "any" host to the shared queue.
    prefix = web_env.get("WATTLAB_QUEUE_PREFIX", "")
    queues = worker_queues(_command(worker), prefix)
    if queues is None:
        found.append("the worker's command is neither scripts/worker.py nor a celery worker")
    elif prefix + SHARED_QUEUE not in queues:
        found.append(
            f"the worker does not listen on {prefix + SHARED_QUEUE!r}, where the web app "
            f"sends experiments (it listens on {', '.join(queues)})"
        )

    # Run logs: written by the worker, served by the web app, through one volume.
    artifacts = worker_env.get("WATTLAB_ARTIFACTS_DIR", "")
    if not artifacts or web_env.get("WATTLAB_ARTIFACTS_DIR") != artifacts:
        found.append("web and worker do not set the same WATTLAB_ARTIFACTS_DIR")
    else:
        on_worker = _mounts(worker).get(artifacts)
        on_web = _mounts(web).get(artifacts)
        if on_worker is None or on_worker != on_web:
            found.append(
                f"the artifacts volume is not shared: the worker mounts {on_worker} and "
                f"web {on_web} at {artifacts}, so web cannot serve the run logs"
            )

    # Anywhere: no GPU needed by the default file (docker-compose.gpu.yml adds it).
    reservations = (worker.get("deploy") or {}).get("resources", {}).get("reservations", {})
    if worker.get("runtime") or reservations.get("devices") or worker.get("gpus"):
        found.append("the worker needs a GPU runtime: compose up fails on CPU hosts")

    # Health checks, and nothing started before what it needs.
    for name in ("web", "worker"):
        if not (services[name].get("healthcheck") or {}).get("test"):
            found.append(f"{name} has no health check")
    for name in ("web", "reaper", "worker"):
        depends = _depends(services[name])
        if depends.get("migrate") != "service_completed_successfully":
            found.append(f"{name} may start before the migrations ran")
        if depends.get("redis") != "service_healthy":
            found.append(f"{name} does not wait for Redis")
    if _depends(services["migrate"]).get("postgres") != "service_healthy":
        found.append("migrate does not wait for PostgreSQL")
    return found
