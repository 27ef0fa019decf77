"""A container's health probe (docker-compose.yml's healthchecks): exit 0 when healthy.

``web``: GET /health/ on this container's server answers 200 (the server runs and
reaches the database). ``worker``: this host's control worker marked it alive within
three heartbeat periods, as the Hosts page counts a host online (``core.liveness``).
Cheap on purpose, it runs every few seconds: no Django start, no database connection
of its own.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")


def web(url: str, timeout: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own URL)
            return "" if response.status == 200 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def _settings() -> types.ModuleType:
    """webapp.settings alone: the var folder and the heartbeat period, as the worker reads
    them. Not through the webapp package, whose __init__ loads the Celery app (2 s of a
    busy host's CPU, more than a probe may take)."""
    if "webapp" not in sys.modules:
        package = types.ModuleType("webapp")
        package.__path__ = [str(ROOT / "webapp")]
        sys.modules["webapp"] = package
    return importlib.import_module("webapp.settings")


def worker() -> str:
    from core.liveness import is_alive, liveness_file, online_seconds

    settings = _settings()

    path = liveness_file(settings.VAR_DIR, settings.WATTLAB_HOSTNAME)
    if is_alive(path, settings.WATTLAB_HEARTBEAT_SECONDS):
        return ""
    window = online_seconds(settings.WATTLAB_HEARTBEAT_SECONDS)
    return f"no host heartbeat from {settings.WATTLAB_HOSTNAME} in the last {window:g} s ({path})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=["web", "worker"])
    parser.add_argument("--url", default="http://127.0.0.1:8000/health/")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    problem = web(args.url, args.timeout) if args.service == "web" else worker()
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
