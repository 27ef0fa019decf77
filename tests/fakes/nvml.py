"""A stand-in for the third-party ``pynvml`` module (a fake library, not our code).

NVML's calls with their units, ctypes structures (pynvml's own) and error codes. Each
device is either scripted (a test sets its readings) or driven by a
:class:`tests.fakes.gpu.SyntheticGpu` that real processes load.

In-process tests put a :class:`FakeNvmlLibrary` where ``workers.energy.nvml`` keeps the
module; a child process gets it under the name ``pynvml`` from
``tests/fakes/shadow/pynvml.py``, configured by :data:`CONFIG_ENV` (JSON, see
:func:`from_config`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pynvml

from tests.fakes.gpu import SyntheticGpu

OK = pynvml.NVML_SUCCESS
CONFIG_ENV = "WATTLAB_FAKE_NVML"
_MIB = 1024 * 1024


def process_sample(pid: int, stamp_us: int, sm: float) -> Any:
    """One per-process utilisation sample, NVML's structure."""
    sample = pynvml.c_nvmlProcessUtilizationSample_t()
    sample.pid, sample.timeStamp, sample.smUtil = pid, stamp_us, int(sm)
    return sample


class FakeDevice:
    """One GPU as NVML shows it. Scripted: ``power_avg_mw`` is what
    nvmlDeviceGetPowerUsage answers (a one-second average on Ampere/Hopper),
    ``power_instant_mw`` the field; ``energy_mj`` the counter (None: it grows at
    250.5 W from the device's creation, advancing every ``counter_period_s``)."""

    def __init__(
        self,
        index: int,
        *,
        counter: bool = True,
        proc: bool = True,
        gpu: SyntheticGpu | None = None,
        name: str = "NVIDIA Fake 100",
    ) -> None:
        self.index = index
        self.name = name
        self.uuid = f"GPU-fake-uuid-{index}"
        self.gpu = gpu
        self.counter = counter
        self.proc = proc
        self.fields = True  # nvmlDeviceGetFieldValues knows energy and instant power
        self.instant_supported = True
        self.energy_mj: int | None = 5_000_000
        self.counter_period_s = 0.0
        self.born = time.monotonic()
        self.power_avg_mw = 250_500
        self.power_instant_mw = 312_000
        self.mig = False
        self.broken: int | None = None  # an NVML error code for every call on it
        self.temperature_error: int | None = pynvml.NVML_ERROR_NOT_SUPPORTED
        self.memory_exception: BaseException | None = None
        self.proc_samples: list[Any] = []
        #: (pid, stamp) -> wall-clock time before which NVML does not return the sample
        self.hidden_until: dict[tuple[int, int], float] = {}
        self.last_seen_args: list[int] = []
        self.running: list[int] = []  # pids holding a context (scripted)
        # Settings and clocks, as nvidia-smi -q shows them.
        self.power_limit_mw = 700_000
        self.default_power_limit_mw = 700_000
        self.clocks = {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}
        self.app_clocks = {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}
        self.event_reasons = 0
        self.persistence = 1

    def energy(self) -> int:
        if self.gpu is not None:
            return 5_000_000 + int(self.gpu.energy_j() * 1000)
        if self.energy_mj is None:
            elapsed = time.monotonic() - self.born
            if self.counter_period_s > 0:
                elapsed = int(elapsed / self.counter_period_s) * self.counter_period_s
            return 5_000_000 + int(elapsed * 250_500)
        return self.energy_mj

    def instant_mw(self) -> int:
        if self.gpu is not None:
            return int(self.gpu.power_w(self.gpu.power_period_s) * 1000)
        return self.power_instant_mw

    def average_mw(self) -> int:
        if self.gpu is not None:
            return int(self.gpu.power_w(1.0, quantum_s=0.1) * 1000)
        return self.power_avg_mw

    def utilisation(self) -> int:
        return 87 if self.gpu is None else round(self.gpu.utilisation_pct())

    def pids(self) -> list[int]:
        return self.gpu.pids() if self.gpu is not None else list(self.running)

    def samples(self) -> list[Any]:
        if self.gpu is None:
            now = time.time()
            return [
                s
                for s in self.proc_samples
                if self.hidden_until.get((int(s.pid), int(s.timeStamp)), 0.0) <= now
            ]
        to_wall = time.time() - time.monotonic()
        return [
            process_sample(pid, int((stamp + to_wall) * 1_000_000), util)
            for pid, (stamp, util) in self.gpu.process_samples().items()
        ]


