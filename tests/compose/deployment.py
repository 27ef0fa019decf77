"""docker-compose.yml started for real, as a team would start it, with the stand-ins in
place of the registry's images: build, up, health, commands in its containers, down.

Commands inside a container go through ``docker exec`` (the same with compose v1 and
v2); compose itself builds, starts, stops and removes. Every call is an argv list.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.compose.dockerhost import DockerError, describe_output, privileged, run
from tests.conftest import ROOT

PROJECT = "wattlab-compose-test"
COMPOSE_FILES = (ROOT / "docker-compose.yml", ROOT / "tests/compose/standins/compose.standins.yml")
#: Where the build context holds this machine's CA bundle during the build
#: (.dockerignore lets this one file of var/ through; the image does not keep it).
CA_BUNDLE_IN_CONTEXT = "var/compose-test/ca-bundle.pem"
#: Processes of a training in the worker container: the program the workload runs and
#: the background loop that restarts it (examples/workloads/digits-mlp.yaml, runner.py).
TRAINING_MARKS = ("train.py", "workers.background")
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def machine_ca_bundle() -> Path | None:
    """The CA bundle this machine's own tools trust (behind a TLS-inspecting proxy it
    holds the proxy's CA too), or None."""
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(name, "")
        if value and Path(value).is_file():
            return Path(value)
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return default if default.is_file() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Deployment:
    client: list[str]
    env_file: Path
    port: int
    _containers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, client: list[str], work: Path, standins: dict[str, str]) -> Deployment:
        """The compose variables in an env file of its own (this process's environment,
        and any .env of the checkout, stay out of it)."""
        work.mkdir(parents=True, exist_ok=True)
        variables = {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "WATTLAB_HTTP_PORT": str(free_port()),
            "WATTLAB_BASE_IMAGE": standins["python"],
            "WATTLAB_TEST_POSTGRES_IMAGE": standins["postgres"],
            "WATTLAB_TEST_REDIS_IMAGE": standins["redis"],
            # Two gunicorn processes: enough for the test, lighter on a small machine.
            "WATTLAB_WEB_PROCESSES": "2",
        }
        bundle = machine_ca_bundle()
        if bundle is not None:
            staged = ROOT / CA_BUNDLE_IN_CONTEXT
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(bundle.read_bytes())
            variables["WATTLAB_CA_BUNDLE"] = CA_BUNDLE_IN_CONTEXT
        env_file = work / "compose.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
        env_file.chmod(0o600)
        return cls(client=client, env_file=env_file, port=int(variables["WATTLAB_HTTP_PORT"]))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- compose ------------------------------------------------------------------

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        argv = [*self.client, "-p", PROJECT, "--env-file", str(self.env_file)]
        for path in COMPOSE_FILES:
            argv += ["-f", str(path)]
        env = {k: os.environ[k] for k in ("PATH", "HOME", "DOCKER_HOST") if k in os.environ}
        return run([*argv, *args], timeout=timeout, check=check, cwd=ROOT, env=env)

    def build(self) -> None:
        self.compose("build", timeout=1800)

    def up(self) -> None:
        self._containers.clear()
        self.compose("up", "-d", timeout=600)

    def container(self, service: str) -> str:
        """The service's container id (asked once per up: compose v1 is slow to start)."""
        if service not in self._containers:
            ids = self.compose("ps", "-q", service).stdout.decode().split()
            if not ids:
                raise DockerError(f"no {service} container")
            self._containers[service] = ids[0]
        return self._containers[service]

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            for service in services:
                done = run(
                    [
                        "docker",
                        "inspect",
                        "-f",
                        "{{.State.Health.Status}}",
                        self.container(service),
                    ],
                    timeout=30,
                    check=False,
                )
                states[service] = done.stdout.decode().strip() or "no health check"
            if all(state == "healthy" for state in states.values()):
                return
            time.sleep(1)
        raise DockerError(f"not healthy after {timeout:.0f} s: {states}\n{self.logs()}")

    def logs(self, tail: int = 40) -> str:
        done = self.compose("logs", "--no-color", "--tail", str(tail), timeout=60, check=False)
        return describe_output(done)

    def stop(self, service: str) -> None:
        self.compose("stop", service, timeout=300)

    def down(self) -> None:
        self._containers.clear()
        self.compose("down", "--volumes", "--remove-orphans", timeout=300)

    def leftovers(self) -> list[str]:
        """Containers, volumes and networks of this project that Docker still has."""
        label = f"label=com.docker.compose.project={PROJECT}"
        found = []
        for kind in ("container", "volume", "network"):
            listing = ["docker", kind, "ls", "-q", "--filter", label]
            if kind == "container":
                listing.insert(3, "-a")
            names = run(listing, timeout=30).stdout.decode().split()
            found += [f"{kind} {name}" for name in names]
        return found

    # --- inside the containers ----------------------------------------------------

    def exec(
        self,
        service: str,
        *argv: str,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        options: list[str] = []
        for key, value in (env or {}).items():
            options += ["-e", f"{key}={value}"]
        return run(
            ["docker", "exec", *options, self.container(service), *argv],
            timeout=timeout,
            check=check,
        )

    def manage(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        return self.exec("web", "python", "manage.py", *args, **kwargs)

    def create_user(self, username: str, password: str) -> None:
        self.manage(
            "createsuperuser", "--noinput", "--username", username,
            "--email", f"{username}@example.invalid",
            env={"DJANGO_SUPERUSER_PASSWORD": password},
        )  # fmt: skip

    def experiment(self, code: str) -> dict[str, Any]:
        """The experiment's JSON document (``manage.py export``)."""
        document: dict[str, Any] = json.loads(self.manage("export", code).stdout)
        return document

    def trainings(self) -> list[str]:
        """The worker container's training processes (command lines)."""
        # Docker's own view of the container's processes (ps on the host; it wants the
        # pid column): nothing has to be installed in the image for it.
        done = run(["docker", "top", self.container("worker"), "-eo", "pid,args"], timeout=30)
        lines = done.stdout.decode(errors="replace").splitlines()[1:]
        return [line for line in lines if any(mark in line for mark in TRAINING_MARKS)]

    def files(self, service: str, folder: str) -> set[str]:
        done = self.exec(service, "find", folder, "-type", "f")
        return set(done.stdout.decode().split())


@dataclass
class Submission:
    returncode: int
    code: str
    document: dict[str, Any] | None
    output: str


#: An experiment waits this long at most for a worker to take it (the worker is idle
#: when the test submits): longer means no worker listens where the web app sends.
TAKEN_WITHIN = 180.0
#: The longest a submission may run with ``wait``.
SUBMIT_TIMEOUT = 1200.0


def submit(deployment: Deployment, experiment_file: Path, *, owner: str, wait: bool) -> Submission:
    """``manage.py submit`` in the web container, on the image's copy of a file of this
    checkout (its path relative to the checkout; an experiment file may name others
    beside it): with ``wait``, until the experiment ends (``--wait --json``: its document
    on stdout). The one place the test calls submit."""
    args = ["submit", experiment_file.relative_to(ROOT).as_posix(), "--owner", owner]
    if wait:
        args += ["--wait", "--json"]
    argv = ["docker", "exec", deployment.container("web"), "python", "manage.py", *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            privileged(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        started = time.monotonic()
        taken = not wait
        while process.poll() is None:
            time.sleep(1)
            waited = time.monotonic() - started
            if waited > SUBMIT_TIMEOUT:
                process.kill()
                raise AssertionError(f"submit --wait still running after {waited:.0f} s")
            if not taken and waited > TAKEN_WITHIN:
                taken = _taken_by_a_worker(deployment, process, _text(err))
        process.wait()
        stdout, stderr = _text(out), _text(err)
    output = (stdout + "\n" + stderr).strip()
    document = json.loads(stdout) if wait and stdout.strip().startswith("{") else None
    found = UUID.search(output)
    code = document["code"] if document else (found.group(0) if found else "")
    return Submission(process.returncode, code, document, output)


def _taken_by_a_worker(
    deployment: Deployment, process: subprocess.Popen[bytes], printed: str
) -> bool:
    found = UUID.search(printed)
    status = deployment.experiment(found.group(0))["status"] if found else "not submitted"
    if status not in {"queued", "not submitted"}:
        return True
    process.kill()
    if found:
        deployment.manage("cancel", found.group(0), check=False)
    raise AssertionError(
        f"the experiment is {status} after {TAKEN_WITHIN:.0f} s: no worker takes it from the "
        f"queue the web app sends to\n{printed[-2000:]}\n{deployment.logs()}"
    )


def _text(handle: IO[bytes]) -> str:
    handle.seek(0)
    return handle.read().decode(errors="replace")
