"""Page latency on loopback against a generated history (see generate_history.py).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wattlab_bench \
        .venv/bin/python bench/bench_pages.py --seconds 20

Starts the server (gunicorn as docker-compose runs it, or ``--server runserver``), DEBUG off, on
127.0.0.1, signs a user in by creating a session row, then:

1. page latency: the experiment list (first page and a filtered page), random
   experiment pages and the compare page of each workload, requests issued by a few
   concurrent clients; reports p50 / p95 / max per page against the 150 ms target;
2. live polling: 50 concurrent pollers each fetching the live block of a running
   experiment's page (``HX-Request``) every 2 s, what the page does, for
   ``--seconds``; reports p50 / p99, and how many answers were 200 vs 286.

Latency is measured client-side (request sent -> body read) with a fresh connection
per request. The server is the development server, not a production one: the figures
are an upper bound of what the views cost.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import (  # noqa: E402
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,  # noqa: E402
)
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.db import connection  # noqa: E402

from experiments.models import Experiment, Run, Workload  # noqa: E402


def _session_cookie() -> str:
    user = get_user_model().objects.order_by("id").first()
    if user is None:
        sys.exit("no user: run bench/generate_history.py first")
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    # The backend that loads users (axes' lockout backend, listed first, does not).
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


def _get(port: int, path: str, cookie: str, htmx: bool = False) -> tuple[float, int, int]:
    headers = {"Cookie": cookie}
    if htmx:
        headers["HX-Request"] = "true"
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed * 1000, resp.status, len(body)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _server_argv(server: str, port: int, workers: int, threads: int) -> list[str]:
    if server == "runserver":
        # A thread per connection, and so a new database connection per request.
        return [
            sys.executable,
            str(ROOT / "manage.py"),
            "runserver",
            "--noreload",
            f"127.0.0.1:{port}",
        ]
    # What docker-compose runs: processes that keep their database connections.
    return [
        sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", str(threads), "--log-level", "warning",
    ]  # fmt: skip


def _start_server(
    port: int, server: str = "gunicorn", workers: int = 2, threads: int = 4
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DJANGO_DEBUG="0")
    proc = subprocess.Popen(
        _server_argv(server, port, workers, threads),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("HEAD", "/")
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("the server did not start")


def page_latency(port: int, cookie: str, repeats: int, clients: int) -> dict[str, dict[str, float]]:
    rng = random.Random(3)
    codes = list(Experiment.objects.order_by("?").values_list("code", flat=True)[:200])
    parallel = list(
        Experiment.objects.filter(mode="parallel")
        .order_by("?")
        .values_list("code", flat=True)[:200]
    )
    workloads = list(Workload.objects.order_by("id").values_list("name", flat=True))
    owner = get_user_model().objects.order_by("id").values_list("username", flat=True)[1]
    pages = {
        "list": lambda: "/",
        "list, filtered + page 3": lambda: f"/?owner={owner}&mode=parallel&page=3",
        "list, search": lambda: "/?q=study+42",
        "experiment (solo or parallel)": lambda: f"/experiments/{rng.choice(codes)}/",
        "experiment (parallel, 400 bg runs)": lambda: f"/experiments/{rng.choice(parallel)}/",
        # Each workload's default view as a reader finds it once an experiment of it
        # has ended: the worker kept it then (workers.tasks._warm_compare; done by
        # keep_comparisons below for this generated history).
        "compare": lambda: f"/compare/?workload={rng.choice(workloads)}",
        # The same with the cache emptied first: each workload's first view computes
        # it (a cache that lost its entries, or a view before any experiment ended).
        FIRST_VIEW: lambda: f"/compare/?workload={rng.choice(workloads)}",
        # generate_history's first workload has 12 configurations, each thousands of runs
        # a mode: every row the chart shows gets its bootstrap and its test.
        "compare, 12 configurations with statistics": lambda: f"/compare/?workload={workloads[0]}",
        "compare, CPU figure in kgCO2e": lambda: (
            f"/compare/?workload={rng.choice(workloads)}&figure=cpu&unit=kgCO2e"
        ),
    }
    results: dict[str, dict[str, float]] = {}
    for name, make in pages.items():
        if name == FIRST_VIEW:
            clear_cache()
        _get(port, make(), cookie)  # warm
        samples: list[float] = []
        lock = threading.Lock()

        def worker(make=make, samples=samples, lock=lock, name=name) -> None:  # type: ignore[no-untyped-def]
            for _ in range(repeats):
                ms, status, _size = _get(port, make(), cookie)
                assert status == 200, (name, status)
                with lock:
                    samples.append(ms)

        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results[name] = {
            "n": len(samples),
            "p50_ms": statistics.median(samples),
            "p95_ms": _pct(samples, 95),
            "max_ms": max(samples),
        }
        print(
            f"{name:38s} n={len(samples):4d} p50={results[name]['p50_ms']:7.1f} ms "
            f"p95={results[name]['p95_ms']:7.1f} ms max={results[name]['max_ms']:7.1f} ms"
        )
    return results


FIRST_VIEW = "compare, first views (cache emptied)"


def clear_cache() -> None:
    from django.core.cache import cache

    cache.clear()
    connection.close()


def keep_comparisons() -> list[float]:
    """What the worker does when an experiment ends (``workers.tasks._warm_compare``),
    once for each workload of the generated history: milliseconds each took."""
    from experiments import selectors

    took = []
    for workload in Workload.objects.order_by("id"):
        started = time.perf_counter()
        selectors.compare_workload_warm(workload=workload)
        took.append((time.perf_counter() - started) * 1000)
    connection.close()
    return took


def pollers(
    port: int, cookie: str, count: int, seconds: float, interval: float
) -> dict[str, float]:
    running = list(Experiment.objects.filter(status="running").values_list("code", flat=True))
    if not running:
        sys.exit("no running experiment to poll")
    samples: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def poll(i: int) -> None:
        path = f"/experiments/{running[i % len(running)]}/"
        time.sleep(interval * i / count)  # pollers start spread over one period, like pages
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            ms, status, _ = _get(port, path, cookie, htmx=True)
            with lock:
                samples.append(ms)
                statuses[status] = statuses.get(status, 0) + 1
            time.sleep(max(0.0, interval - (time.monotonic() - t0)))

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {
        "pollers": count,
        "n": len(samples),
        "p50_ms": statistics.median(samples),
        "p99_ms": _pct(samples, 99),
        "max_ms": max(samples),
        "statuses": statuses,
    }
    print(
        f"live block, {count} pollers every {interval:g} s: n={len(samples)} "
        f"p50={out['p50_ms']:.1f} ms p99={out['p99_ms']:.1f} ms max={out['max_ms']:.1f} ms "
        f"statuses={statuses}"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--repeats", type=int, default=20, help="requests per client per page")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--skip-pages", action="store_true", help="only the live pollers")
    parser.add_argument("--server", choices=["gunicorn", "runserver"], default="gunicorn")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    args = parser.parse_args()
    counts = {
        "database": connection.vendor,
        "experiments": Experiment.objects.count(),
        "runs": Run.objects.count(),
        "background_runs": Experiment.objects.none().count()
        or __import__(
            "experiments.models", fromlist=["BackgroundRun"]
        ).BackgroundRun.objects.count(),
    }
    print(f"history: {counts}")
    cookie = _session_cookie()
    # The compare cache is a database table (settings.CACHES) that outlives the server:
    # empty it so every run starts from what this run does, then keep each workload's
    # comparison as the worker does when an experiment of it ends.
    clear_cache()
    if not args.skip_pages:
        took = keep_comparisons()
        print(
            f"kept {len(took)} workloads' comparisons, as the worker does at an experiment's "
            f"end: p50 {statistics.median(took):.0f} ms, max {max(took):.0f} ms each"
        )
    server = _start_server(args.port, args.server, args.workers, args.threads)
    print(
        f"server: {args.server}"
        + (f" {args.workers}x{args.threads}" if args.server == "gunicorn" else "")
    )
    try:
        pages = (
            {} if args.skip_pages else page_latency(args.port, cookie, args.repeats, args.clients)
        )
        polls = pollers(args.port, cookie, args.pollers, args.seconds, args.interval)
    finally:
        server.terminate()
        server.wait(timeout=10)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"history": counts, "server": args.server, "pages": pages, "polling": polls},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
