"""``make run``: the whole of Wattlab on this machine, in one terminal.

Migrates, loads the example workloads, creates a demo login and prints it, starts the
web app and one local worker (with the reaper), submits the demo parallel experiment
and the solo one with the same configurations (and says that they match), prints the
URL, and says when both have finished, i.e. when Compare shows parallel against solo.
Ctrl-C stops all of it: the worker cancels what it runs and stops its trainings, then
every process this script started is ended; none is left behind.

The terminal gets what a person needs, on one screen: the URL, the login, what is
running, the errors, and at the demo's end its outcome with the login and the Compare
link again. Everything else (Celery's banners and warnings, every request the web app
answers, the setup commands) goes to log files in ``var/log/``, whose names it prints.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
if not os.environ.get("DJANGO_SECRET_KEY"):
    # One machine: a key of its own, made once and kept in the var folder (settings
    # read it there, so later `manage.py` commands use the same one). webapp/env.py is
    # loaded by its path: importing it as webapp.env would run webapp/__init__.py, whose
    # Celery app reads the settings, which refuse to start without the key.
    import importlib.util

    _spec = importlib.util.spec_from_file_location("_wattlab_env", ROOT / "webapp" / "env.py")
    assert _spec is not None and _spec.loader is not None
    _env = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_env)
    _env.keep_secret_key(_env.secret_key_path(ROOT))
DEMO_USER = "demo"
EXAMPLES = ROOT / "examples" / "experiments"
#: Parallel first: it holds the slot while the solo waits in the queue, and a
#: comparison needs both, so the order does not change when it is ready.
DEMO_EXPERIMENTS = (EXAMPLES / "demo-parallel.yaml", EXAMPLES / "demo-solo.yaml")


def log_dir() -> Path:
    """Where the logs go: ``var/log`` under the var folder the settings use."""
    return Path(os.environ.get("WATTLAB_VAR_DIR") or ROOT / "var") / "log"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _manage(log: Path, *args: str) -> None:
    """A setup command, its output into ``log``; on failure, its end on the terminal."""
    with log.open("ab") as out:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        print(
            f"manage.py {' '.join(args)} failed (exit {done.returncode}); "
            f"the end of {_shown(log)}:\n{_tail(log)}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    # Own session: Ctrl-C reaches this script only, which then stops the children in
    # order (worker first, so it can stop its trainings) and kills their groups.
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, cwd=ROOT, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
        )


#: Log lines a person should see at once: Celery's and Django's errors, and the web
#: app answering 5xx. Everything else stays in the log.
ERROR_LINE = re.compile(
    r"\b(ERROR|CRITICAL)\b|Internal Server Error|\" 5[0-9]{2} [0-9-]+$|Traceback \(most recent"
)
#: At most this many error lines on the terminal; past it, one line names the logs.
MAX_ERROR_LINES = 20


class _ErrorWatch:
    """Copies the error lines the children write to their logs onto the terminal."""

    def __init__(self, logs: dict[str, Path]) -> None:
        self.logs = logs
        self.offsets = {name: 0 for name in logs}
        self.shown = 0

    def check(self) -> None:
        for name, path in self.logs.items():
            try:
                with path.open("rb") as fh:
                    fh.seek(self.offsets[name])
                    data = fh.read()
            except OSError:
                continue
            # Whole lines only; a half-written one is read next time.
            complete = data[: data.rfind(b"\n") + 1]
            self.offsets[name] += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                if ERROR_LINE.search(line):
                    self._say(f"  [{name}] {line.strip()[:300]}")

    def _say(self, text: str) -> None:
        self.shown += 1
        if self.shown <= MAX_ERROR_LINES:
            print(text, flush=True)
        elif self.shown == MAX_ERROR_LINES + 1:
            print(f"  more errors: see {_shown(log_dir())}/", flush=True)


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own local URL)
                return True
        except urllib.error.HTTPError:
            return True  # it answered
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    return False


def _demo_login() -> tuple[str, str]:
    from django.contrib.auth import get_user_model

    password = os.environ.get("WATTLAB_DEMO_PASSWORD") or secrets.token_urlsafe(9)
    user, _created = get_user_model().objects.get_or_create(username=DEMO_USER)
    # Staff so the demo shows the admin too (orphaned process groups, workloads).
    user.is_staff = True
    user.is_superuser = True
    user.set_password(password)
    user.save()
    return DEMO_USER, password


def _submit_demo(path: Path) -> str:
    from django.contrib.auth import get_user_model

    from experiments.expfile import parse_experiment_text
    from experiments.services import experiment_submit

    owner = get_user_model().objects.get(username=DEMO_USER)
    spec = parse_experiment_text(path.read_text(), filename=path.name)
    experiment = experiment_submit(owner=owner, spec=spec, source="cli")
    return str(experiment.code)


def _pairing(codes: list[str]) -> str:
    """Whether the submitted solo and parallel experiments run the same configurations
    (the demo files draw them alike: same workload, values, mutate list, count and
    seed, nothing skipped), in one line for the terminal; "" without both modes."""
    from experiments.models import Experiment

    plans: dict[tuple[str, str], list[object]] = {}
    for e in Experiment.objects.filter(code__in=codes).select_related("foreground_workload"):
        configs = [entry.get("hyperparameters") for entry in e.plan]
        plans.setdefault((e.foreground_workload.name, e.mode), []).extend(configs)
    lines = []
    for (workload, mode), configs in plans.items():
        other = plans.get((workload, "solo"))
        if mode != "parallel" or other is None:
            continue
        same = sorted(map(str, configs)) == sorted(map(str, other))
        lines.append(
            f"  {workload}: solo and parallel run the same {len(configs)} configurations."
            if same
            else f"  {workload}: solo and parallel run DIFFERENT configurations: Compare "
            "cannot pair them (give the solo file configurations_from: <parallel code>)."
        )
    return "".join(line + "\n" for line in lines)


class _DemoWatch:
    """Says once when every submitted demo experiment has ended (the comparison is
    then on the Compare page), and how long it took since ``make run`` started."""

    def __init__(self, codes: list[str], started: float, url: str, login: str) -> None:
        self.codes = codes
        self.started = started
        self.url = url
        self.login = login
        self._next_check = 0.0
        self.done = not codes

    def check(self) -> None:
        now = time.monotonic()
        if self.done or now < self._next_check:
            return
        self._next_check = now + 2.0
        from django.db import connection

        from experiments.models import Experiment

        rows = list(
            Experiment.objects.filter(code__in=self.codes).values(
                "name", "status", "foreground_workload__name"
            )
        )
        connection.close()  # no connection held open between checks (SQLite's lock)
        if len(rows) < len(self.codes) or any(
            r["status"] in Experiment.ACTIVE_STATUSES for r in rows
        ):
            return
        self.done = True
        outcome = ", ".join(f"{r['name']} {r['status']}" for r in rows)
        print(
            f"\n  The demo finished after {now - self.started:.0f} s since `make run` "
            f"started ({outcome}).\n"
            f"  Parallel against solo: {self.url}compare/?"
            + urlencode({"workload": rows[0]["foreground_workload__name"]})
            + f"\n  {self.login}\n",
            flush=True,
        )


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:  # worker first: it cancels and stops its trainings
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=45)
        except subprocess.TimeoutExpired:
            pass
    for child in children:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if child.poll() is None:
            child.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("WATTLAB_PORT", "8000")))
    parser.add_argument(
        "--experiment",
        type=Path,
        action="append",
        help="an experiment file to submit instead of the demo pair (repeatable)",
    )
    parser.add_argument("--no-submit", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    files: list[Path] = args.experiment or list(DEMO_EXPERIMENTS)

    logs = log_dir()
    logs.mkdir(parents=True, exist_ok=True)
    setup_log, worker_log, web_log = logs / "setup.log", logs / "worker.log", logs / "web.log"
    _manage(setup_log, "migrate", "--no-input", "-v", "0")
    _manage(setup_log, "load_workloads", str(ROOT / "examples" / "workloads"))
    import django

    django.setup()
    user, password = _demo_login()

    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        worker = [sys.executable, str(ROOT / "scripts" / "worker.py"), "--reaper"]
        children.append(_start(worker, worker_log))
        address = f"127.0.0.1:{args.port}"
        web = [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", address]
        children.append(_start(web, web_log))
        names = {"worker": worker_log, "web": web_log}
        errors = _ErrorWatch(names)
        url = f"http://{address}/"
        if not _wait_http(url, 60):
            print(
                f"the web app did not start; the end of {_shown(web_log)}:\n{_tail(web_log)}",
                file=sys.stderr,
            )
            return 1
        submitted = [] if args.no_submit else [(f, _submit_demo(f)) for f in files]
        login = f"Log in as {user!r} with password {password!r}"
        print(
            "\n"
            f"  Wattlab is running at {url}\n"
            f"  {login}\n"
            f"  Running: the web app and one worker (with the reaper); logs in {_shown(logs)}/\n"
            + "".join(f"  Submitted {f.name}: experiment {code}\n" for f, code in submitted)
            + _pairing([code for _f, code in submitted])
            + "  Ctrl-C stops everything.",
            flush=True,
        )
        watch = _DemoWatch([code for _f, code in submitted], started, url, login)
        while not stopping and all(child.poll() is None for child in children):
            watch.check()
            errors.check()
            time.sleep(0.3)
        errors.check()
        for (name, log), child in zip(names.items(), children, strict=True):
            if not stopping and child.poll() is not None:
                print(
                    f"the {name} stopped (exit {child.returncode}); the end of "
                    f"{_shown(log)}:\n{_tail(log)}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        print("stopping Wattlab ...", flush=True)
        _stop(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
