"""Harness of gpu_smoke.sh: Wattlab's energy engine on one GPU, through the engine's own
entry points (``workers.energy``, ``workers.runner``), in at most 150 s.

Steps (each with its own time limit; raw data written under ``RESULTS/raw/`` as it
goes, ``RESULTS/gpu_smoke.json`` rewritten after every step):

1. preflight: NVML answers, the GPU, whether it can be metered (MIG), a GPU load
   (PyTorch with CUDA, else CuPy; the burners start warming up here);
2. environment: driver, power limit, clocks, clock event reasons, persistence mode,
   the meters Wattlab would use, the latency of each NVML call at idle;
3. sensors: the energy counter's and the power reading's update periods, as a worker
   observes them when it starts;
4. power: idle 5 s, full load 15 s, 50 % duty at a 300 ms period 15 s, idle 5 s: the
   counter against the meter's 10 Hz instant-power integral, a 50 Hz instant-power
   probe and ``nvmlDeviceGetPowerUsage``; under load, whether NVML's pids are this pid
   namespace's and whether per-process utilisation answers, each NVML call's latency,
   the sampler's CPU cost;
5. share: two burners of counted, equal work at full load, each measured as the
   foreground at once (A, and the roles swapped: B), then A at 25 % duty against B:
   each share within 0.05 of its work fraction, the two summing to about 1;
6. runner: a parallel experiment through ``workers.runner`` (the demo training on CUDA
   where PyTorch and scikit-learn are there, else a burner of fixed work), a burner as
   its background.

``WATTLAB_SMOKE_FAKE=1``: the same steps against the fake NVML library
(``tests/fakes``) and burners on its synthetic GPU, durations times
``WATTLAB_SMOKE_SCALE``: CI runs it so the harness cannot drift from the engine.
Exit status: 0 no check failed, 1 a check failed, 2 could not run.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pynvml  # noqa: E402 - gpu_smoke.sh checked that it imports

from core.contract import (  # noqa: E402
    BackgroundPlan,
    BackgroundRunRecord,
    EnergyReport,
    ExperimentPlan,
    ExperimentStore,
    GroupInfo,
    ProgramSpec,
    RunKey,
    RunPlan,
    RunResult,
)
from core.trace import decode_trace  # noqa: E402
from workers.energy import nvml  # noqa: E402
from workers.energy.integrate import trapezoid_j  # noqa: E402
from workers.energy.meters import GpuSample  # noqa: E402
from workers.energy.sensors import observe_update_periods  # noqa: E402
from workers.energy.session import Measurement, MeterSet, describe_meters, open_meters  # noqa: E402
from workers.runner import run_experiment  # noqa: E402

BURN = Path(__file__).resolve().with_name("burn.py")
#: Seconds each step may take on a device (times the scale in fake mode, with floors).
BUDGET = {"preflight": 25.0, "environment": 8.0, "sensors": 4.0, "power": 50.0}
BUDGET |= {"share": 40.0, "runner": 30.0}
SHARE_TOLERANCE = 0.05


class StepTimeout(Exception):
    """A step ran past its own time limit."""


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise StepTimeout


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def latency(values: list[float]) -> str:
    if not values:
        return "no data"
    return (
        f"p50 {1e3 * statistics.median(values):.3f} ms, p95 {1e3 * percentile(values, 0.95):.3f}"
        f" ms, max {1e3 * max(values):.3f} ms ({len(values)} calls)"
    )


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---- the report --------------------------------------------------------------------


class Report:
    """PASS / FAIL / WARN / INFO / SKIP lines, and gpu_smoke.json after every step."""

    def __init__(self, results: Path, fake: bool) -> None:
        self.results = results
        self.raw = results / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.fake = fake
        self.checks: list[dict[str, str]] = []
        self.info: dict[str, Any] = {}
        self.steps: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()

    def check(self, step: str, name: str, status: str, detail: str) -> None:
        self.checks.append({"step": step, "check": name, "status": status, "detail": detail})
        print(f"{status:4} [{step}] {name}: {detail}", flush=True)

    def verdict(
        self, step: str, name: str, ok: bool, detail: str, *, warn_only: bool = False
    ) -> None:
        self.check(step, name, "PASS" if ok else ("WARN" if warn_only else "FAIL"), detail)

    def path(self, step: str, name: str) -> Path:
        folder = self.raw / step
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def dump(self, step: str, name: str, data: Any) -> None:
        self.path(step, name).write_text(json.dumps(data, indent=1, default=str))

    def failed(self) -> int:
        return sum(1 for c in self.checks if c["status"] == "FAIL")

    def write(self) -> None:
        doc = {
            "fake": self.fake,
            "elapsed_s": round(time.monotonic() - self.started, 2),
            "steps": self.steps,
            "checks": self.checks,
            "info": self.info,
        }
        tmp = self.results / "gpu_smoke.json.tmp"
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        os.replace(tmp, self.results / "gpu_smoke.json")


def report_doc(report: EnergyReport) -> dict[str, Any]:
    return dataclasses.asdict(report)


def process_samples(m: Measurement) -> list[dict[str, Any]]:
    """Every per-process sample the measurement's meter got, with the tick it came in:
    the raw data to tell how this driver stamps and repeats them."""
    series = m._series[0] if m._series else None  # noqa: SLF001 - a smoke check may look inside
    if series is None:
        return []
    return [
        {"tick_monotonic": t, "samples": [list(x) for x in sample.proc_util]}
        for t, sample in zip(series.times, series.samples, strict=True)
        if sample.proc_util
    ]


# ---- the load ------------------------------------------------------------------------


@dataclass
class Burner:
    """A burn.py process: its control file, its counted steps."""

    tag: str
    proc: subprocess.Popen[bytes]
    control: Path
    progress: Path
    ready: Path
    log: Path
    token: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def set(self, mode: str) -> None:
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(mode + "\n")
        os.replace(tmp, self.control)

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.exists():
                self.info = dict(json.loads(self.ready.read_text()))
                return self.info
            if self.proc.poll() is not None:
                log = self.log.read_text(errors="replace")[-600:]
                raise RuntimeError(f"burner {self.tag} exited ({self.proc.returncode}): {log}")
            time.sleep(0.05)
        raise RuntimeError(f"burner {self.tag} not ready after {timeout:g} s")

    def steps_at(self, t: float) -> float:
        """Steps done by monotonic time ``t`` (linear between progress lines)."""
        rows = [line.split() for line in self.progress.read_text().splitlines() if line.strip()]
        points = [(float(a), float(b)) for a, b in rows]
        if not points:
            return 0.0
        before = [p for p in points if p[0] <= t]
        after = [p for p in points if p[0] > t]
        if not before:
            return points[0][1]
        if not after:
            return before[-1][1]
        (t0, s0), (t1, s1) = before[-1], after[0]
        return s0 + (s1 - s0) * (t - t0) / (t1 - t0)

    def work(self, t0: float, t1: float) -> float:
        return self.steps_at(t1) - self.steps_at(t0)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


class Load:
    """Where the burners run: a GPU library, or the fake NVML's synthetic GPU."""

    def __init__(self, work: Path, fake: bool, gpu_uuid: str) -> None:
        self.work = work
        self.fake = fake
        self.gpu_uuid = gpu_uuid
        self.python = sys.executable
        self.backend = ""
        self.why_none = ""
        self.load_dir = os.environ.get("WATTLAB_SMOKE_LOAD_DIR", "")
        self.burners: list[Burner] = []
        self.has_sklearn = False

    def find(self, candidates: list[str]) -> None:
        """The first Python with PyTorch (else CuPy); nothing is installed."""
        if self.fake:
            self.backend = "synthetic"
            return
        tried = []
        for backend in ("torch", "cupy"):
            for python in candidates:
                probe = [
                    python,
                    "-c",
                    f"import importlib.util as u; exit(u.find_spec({backend!r}) is None)",
                ]
                found = subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
                tried.append(f"{python}: {backend} {'found' if found else 'missing'}")
                if found:
                    self.python, self.backend = python, backend
                    sk = [
                        python,
                        "-c",
                        "import importlib.util as u; exit(u.find_spec('sklearn') is None)",
                    ]
                    self.has_sklearn = (
                        subprocess.run(sk, capture_output=True, timeout=20).returncode == 0
                    )
                    return
        self.why_none = "no Python with PyTorch or CuPy: " + "; ".join(tried)

    def start(
        self, tag: str, *extra: str, control: str = "idle", env: dict[str, str] | None = None
    ) -> Burner:
        paths = {k: self.work / f"{tag}.{k}" for k in ("control", "progress", "ready", "log")}
        for p in paths.values():
            p.unlink(missing_ok=True)
        paths["control"].write_text(control + "\n")
        token = f"smoke-{tag}-{os.getpid()}"
        child_env = {**os.environ, "WATTLAB_GROUP": token, **(env or {})}
        if self.gpu_uuid and not self.fake:
            child_env.update(nvml.cuda_pin([self.gpu_uuid]))
        argv = [
            self.python, str(BURN), "--backend", self.backend,
            "--control", str(paths["control"]), "--progress", str(paths["progress"]),
            "--ready", str(paths["ready"]), "--load-dir", self.load_dir, *extra,
        ]  # fmt: skip
        with paths["log"].open("wb") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=child_env, start_new_session=True
            )
        with (self.work / "pids").open("a") as f:
            f.write(f"{proc.pid}\n")
        burner = Burner(
            tag, proc, paths["control"], paths["progress"], paths["ready"], paths["log"], token
        )
        self.burners.append(burner)
        return burner

    def argv(self, tag: str, *extra: str) -> list[str]:
        """A burner for the runner to start (``extra``: its control file, its work)."""
        return [
            self.python, str(BURN), "--backend", self.backend, "--load-dir", self.load_dir,
            "--progress", str(self.work / f"runner-{tag}.progress"),
            "--ready", str(self.work / f"runner-{tag}.ready"), *extra,
        ]  # fmt: skip

    def stop(self) -> None:
        for burner in self.burners:
            burner.kill()