class FakeNvmlLibrary:
    """Stands in for the pynvml module: NVML's calls, units, structures and error codes."""

    NVMLError = pynvml.NVMLError

    def __init__(self, count: int = 1, devices: list[FakeDevice] | None = None) -> None:
        self.devices = devices if devices is not None else [FakeDevice(i) for i in range(count)]
        self.calls: dict[str, int] = {}
        self.in_call = 0
        self.shutdown_under_a_live_call = False
        self.hang: threading.Event | None = None  # set: the next field read waits on it
        self.hung = threading.Event()

    def __getattr__(self, name: str) -> object:
        # the first device's settings, for the one-GPU tests
        if name in {"counter", "proc", "energy_mj", "proc_samples", "last_seen_args"}:
            return getattr(self.devices[0], name)
        # NVML's constants and structures are the real module's
        if name.startswith(("NVML_", "nvmlClocks", "nvmlMemory", "c_nvml")):
            return getattr(pynvml, name)
        raise AttributeError(name)

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _dev(self, handle: str) -> FakeDevice:
        device = self.devices[int(handle.removeprefix("handle"))]
        if device.broken is not None:
            raise pynvml.NVMLError(device.broken)
        return device

    # -- the library -----------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._count("nvmlInit")

    def nvmlShutdown(self) -> None:
        self._count("nvmlShutdown")
        if self.in_call:
            self.shutdown_under_a_live_call = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return "570.00-fake"

    def nvmlSystemGetNVMLVersion(self) -> str:
        return "12.570.00-fake"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if self.devices[index].broken is not None:
            raise pynvml.NVMLError(self.devices[index].broken)
        return f"handle{index}"

    # -- identity and settings -----------------------------------------------------

    def nvmlDeviceGetName(self, h: str) -> bytes:
        return self._dev(h).name.encode()  # old pynvml releases return bytes

    def nvmlDeviceGetUUID(self, h: str) -> str:
        return self._dev(h).uuid

    def nvmlDeviceGetPciInfo(self, h: str) -> Any:
        info = pynvml.nvmlPciInfo_t()
        info.busId = f"00000000:{0x18 + self._dev(h).index:02X}:00.0".encode()
        return info

    def nvmlDeviceGetArchitecture(self, h: str) -> int:
        self._dev(h)
        return int(pynvml.NVML_DEVICE_ARCH_HOPPER)

    def nvmlDeviceGetMigMode(self, h: str) -> list[int]:
        if not self._dev(h).mig:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [pynvml.NVML_DEVICE_MIG_ENABLE, pynvml.NVML_DEVICE_MIG_ENABLE]

    def nvmlDeviceGetPersistenceMode(self, h: str) -> int:
        return self._dev(h).persistence

    def nvmlDeviceGetEnforcedPowerLimit(self, h: str) -> int:
        self._count("nvmlDeviceGetEnforcedPowerLimit")
        return self._dev(h).power_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, h: str) -> int:
        return self._dev(h).power_limit_mw

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: str) -> int:
        return self._dev(h).default_power_limit_mw

    def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> int:
        self._count("nvmlDeviceGetClockInfo")
        clocks = self._dev(h).clocks
        if kind not in clocks:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return clocks[kind]

    def nvmlDeviceGetMaxClockInfo(self, h: str, kind: int) -> int:
        return self.nvmlDeviceGetClockInfo(h, kind)

    def nvmlDeviceGetApplicationsClock(self, h: str, kind: int) -> int:
        clocks = self._dev(h).app_clocks
        if kind not in clocks:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return clocks[kind]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
        self._count("nvmlDeviceGetCurrentClocksEventReasons")
        return self._dev(h).event_reasons

    nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons

    # -- energy and power ----------------------------------------------------------

    def nvmlDeviceGetFieldValues(self, h: str, field_ids: list[int]) -> Any:
        self._count("nvmlDeviceGetFieldValues")
        device = self._dev(h)
        if not device.fields:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        if self.hang is not None:
            gate, self.hang = self.hang, None
            self.in_call += 1
            self.hung.set()
            gate.wait(30)
            self.in_call -= 1
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for value, field_id in zip(values, field_ids, strict=True):
            value.fieldId = field_id
            value.timestamp = int(time.time() * 1_000_000)
            value.nvmlReturn = OK
            if field_id == pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION and device.counter:
                value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                value.value.ullVal = device.energy()
            elif field_id == pynvml.NVML_FI_DEV_POWER_INSTANT and device.instant_supported:
                value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                value.value.uiVal = device.instant_mw()
            else:
                value.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:
        self._count("nvmlDeviceGetTotalEnergyConsumption")
        device = self._dev(h)
        if not device.counter:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return device.energy()

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        self._count("nvmlDeviceGetPowerUsage")
        return self._dev(h).average_mw()  # milliwatts

    # -- utilisation, memory, temperature, processes --------------------------------

    def nvmlDeviceGetUtilizationRates(self, h: str) -> Any:
        self._count("nvmlDeviceGetUtilizationRates")
        util = pynvml.c_nvmlUtilization_t()
        util.gpu, util.memory = self._dev(h).utilisation(), 40
        return util

    def nvmlDeviceGetMemoryInfo(self, h: str, version: int | None = None) -> Any:
        device = self._dev(h)
        if device.memory_exception is not None:
            raise device.memory_exception
        reserved = 512 * _MIB
        used = 3 * 1024 * _MIB if device.gpu is None else 1024 * _MIB * len(device.pids())
        if version == pynvml.nvmlMemory_v2:
            memory = pynvml.c_nvmlMemory_v2_t()
            memory.version, memory.total, memory.reserved = version, 10 * 1024 * _MIB, reserved
            memory.used = used
            return memory
        # v1 counts the driver's reserved memory as used.
        memory = pynvml.c_nvmlMemory_t()
        memory.total, memory.used, memory.free = 10 * 1024 * _MIB, used + reserved, 0
        return memory

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        self._count("nvmlDeviceGetTemperature")
        device = self._dev(h)
        if device.temperature_error is not None:
            raise pynvml.NVMLError(device.temperature_error)
        return 45

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list[Any]:
        found = []
        for pid in self._dev(h).pids():
            info = pynvml.c_nvmlProcessInfo_t()
            info.pid, info.usedGpuMemory = pid, 1024 * _MIB
            found.append(pynvml.nvmlStructToFriendlyObject(info))
        return found

    def nvmlDeviceGetProcessUtilization(self, h: str, last_seen: int) -> list[Any]:
        device = self._dev(h)
        device.last_seen_args.append(last_seen)
        if not device.proc:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        newer = [s for s in device.samples() if s.timeStamp > last_seen]
        if not newer:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return newer


