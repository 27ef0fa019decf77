"""A throwaway one-node Slurm cluster on this machine, for tests and benchmarks.

    python scripts/slurm_cluster.py -- COMMAND...     # COMMAND gets SLURM_CONF

``munged`` with a key of its own, ``slurmctld`` and ``slurmd`` (this host as the only
node, one default partition ``debug`` plus the ones asked for) run from a temporary
folder on free ports, in the foreground as children of this process; the command (or
the ``with throwaway_slurm() as cluster:`` block) sees the cluster through
``SLURM_CONF``. Afterwards every job is cancelled, the daemons are stopped and the
folder removed. Nothing under /etc or /run is read or written: the cluster does not
depend on how the machine's own Slurm or MUNGE is set up, and several of these run
side by side (one per pytest process) without meeting.

Debian's ``slurm-wlm`` and ``munge`` packages hold the programs. Standard library only,
like ``with_servers.py``, whose ``free_port`` it shares.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from with_servers import free_port  # noqa: E402

#: The programs and the Debian packages that hold them.
PROGRAMS = {
    "munged": "munge",
    "slurmctld": "slurm-wlm",
    "slurmd": "slurm-wlm",
    "sbatch": "slurm-wlm",
    "squeue": "slurm-wlm",
    "scancel": "slurm-wlm",
}
SEARCH_PATH = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/usr/bin"]


def _say(message: str) -> None:
    print(f"slurm_cluster: {message}", file=sys.stderr, flush=True)


def find(program: str) -> str | None:
    return shutil.which(program, path=os.pathsep.join(SEARCH_PATH))


def missing() -> list[str]:
    """The programs that are not installed (empty: a cluster can start)."""
    return [name for name in PROGRAMS if find(name) is None]


def why_not() -> str:
    """Why no cluster can start here, in one line ("" = it can)."""
    absent = missing()
    if absent:
        packages = " ".join(sorted({PROGRAMS[name] for name in absent}))
        return f"{', '.join(absent)} not installed (sudo apt-get install -y {packages})"
    if os.geteuid() != 0:
        # slurmd starts each job as its owner; only root may do that.
        return "slurmd must run as root to start jobs (run the tests as root, as CI does)"
    return ""


@dataclass
class SlurmCluster:
    folder: Path
    conf: Path
    name: str
    node: str
    partitions: list[str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """What a Slurm client (or a Wattlab process calling one) needs."""
        return {"SLURM_CONF": str(self.conf)}

    def client(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command (``squeue``, ``scontrol``...) against this cluster."""
        program = find(argv[0]) or argv[0]
        return subprocess.run(
            [program, *argv[1:]],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log(self, daemon: str) -> str:
        try:
            return (self.folder / "log" / f"{daemon}.log").read_text(errors="replace")
        except OSError:
            return ""


def _config(
    folder: Path,
    *,
    name: str,
    node: str,
    cpus: int,
    memory_mb: int,
    partitions: Mapping[str, str],
    kill_wait: int,
) -> str:
    user = getpass.getuser()
    lines = [
        f"ClusterName={name}",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={folder / 'run' / 'munge.socket'}",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
        # An empty SPANK stack: /etc/slurm/plugstack.conf is the machine's business.
        f"PlugStackConfig={folder / 'plugstack.conf'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        # A job ends at its time limit, not a minute after (tests keep them short);
        # SIGTERM to SIGKILL at a job's end in kill_wait seconds.
        "OverTimeLimit=0",
        f"KillWait={kill_wait}",
        # Ended jobs stay known to squeue this long (there is no slurmdbd for sacct).
        "MinJobAge=300",
        "ReturnToService=2",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=300",
        "InactiveLimit=0",
        "Waittime=0",
        # The node may claim more CPUs than the machine has: several short jobs of a
        # test run side by side on a 2-core machine.
        "SlurmdParameters=config_overrides",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
    for partition, options in partitions.items():
        lines.append(f"PartitionName={partition} Nodes={node} State=UP {options}".rstrip())
    return "\n".join(lines) + "\n"


def _start(
    name: str, argv: list[str], folder: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    output = (folder / "log" / f"{name}.out").open("wb")
    try:
        return subprocess.Popen(
            argv,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            # Its own session: a Ctrl-C at the terminal goes to the command, not here.
            start_new_session=True,
        )
    finally:
        output.close()


def _wait_for(what: str, check: Callable[[], bool], cluster: SlurmCluster, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for daemon, process in cluster.processes.items():
            if process.poll() is not None:
                tail = (cluster.log(daemon) or "")[-1500:]
                out = (cluster.folder / "log" / f"{daemon}.out").read_text(errors="replace")
                raise RuntimeError(f"{daemon} exited ({process.returncode}): {out[-800:]}{tail}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"the Slurm cluster: {what} after {seconds:g} s:\n{cluster.log('slurmctld')}"
    )


def _stop(process: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cancel_all_jobs(cluster: SlurmCluster, seconds: float) -> None:
    """Every job cancelled, and waited for (their slurmstepd outlives slurmd)."""
    listed = cluster.client("squeue", "--noheader", "--format=%i")
    if listed.returncode != 0 or not listed.stdout.split():
        return
    cluster.client("scancel", "--quiet", *listed.stdout.split())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        live = cluster.client("squeue", "--noheader", "--states=PD,R,CG,S", "--format=%i")
        if live.returncode != 0 or not live.stdout.split():
            return
        time.sleep(0.2)


@contextmanager
def throwaway_slurm(
    *,
    cpus: int = 8,
    memory_mb: int = 4000,
    partitions: Mapping[str, str] | None = None,
    kill_wait: int = 10,
    ready_seconds: float = 60.0,
) -> Iterator[SlurmCluster]:
    """Start a one-node cluster; yields it once ``sinfo`` reports the node idle.

    ``partitions``: extra partitions and their options (``{"restricted":
    "AllowAccounts=research"}``); ``debug`` is always there and the default.
    """
    reason = why_not()
    if reason:
        raise RuntimeError(f"cannot start a Slurm cluster: {reason}")
    folder = Path(tempfile.mkdtemp(prefix="wattlab-slurm-"))
    # munged refuses a socket whose folders are not searchable by everyone.
    folder.chmod(0o755)
    for sub in ("run", "state", "spool", "log"):
        (folder / sub).mkdir()
    (folder / "run").chmod(0o755)
    (folder / "munge").mkdir(mode=0o700)
    (folder / "plugstack.conf").write_text("")
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    node = socket.gethostname().split(".")[0]
    name = f"wattlab{uuid.uuid4().hex[:8]}"
    conf = folder / "slurm.conf"
    conf.write_text(
        _config(
            folder,
            name=name,
            node=node,
            cpus=cpus,
            memory_mb=memory_mb,
            partitions=partitions or {},
            kill_wait=kill_wait,
        )
    )
    cluster = SlurmCluster(folder, conf, name, node, ["debug", *(partitions or {})])
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        munged = [
            str(find("munged")), "--foreground", f"--key-file={key}",
            f"--socket={folder / 'run' / 'munge.socket'}",
            f"--pid-file={folder / 'munge' / 'munged.pid'}",
            f"--log-file={folder / 'log' / 'munged.log'}",
            f"--seed-file={folder / 'munge' / 'munged.seed'}",
        ]  # fmt: skip
        cluster.processes["munged"] = _start("munged", munged, folder, env)
        _wait_for("munged made no socket", (folder / "run" / "munge.socket").exists, cluster, 20)
        ctld = [str(find("slurmctld")), "-D", "-i", "-f", str(conf)]
        cluster.processes["slurmctld"] = _start("slurmctld", ctld, folder, env)
        cluster.processes["slurmd"] = _start(
            "slurmd", [str(find("slurmd")), "-D", "-f", str(conf)], folder, env
        )

        def node_idle() -> bool:
            info = cluster.client("sinfo", "--noheader", "--format=%T", timeout=10)
            return info.returncode == 0 and "idle" in info.stdout

        _wait_for("the node was not idle", node_idle, cluster, ready_seconds)
        yield cluster
    finally:
        try:
            if "slurmd" in cluster.processes:
                _cancel_all_jobs(cluster, kill_wait + 10.0)
        finally:
            for daemon in ("slurmd", "slurmctld", "munged"):
                if daemon in cluster.processes:
                    _stop(cluster.processes[daemon])
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=int, default=8, help="CPUs the node offers (default 8)")
    parser.add_argument("command", nargs="+", help="what to run, after --")
    args = parser.parse_args(argv)
    reason = why_not()
    if reason:
        _say(f"cannot start a Slurm cluster: {reason}")
        return 2

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    with throwaway_slurm(cpus=args.cpus) as cluster:
        _say(f"cluster {cluster.name} on node {cluster.node}: SLURM_CONF={cluster.conf}")
        return subprocess.run(
            args.command, env={**os.environ, **cluster.env}, check=False
        ).returncode
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