# ---- the 50 Hz probe ---------------------------------------------------------------


class Probe:
    """The energy counter, NVML_FI_DEV_POWER_INSTANT and nvmlDeviceGetPowerUsage at
    50 Hz on its own thread, each row written to a CSV file at once."""

    def __init__(self, index: int, path: Path, hz: float = 50.0) -> None:
        nvml.init()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.period = 1.0 / hz
        self.rows: list[tuple[float, float | None, float | None, float | None]] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smoke-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> tuple[float | None, float | None, float | None]:
        energy = instant = usage = None
        try:
            fields = [pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, pynvml.NVML_FI_DEV_POWER_INSTANT]
            values = pynvml.nvmlDeviceGetFieldValues(self.handle, fields)
            for v in values:
                if int(v.nvmlReturn) != pynvml.NVML_SUCCESS:
                    self.errors[f"field {int(v.fieldId)}: return {int(v.nvmlReturn)}"] += 1
                elif int(v.fieldId) == pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
                    energy = float(v.value.ullVal)
                else:
                    instant = float(v.value.uiVal) / 1000.0
        except pynvml.NVMLError as exc:
            self.errors[f"field values: {exc}"] += 1
        try:
            usage = float(pynvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0
        except pynvml.NVMLError as exc:
            self.errors[f"power usage: {exc}"] += 1
        return energy, instant, usage

    def _run(self) -> None:
        with self.path.open("w", buffering=1) as out:
            out.write("t,energy_mj,instant_w,usage_w\n")
            start = time.monotonic()
            k = 0
            while not self._stop.is_set():
                t = time.monotonic()
                row = (t, *self._read())
                self.rows.append(row)
                out.write(",".join("" if v is None else f"{v:.6f}" for v in row) + "\n")
                k += 1
                self._stop.wait(max(0.0, start + k * self.period - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def between(
        self, t0: float, t1: float
    ) -> list[tuple[float, float | None, float | None, float | None]]:
        return [r for r in self.rows if t0 <= r[0] <= t1]

    def update_period(self, column: int) -> float | None:
        """Median time between two different readings of a column (1 energy, 2 instant)."""
        changes = [
            b[0] for a, b in zip(self.rows, self.rows[1:], strict=False)
            if b[column] is not None and a[column] != b[column]
        ]  # fmt: skip
        gaps = [y - x for x, y in zip(changes, changes[1:], strict=False)]
        return statistics.median(gaps) if gaps else None


# ---- the steps -----------------------------------------------------------------------


@dataclass
class Smoke:
    report: Report
    work: Path
    fake: bool
    scale: float
    gpu: int
    python_candidates: list[str]
    load: Load | None = None
    uuid: str = ""
    idle_w: float | None = None
    a: Burner | None = None
    b: Burner | None = None

    def seconds(self, device_s: float, floor: float = 0.0) -> float:
        return max(device_s * self.scale, floor) if self.fake else device_s

    # 1 -----------------------------------------------------------------------------
    def preflight(self) -> None:
        step = "preflight"
        try:
            nvml.init()
        except Exception as exc:  # noqa: BLE001 - reported: nothing else can run
            self.report.check(step, "NVML", "FAIL", str(exc))
            raise SystemExit(2) from exc
        gpus = nvml.list_gpus()
        self.report.info["gpus"] = gpus
        chosen = next((g for g in gpus if g.get("index") == self.gpu), None)
        if chosen is None:
            self.report.check(step, f"GPU {self.gpu}", "FAIL", f"NVML lists {gpus}")
            raise SystemExit(2)
        self.uuid = str(chosen.get("uuid", ""))
        why = nvml.unmeterable(chosen)
        self.report.verdict(
            step,
            f"GPU {self.gpu} can be metered (a worker slot)",
            not why,
            why or json.dumps(chosen),
        )
        self.load = Load(self.work, self.fake, self.uuid)
        self.load.find(self.python_candidates)
        if not self.load.backend:
            self.report.check(step, "a GPU load", "WARN", self.load.why_none)
            return
        self.report.check(
            step,
            "a GPU load",
            "INFO",
            f"{self.load.backend} in {self.load.python}"
            + (" (+ scikit-learn)" if self.load.has_sklearn else ""),
        )
        # Warming up (CUDA context, library load) while the next steps run.
        self.a = self.load.start("A")
        self.b = self.load.start("B")

    # 2 -----------------------------------------------------------------------------
    def environment(self) -> None:
        step = "environment"
        h = pynvml.nvmlDeviceGetHandleByIndex(self.gpu)
        queries: dict[str, Callable[[], Any]] = {
            "driver": pynvml.nvmlSystemGetDriverVersion,
            "nvml_version": pynvml.nvmlSystemGetNVMLVersion,
            "name": lambda: text(pynvml.nvmlDeviceGetName(h)),
            "uuid": lambda: text(pynvml.nvmlDeviceGetUUID(h)),
            "pci_bus_id": lambda: text(pynvml.nvmlDeviceGetPciInfo(h).busId),
            "architecture": lambda: pynvml.nvmlDeviceGetArchitecture(h),
            "persistence_mode": lambda: pynvml.nvmlDeviceGetPersistenceMode(h),
            "mig_mode": lambda: list(pynvml.nvmlDeviceGetMigMode(h)),
            "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000,
            "power_limit_default_w": lambda: (
                pynvml.nvmlDeviceGetPowerManagementDefaultLimit(h) / 1000
            ),
            "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
            "mem_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
            "app_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetApplicationsClock(
                h, pynvml.NVML_CLOCK_SM
            ),
            "app_mem_clock_mhz": lambda: pynvml.nvmlDeviceGetApplicationsClock(
                h, pynvml.NVML_CLOCK_MEM
            ),
            "clock_event_reasons": lambda: hex(pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)),
        }
        found: dict[str, Any] = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
        for key, query in queries.items():
            try:
                found[key] = query()
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                found[key] = f"error: {exc}"
        self.report.info["environment"] = found
        self.report.check(step, "device", "INFO", json.dumps(found, default=str))
        meters = describe_meters()
        self.report.info["describe_meters"] = meters
        self.report.check(step, "meters Wattlab would use", "INFO", json.dumps(meters, default=str))
        self.report.verdict(
            step,
            "NVML sees an energy counter",
            meters["gpu"]["energy"] == "counter",
            str(meters["gpu"]["energy"]),
        )
        self.report.info["latency_idle"] = self._latencies(h, 10)

    def _latencies(self, h: Any, repeat: int) -> dict[str, str]:
        def proc_util() -> None:
            try:
                pynvml.nvmlDeviceGetProcessUtilization(h, int((time.time() - 1) * 1e6))
            except pynvml.NVMLError as exc:
                if getattr(exc, "value", None) not in (pynvml.NVML_ERROR_NOT_FOUND, 0):
                    raise

        fields = [pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, pynvml.NVML_FI_DEV_POWER_INSTANT]
        calls: dict[str, Callable[[], Any]] = {
            "FieldValues(energy, instant power)": lambda: pynvml.nvmlDeviceGetFieldValues(
                h, fields
            ),
            "PowerUsage": lambda: pynvml.nvmlDeviceGetPowerUsage(h),
            "UtilizationRates": lambda: pynvml.nvmlDeviceGetUtilizationRates(h),
            "MemoryInfo(v2)": lambda: pynvml.nvmlDeviceGetMemoryInfo(
                h, version=pynvml.nvmlMemory_v2
            ),
            "Temperature": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
            "EnforcedPowerLimit": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h),
            "ClockInfo(SM)": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
            "CurrentClocksEventReasons": lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(h),
            "ProcessUtilization": proc_util,
        }
        out = {}
        for name, call in calls.items():
            took: list[float] = []
            try:
                for _ in range(repeat):
                    t = time.perf_counter()
                    call()
                    took.append(time.perf_counter() - t)
                out[name] = latency(took)
            except pynvml.NVMLError as exc:
                out[name] = f"error: {exc}"
        return out

    # 3 -----------------------------------------------------------------------------
    def sensors(self) -> None:
        step = "sensors"
        periods = observe_update_periods([self.gpu], seconds=1.0).get(self.gpu)
        if periods is None:
            self.report.check(step, "update periods", "FAIL", "the GPU could not be opened")
            return
        self.report.info["sensor_periods"] = periods.to_dict()
        self.report.check(
            step,
            "update periods as a worker observes them at start",
            "INFO",
            json.dumps(periods.to_dict()),
        )
        self.report.verdict(
            step,
            "the energy counter advances",
            periods.counter_s is not None,
            f"every {periods.counter_s} s",
        )

    # 4 -----------------------------------------------------------------------------
    def power(self) -> None:
        step = "power"
        assert self.a is not None
        a = self.a
        a.wait_ready(self.seconds(30.0, 10.0))
        self.report.info["burner"] = a.info
        cuda_uuid = str(a.info.get("cuda_uuid", "")).lower().removeprefix("gpu-")
        if cuda_uuid:
            mine = self.uuid.lower().removeprefix("gpu-")
            self.report.verdict(
                step,
                "the burner runs on the metered GPU (UUID)",
                cuda_uuid == mine,
                f"cuda {cuda_uuid}, nvml {mine}",
            )
        meters = open_meters([self.gpu])
        probe = Probe(self.gpu, self.report.path(step, "probe_50hz.csv"))
        meter = meters.gpus[0]
        read_latency: list[float] = []
        real_read = meter.read

        def timed_read() -> GpuSample:
            t = time.perf_counter()
            try:
                return real_read()
            finally:
                read_latency.append(time.perf_counter() - t)

        meter.read = timed_read  # type: ignore[method-assign]
        m = Measurement(meters=meters, hz=10.0)
        phases: list[tuple[str, float, float]] = []
        schedule = [
            ("idle", "idle", 5.0),
            ("full", "full", 15.0),
            ("duty 50 % at 300 ms", "duty 0.5 0.3", 15.0),
            ("idle after", "idle", 5.0),
        ]
        loaded: dict[str, Any] = {}
        try:
            probe.start()
            m.start(foreground_pid=a.pid, foreground_group=a.token)
            for name, mode, device_s in schedule:
                a.set(mode)
                began = time.monotonic()
                seconds = self.seconds(device_s, 0.6)
                if name == "full":
                    time.sleep(min(2.0, seconds / 3))
                    loaded = self._under_load(a)
                time.sleep(max(0.0, began + seconds - time.monotonic()))
                phases.append((name, began, time.monotonic()))
            a.set("idle")
            report, trace = m.stop()
        finally:
            probe.stop()
            meter.read = real_read  # type: ignore[method-assign]
            meters.close()
        self.report.path(step, "measurement.trace").write_bytes(trace)
        self.report.dump(step, "measurement_report.json", report_doc(report))
        self.report.dump(step, "process_samples.json", process_samples(m))
        self.report.dump(step, "under_load.json", loaded)
        self._power_figures(step, report, m, probe, phases, read_latency)

    def _under_load(self, a: Burner) -> dict[str, Any]:
        """While A loads the GPU: NVML's pids, per-process utilisation, call latency."""
        step = "power"
        h = pynvml.nvmlDeviceGetHandleByIndex(self.gpu)
        out: dict[str, Any] = {}
        try:
            running = sorted(int(p.pid) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h))
            out["compute_running_processes"] = running
            self.report.verdict(
                step,
                "NVML's pids are this pid namespace's",
                a.pid in running,
                f"NVML lists {running}, the burner is {a.pid}"
                + (
                    ""
                    if a.pid in running
                    else ": run the worker in the host's pid namespace "
                    "(docker: --pid=host); the foreground share cannot be told otherwise"
                ),
            )
        except pynvml.NVMLError as exc:
            self.report.check(step, "NVML's pids are this pid namespace's", "FAIL", str(exc))
        samples: list[dict[str, Any]] = []
        last_seen = int((time.time() - 2) * 1e6)
        for _ in range(6):
            try:
                for s in pynvml.nvmlDeviceGetProcessUtilization(h, last_seen):
                    samples.append(
                        {
                            "read_at": time.time(),
                            "pid": int(s.pid),
                            "stamp_us": int(s.timeStamp),
                            "sm": int(s.smUtil),
                        }
                    )
            except pynvml.NVMLError as exc:
                samples.append({"read_at": time.time(), "error": str(exc)})
            time.sleep(self.seconds(0.25, 0.1))
        out["process_utilization"] = samples
        seen = [s for s in samples if s.get("pid") == a.pid]
        self.report.verdict(
            step,
            "per-process utilisation answers",
            bool(seen),
            f"{len(seen)} sample(s) of the burner in {len(samples)} rows; stamps "
            f"{sorted({s['stamp_us'] for s in seen})[:6]}"
            if seen
            else f"nothing for pid {a.pid}: {samples[:4]}: the foreground share "
            "will be unavailable",
        )
        out["latency_under_load"] = self._latencies(h, 30)
        self.report.check(
            step, "NVML call latency under load", "INFO", json.dumps(out["latency_under_load"])
        )
        return out

    def _power_figures(
        self,
        step: str,
        report: EnergyReport,
        m: Measurement,
        probe: Probe,
        phases: list[tuple[str, float, float]],
        read_latency: list[float],
    ) -> None:
        g = report.gpu
        self.report.verdict(
            step,
            "the GPU figure comes from NVML's energy counter",
            g.method == "counter",
            f"{g.value} J, {g.method}; flags {g.flags}",
        )
        # The meter's own readings (a smoke check may look inside): monotonic times and
        # the instantaneous power it read at 10 Hz.
        sampled = m._series[0]  # noqa: SLF001
        meter_t = list(sampled.times)
        meter_w = [x.power_w for x in sampled.samples]
        self.report.verdict(
            step,
            "the trace decodes with every sample",
            len(decode_trace(m.trace_bytes())["t"]) == len(meter_t),
            f"{len(meter_t)} samples",
        )
        figures = []
        for name, began, ended in phases:
            rows = probe.between(began, ended)
            energy = [r[1] for r in rows if r[1] is not None]
            counter = (energy[-1] - energy[0]) / 1000.0 if len(energy) >= 2 else None
            inst = trapezoid_j([r[0] for r in rows], [r[2] for r in rows])
            usage = trapezoid_j([r[0] for r in rows], [r[3] for r in rows])
            picked = [(t, w) for t, w in zip(meter_t, meter_w, strict=False) if began <= t <= ended]
            meter10 = trapezoid_j([t for t, _ in picked], [w for _, w in picked])
            row: dict[str, Any] = {
                "phase": name,
                "seconds": round(ended - began, 2),
                "counter_j": counter,
            }
            others = {
                "meter_10hz_instant": meter10,
                "probe_50hz_instant": inst,
                "probe_50hz_power_usage": usage,
            }
            for key, value in others.items():
                row[f"{key}_j"] = value
                if counter and value is not None:
                    row[f"{key}_vs_counter"] = round(value / counter - 1, 4)
            figures.append(row)
            if name.startswith("idle") and self.idle_w is None:
                watts = [r[2] for r in rows if r[2] is not None]
                self.idle_w = statistics.median(watts) if watts else None
        self.report.steps.setdefault(step, {})["phases"] = figures
        for row in figures:
            self.report.check(step, f"energy, {row['phase']}", "INFO", json.dumps(row))
        whole = probe.between(phases[0][1], phases[-1][2]) if phases else []
        energy = [r[1] for r in whole if r[1] is not None]
        counter = (energy[-1] - energy[0]) / 1000.0 if len(energy) >= 2 else None
        inst = trapezoid_j([r[0] for r in whole], [r[2] for r in whole])
        if counter and inst:
            err = inst / counter - 1
            self.report.verdict(
                step,
                "counter vs the 50 Hz instant-power integral, whole schedule, < 5 %",
                abs(err) < 0.05,
                f"counter {counter:.0f} J, instant {inst:.0f} J ({err:+.2%})",
                warn_only=True,
            )
        periods = {
            "counter_s": probe.update_period(1),
            "instant_power_s": probe.update_period(2),
            "power_usage_s": probe.update_period(3),
        }
        self.report.steps[step]["update_periods_50hz_probe"] = periods
        self.report.check(
            step, "update periods seen by the 50 Hz probe", "INFO", json.dumps(periods)
        )
        if probe.errors:
            self.report.check(step, "probe errors", "WARN", json.dumps(dict(probe.errors)))
        duration = float(report.summaries.get("duration_s") or 0.0)
        cpu_pct = (
            100 * float(report.summaries.get("sampler_cpu_s") or 0.0) / duration
            if duration
            else 0.0
        )
        self.report.verdict(
            step,
            "the sampler's CPU cost at 10 Hz < 0.5 % of a core",
            cpu_pct < 0.5,
            f"{cpu_pct:.3f} % over {duration:.1f} s",
            warn_only=True,
        )
        self.report.verdict(
            step,
            "NvmlGpuMeter.read() p95 < 20 ms",
            bool(read_latency) and percentile(read_latency, 0.95) < 0.020,
            latency(read_latency),
            warn_only=True,
        )
        self.report.check(
            step, "idle power (median of the first idle phase)", "INFO", f"{self.idle_w} W"
        )

    # 5 -----------------------------------------------------------------------------
    def share(self) -> None:
        step = "share"
        assert self.a is not None and self.b is not None
        a, b = self.a, self.b
        b.wait_ready(self.seconds(20.0, 10.0))
        pairs = [
            ("equal", "equal", "full", "full", 15.0),
            ("A at 25 % duty", "duty25", "duty 0.25 0.1", "full", 15.0),
        ]
        for name, slug, mode_a, mode_b, device_s in pairs:
            a.set(mode_a)
            b.set(mode_b)
            time.sleep(self.seconds(1.0, 0.5))  # both at their load before the window
            shares, began, ended, reports = self._both_ways(a, b, self.seconds(device_s, 6.0))
            a.set("idle")
            b.set("idle")
            work_a, work_b = a.work(began, ended), b.work(began, ended)
            total = work_a + work_b
            fractions = (work_a / total, work_b / total) if total > 0 else (None, None)
            record = {
                "pair": name,
                "seconds": round(ended - began, 2),
                "work_steps": [work_a, work_b],
                "work_fractions": fractions,
                "shares": shares,
            }
            self.report.steps.setdefault(step, {})[name] = record
            self.report.dump(step, f"{slug}_reports.json", reports)
            for burner in (a, b):
                copy = self.report.path(step, f"{slug}_{burner.tag}_progress.txt")
                copy.write_text(burner.progress.read_text())
            for who, share, fraction in (
                ("A", shares[0], fractions[0]),
                ("B", shares[1], fractions[1]),
            ):
                ok = (
                    share is not None
                    and fraction is not None
                    and abs(share - fraction) <= SHARE_TOLERANCE
                )
                self.report.verdict(
                    step,
                    f"{name}: {who}'s share within {SHARE_TOLERANCE} of its work fraction",
                    ok,
                    f"share {share}, work fraction {fraction}",
                )
            both = None if None in shares else (shares[0] or 0.0) + (shares[1] or 0.0)
            self.report.verdict(
                step,
                f"{name}: the two shares sum to about 1",
                both is not None and abs(both - 1) <= SHARE_TOLERANCE,
                f"sum {both}",
            )

    def _both_ways(
        self, a: Burner, b: Burner, seconds: float
    ) -> tuple[tuple[float | None, float | None], float, float, list[Any]]:
        """A as the foreground and, at once on the same window, B (roles swapped)."""
        sets: list[MeterSet] = []
        measurements: list[Measurement] = []
        try:
            for _fg in (a, b):
                meters = open_meters([self.gpu])
                if self.idle_w is not None:
                    meters.idle_w[self.gpu] = self.idle_w
                    meters.idle_note[self.gpu] = (
                        f"idle power of the power step: {self.idle_w:.1f} W"
                    )
                else:
                    meters.probe_idle(2.0)
                sets.append(meters)
                measurements.append(Measurement(meters=meters, hz=10.0))
            began = time.monotonic()
            for fg, m in zip((a, b), measurements, strict=True):
                m.start(foreground_pid=fg.pid, foreground_group=fg.token)
            time.sleep(seconds)
            results = [m.stop()[0] for m in measurements]
            ended = time.monotonic()
            raw = [process_samples(m) for m in measurements]
        finally:
            for meters in sets:
                meters.close()
        shares: list[float | None] = []
        for r in results:
            fg_j, total = r.gpu_foreground.value, r.gpu.value
            shares.append(round(fg_j / total, 4) if fg_j is not None and total else None)
        docs = [{**report_doc(r), "process_samples": p} for r, p in zip(results, raw, strict=True)]
        return (shares[0], shares[1]), began, ended, docs

    # 6 -----------------------------------------------------------------------------
    def runner(self) -> None:
        step = "runner"
        assert self.load is not None
        load = self.load
        for burner in (self.a, self.b):
            if burner is not None:
                burner.set("exit")
        for burner in (self.a, self.b):
            if burner is not None:
                burner.proc.wait(timeout=10)
        time.sleep(1.2)  # the GPU's utilisation is a one-second average: idle again
        digits = load.backend == "torch" and load.has_sklearn and not self.fake
        one_thread = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        if digits:
            fg = ProgramSpec(
                [load.python, "train.py", "--epochs", "15", "--hidden", "1024"],
                str(REPO / "examples" / "digits_mlp"),
                one_thread,
            )
        else:
            steps = str(int(self.seconds(600, 150)))
            fg = ProgramSpec(
                load.argv("fg", "--work", steps, "--control", str(self.work / "fg.control")),
                str(self.work),
            )
        (self.work / "bg.control").write_text("full\n")
        bg = ProgramSpec(
            load.argv("bg", "--control", str(self.work / "bg.control")), str(self.work)
        )
        plan = ExperimentPlan(
            code=f"gpusmoke{os.getpid()}",
            runs=[RunPlan(0, 0, {"epochs": 15}, fg)],
            artifacts_dir=str(self.work / "artifacts"),
            metric_patterns={"accuracy": r"Test Accuracy:\s*([0-9.]+)%"} if digits else {},
            success_pattern=r"Test Accuracy:\s*[0-9.]+%" if digits else "Training complete",
            sleep_between_runs=0.0,
            timeout=self.seconds(60.0, 30.0),
            background=BackgroundPlan(
                program=bg, startup_wait=self.seconds(4.0, 1.0), restart_delay=0.5
            ),
            gpu_indices=[self.gpu],
            sample_hz=10.0,
            idle_probe_s=self.seconds(2.0, 0.5),
            grace=3.0,
            heartbeat_interval=5.0,
        )
        store = Store()
        typed: ExperimentStore = store  # the engine's contract, checked by mypy
        outcome = run_experiment(plan, typed)
        self.report.dump(step, "events.json", store.events)
        self.report.verdict(
            step,
            "a parallel experiment through workers.runner succeeded",
            outcome.status == "succeeded",
            f"{outcome.status} {outcome.message!r}",
        )
        self.report.verdict(
            step,
            "the runner reported how the experiment ended (experiment_ended)",
            store.ended == (outcome.status, outcome.message),
            repr(store.ended),
        )
        if not outcome.results:
            return
        r = outcome.results[-1]
        self.report.dump(step, "result_energy.json", report_doc(r.energy))
        log = Path(r.log_path).read_text(errors="replace") if Path(r.log_path).exists() else ""
        self.report.path(step, "foreground.log").write_text(log)
        if digits:
            self.report.verdict(
                step,
                "digits-mlp trains on the GPU",
                "device=cuda (PyTorch)" in log,
                (log.splitlines() or ["(empty log)"])[0],
            )
        e = r.energy
        self.report.verdict(
            step,
            "the run's GPU figure comes from the counter",
            e.gpu.method == "counter",
            f"{e.gpu.value} J, flags {e.gpu.flags}",
        )
        share = (
            e.gpu_foreground.value / e.gpu.value
            if e.gpu_foreground.value is not None and e.gpu.value
            else None
        )
        self.report.verdict(
            step,
            "the foreground's share is in (0, 1) and its processes are NVML's",
            share is not None and 0 < share < 1,
            f"share {share}; {e.gpu_foreground.flags}",
        )
        coverage = r.coverage.percent if r.coverage is not None else None
        self.report.verdict(
            step,
            "the background covered the window (>= 80 %)",
            coverage is not None and coverage >= 80,
            f"{coverage} %",
        )
        key = e.device_state.get("settings_key", "")
        self.report.verdict(step, "the run records its GPU settings", bool(key), key or "none")
        self.report.check(
            step,
            "CPU figures",
            "INFO",
            f"cpu {e.cpu.value} J {e.cpu.method} {e.cpu.flags}; foreground part "
            f"{e.cpu_foreground.value} J {e.cpu_foreground.method}",
        )


