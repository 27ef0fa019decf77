"""``make run`` to a first finished comparison: the time from starting
``scripts/run.py`` on a fresh machine (no database, no broker folder, the single-machine
default a new user gets) to its line "The demo finished after N s", i.e. both demo
experiments (parallel and solo, the same configurations) have ended and Compare shows
parallel against solo. Target: under 3 minutes.

The load average before and after is printed with it: on a shared 2-core machine the
trainings' CPU time, not Wattlab, sets the figure.

    .venv/bin/python bench/bench_first_comparison.py            # one measurement
    .venv/bin/python bench/bench_first_comparison.py --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FINISHED = re.compile(r"The demo finished after (\d+) s since `make run` started \(([^)]*)\)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _once(limit_s: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="wattlab-first-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            DJANGO_SETTINGS_MODULE="webapp.settings",
            WATTLAB_VAR_DIR=tmp,
            WATTLAB_SQLITE_PATH=str(Path(tmp) / "db.sqlite3"),
            WATTLAB_HOSTNAME=f"bench-first-{os.getpid()}",
            PYTHONUNBUFFERED="1",
        )
        log_path = Path(tmp) / "run.log"
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "run.py"), "--port", str(_free_port())],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            found = None
            while found is None and time.monotonic() - started < limit_s:
                if proc.poll() is not None:
                    raise RuntimeError(log_path.read_text(errors="replace")[-3000:])
                found = FINISHED.search(log_path.read_text(errors="replace"))
                time.sleep(0.5)
            wall = time.monotonic() - started
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
        return {
            "seconds_reported": int(found.group(1)) if found else None,
            "seconds_wall": round(wall, 1),
            "outcome": found.group(2) if found else f"not finished within {limit_s:.0f} s",
            "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
            "cores": os.cpu_count(),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--limit", type=float, default=900.0, help="give up after (s)")
    args = parser.parse_args()
    for _ in range(args.repeats):
        print(json.dumps(_once(args.limit)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