def from_config(raw: str) -> FakeNvmlLibrary:
    """A library from JSON: ``{"gpus": [{"name": ..., "mig": false, "load_dir": DIR,
    "idle_w": 70, "busy_w": 650, "counter_period_s": 0.1, "power_period_s": 0.02,
    "proc_period_s": 0.1667, "power_limit_w": 700}]}``; without ``load_dir`` a GPU is
    the scripted default. Empty: one scripted GPU."""
    config: dict[str, Any] = json.loads(raw) if raw.strip() else {}
    devices = []
    for index, spec in enumerate(config.get("gpus", [{}])):
        gpu = None
        if spec.get("load_dir"):
            keys = ("idle_w", "busy_w", "counter_period_s", "power_period_s", "proc_period_s")
            gpu = SyntheticGpu(
                Path(spec["load_dir"]), **{k: float(spec[k]) for k in keys if k in spec}
            )
        device = FakeDevice(index, gpu=gpu, name=str(spec.get("name", "NVIDIA Fake 100")))
        device.mig = bool(spec.get("mig", False))
        if "power_limit_w" in spec:
            device.power_limit_mw = device.default_power_limit_mw = int(
                spec["power_limit_w"] * 1000
            )
        devices.append(device)
    return FakeNvmlLibrary(devices=devices)


def from_environment() -> FakeNvmlLibrary:
    return from_config(os.environ.get(CONFIG_ENV, ""))