class Store:
    """The smallest ExperimentStore: keeps results and events in memory."""

    def __init__(self) -> None:
        self.results: list[RunResult] = []
        self.events: list[tuple[str, str]] = []
        self.ended: tuple[str, str] | None = None

    def heartbeat(self) -> None:
        """Nothing to keep alive."""

    def cancel_requested(self) -> bool:
        return False

    def group_started(self, group: GroupInfo) -> None:
        self.events.append(("group_started", f"{group.role} {group.pgid}"))

    def group_ended(self, group: GroupInfo, reason: str) -> None:
        self.events.append(("group_ended", f"{group.role} {group.pgid}: {reason}"))

    def run_started(self, key: RunKey, hyperparameters: dict[str, Any], started_at: Any) -> None:
        self.events.append(("run_started", f"{key}"))

    def run_samples(self, key: RunKey, trace: bytes) -> None:
        """The live chart is not drawn here."""

    def run_finished(self, result: RunResult) -> None:
        self.results.append(result)

    def background_run_started(self, record: BackgroundRunRecord) -> None:
        self.events.append(("background_run_started", str(record.index)))

    def background_run_finished(self, record: BackgroundRunRecord) -> None:
        self.events.append(("background_run_finished", str(record.index)))

    def event(self, kind: str, message: str) -> None:
        self.events.append((kind, message))

    def experiment_ended(self, status: str, message: str) -> None:
        self.ended = (status, message)


