"""docker-compose.yml run for real: it builds, starts healthy, runs the demo with energy
figures, serves what the worker wrote, stops trainings on cancel and on a stop of the
worker, and leaves nothing behind (``make test-compose``; the README says what this
proves and what it does not).

The images the file names from a registry are replaced by stand-ins built from Debian's
packages (tests/compose/standins.py); Wattlab's own image is built from
docker-compose.yml's build section, on the Python stand-in. Each step's time is printed.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compose import standins
from tests.compose.deployment import PROJECT, Deployment, Submission, submit
from tests.compose.dockerhost import DockerError, compose_client, ensure_daemon, run
from tests.compose.steps import Steps
from tests.compose.websession import WebSession
from tests.conftest import ROOT

pytestmark = [pytest.mark.compose, pytest.mark.timeout(2400)]

WORK = ROOT / "var" / "compose-test"
DEMO = ROOT / "examples" / "experiments"
LONG = ROOT / "tests" / "compose" / "long-parallel.yaml"
USER = "compose-test"
FIGURES = ("gpu_j", "gpu_foreground_j", "cpu_j", "dram_j")


@pytest.fixture(scope="module")
def steps() -> Iterator[Steps]:
    clock = Steps()
    yield clock
    clock.print_report()


@pytest.fixture(scope="module")
def deployment(steps: Steps) -> Iterator[Deployment]:
    client = compose_client()
    if client is None:
        pytest.fail("no compose client: install docker-compose (or Docker's compose plugin)")
    with steps("start dockerd unless it runs"):
        ensure_daemon(WORK / "dockerd.log")
    with steps("stand-in images (built once per machine)"):
        tags = standins.build_all()
    deployment = Deployment.create(client, WORK, tags)
    deployment.down()  # whatever an interrupted run left
    try:
        with steps("build Wattlab's image (compose build)"):
            deployment.build()
        with steps("docker compose up -d"):
            deployment.up()
        with steps("web and worker healthy"):
            deployment.wait_healthy(["web", "worker"], timeout=420)
        yield deployment
    except DockerError as exc:
        pytest.fail(str(exc))
    finally:
        deployment.down()


@pytest.fixture(scope="module")
def password(deployment: Deployment, steps: Steps) -> str:
    secret = secrets.token_urlsafe(16)
    with steps("create a user"):
        deployment.create_user(USER, secret)
    return secret


@pytest.fixture(scope="module")
def demo(deployment: Deployment, password: str, steps: Steps) -> dict[str, Submission]:
    """The demo pair, each submitted with --wait in the web container, parallel first."""
    done = {}
    for name in ("demo-parallel", "demo-solo"):
        with steps(f"submit {name}.yaml --wait"):
            done[name] = submit(deployment, DEMO / f"{name}.yaml", owner=USER, wait=True)
    return done


def _measured(run: dict[str, Any]) -> list[str]:
    energy = run["energy"]
    return [
        f"{key}={energy[key]:.1f} J ({energy[key.removesuffix('_j') + '_method']})"
        for key in FIGURES
        if energy[key] is not None
    ]


def test_the_image_keeps_neither_the_ca_bundle_nor_the_var_folder(
    deployment: Deployment,
) -> None:
    assert deployment.exec("web", "test", "-e", "/app/var/compose-test", check=False).returncode
    image = (
        run(["docker", "inspect", "-f", "{{.Image}}", deployment.container("web")], timeout=30)
        .stdout.decode()
        .strip()
    )
    history = run(["docker", "history", "--no-trunc", image], timeout=30).stdout
    assert b"ca-bundle" not in history


def test_the_demo_experiments_succeed_with_energy_figures(demo: dict[str, Submission]) -> None:
    for name, submission in demo.items():
        assert submission.returncode == 0, submission.output[-3000:]
        document = submission.document
        assert document is not None and document["status"] == "succeeded", submission.output
        assert document["runs"], name
        for run_doc in document["runs"]:
            assert run_doc["status"] == "succeeded", run_doc
            # Every run has a figure that was measured (or estimated and labelled so);
            # a missing one is null with method "unavailable", never 0 J.
            assert _measured(run_doc), f"{name}: no energy figure in {run_doc['energy']}"
        print(f"{name}: {[_measured(r) for r in document['runs']][:1]} ...")


def test_the_web_app_serves_the_worker_s_run_logs_and_compare_from_the_host(
    deployment: Deployment, demo: dict[str, Submission], password: str, steps: Steps
) -> None:
    with steps("pages over HTTP from the host"):
        # What the worker wrote into the artifacts volume, the web container sees.
        written = deployment.files("worker", "/data/artifacts")
        assert written, "the worker wrote no run log into /data/artifacts"
        seen = deployment.files("web", "/data/artifacts")
        assert seen == written, (
            "the web container does not see the run logs the worker wrote (is the "
            f"artifacts volume shared?): worker {sorted(written)[:4]}..., web {sorted(seen)[:4]}"
        )
        session = WebSession(deployment.url)
        session.login(USER, password)
        for submission in demo.values():
            assert submission.document is not None
            code = submission.code
            ours = sorted(path for path in written if code in path)
            assert len(ours) >= len(submission.document["runs"]), (code, written)
            # The files' digests, as the worker container reads them (one call for all).
            digests = deployment.exec("worker", "sha256sum", *ours).stdout.decode().split()[::2]
            status, _body, _url = session.get(f"/experiments/{code}/")
            assert status == 200
            # The run's label, as its URL names it (core.runlabel).
            first = submission.document["runs"][0]["run"]
            status, log, _url = session.get(f"/experiments/{code}/runs/{first}/log/")
            assert status == 200
            assert log.strip() and hashlib.sha256(log).hexdigest() in digests
        status, body, _url = session.get("/compare/")
        assert status == 200 and body


def _wait_for(what: str, check: Any, timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def _start_long_experiment(deployment: Deployment) -> str:
    submission = submit(deployment, LONG, owner=USER, wait=False)
    assert submission.returncode == 0 and submission.code, submission.output
    # The background training and the foreground one, both running in the worker.
    _wait_for(
        "the foreground and background trainings started",
        lambda: sum("train.py" in line for line in deployment.trainings()) >= 2,
        timeout=180,
    )
    return submission.code


def test_a_cancel_leaves_no_training_in_the_worker(
    deployment: Deployment, password: str, steps: Steps
) -> None:
    with steps("cancel a running experiment"):
        code = _start_long_experiment(deployment)
        deployment.manage("cancel", code)
        seconds = _wait_for(
            "no training left after the cancel", lambda: not deployment.trainings(), 60
        )
        print(f"trainings gone {seconds:.1f} s after the cancel")
        _wait_for(
            "the experiment ended as cancelled",
            lambda: deployment.experiment(code)["status"] == "cancelled",
            timeout=60,
        )


def test_stopping_the_worker_stops_its_trainings_within_the_grace_period(
    deployment: Deployment, password: str, steps: Steps
) -> None:
    code = _start_long_experiment(deployment)
    worker = deployment.container("worker")
    with steps("docker compose stop worker, mid-training"):
        started = time.monotonic()
        deployment.stop("worker")
        seconds = time.monotonic() - started
    state = (
        run(
            ["docker", "inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", worker],
            timeout=30,
        )
        .stdout.decode()
        .split()
    )
    # Within stop_grace_period (60 s), and by itself: 137 would be Docker's SIGKILL.
    assert seconds < 60, seconds
    assert state == ["0", "false"], (state, deployment.logs())
    assert deployment.experiment(code)["status"] == "cancelled"


def test_down_leaves_no_container_volume_or_network(deployment: Deployment, steps: Steps) -> None:
    with steps("docker compose down --volumes"):
        deployment.down()
    assert deployment.leftovers() == [], f"{PROJECT} left behind"