# ---- main --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--gpu", type=int, default=int(os.environ.get("WATTLAB_SMOKE_GPU", "0")))
    parser.add_argument("--limit", type=float, default=150.0, help="seconds for everything")
    args = parser.parse_args()
    fake = os.environ.get("WATTLAB_SMOKE_FAKE") == "1"
    scale = float(os.environ.get("WATTLAB_SMOKE_SCALE", "0.15" if fake else "1"))
    candidates = [p for p in os.environ.get("WATTLAB_SMOKE_PYTHONS", "").split(os.pathsep) if p]
    report = Report(args.results, fake)
    report.info["mode"] = "fake NVML and a synthetic GPU (not a measurement)" if fake else "device"
    smoke = Smoke(report, args.work, fake, scale, args.gpu, candidates or [sys.executable])
    # `timeout` sends SIGTERM at the limit: unwind, so the finally blocks write the report.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    deadline = report.started + args.limit - 5.0
    steps: list[tuple[str, Callable[[], None], bool]] = [
        ("preflight", smoke.preflight, False), ("environment", smoke.environment, False),
        ("sensors", smoke.sensors, False), ("power", smoke.power, True),
        ("share", smoke.share, True), ("runner", smoke.runner, True),
    ]  # fmt: skip
    try:
        for name, run, needs_load in steps:
            began = time.monotonic()
            limit = min(BUDGET[name], deadline - began)
            record: dict[str, Any] = report.steps.setdefault(name, {})
            if needs_load and (smoke.load is None or not smoke.load.backend):
                report.check(
                    name, name, "SKIP", smoke.load.why_none if smoke.load else "no GPU load"
                )
            elif limit < 1.0:
                report.check(name, name, "FAIL", "no time left within the limit")
            else:
                try:
                    with time_limit(limit):
                        run()
                except StepTimeout:
                    report.check(name, name, "FAIL", f"ran past its limit of {limit:.0f} s")
                except SystemExit:
                    raise
                except Exception as exc:  # noqa: BLE001 - one broken step must not hide the others
                    traceback.print_exc()
                    report.check(name, name, "FAIL", f"{type(exc).__name__}: {exc}")
            record["seconds"] = round(time.monotonic() - began, 2)
            print(f"---- {name}: {record['seconds']:.1f} s", flush=True)
            report.write()
    finally:
        if smoke.load is not None:
            smoke.load.stop()
        report.write()
    tally = collections.Counter(c["status"] for c in report.checks)
    print(
        f"==== {dict(tally)} in {time.monotonic() - report.started:.0f} s; "
        f"{args.results / 'gpu_smoke.json'}",
        flush=True,
    )
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
