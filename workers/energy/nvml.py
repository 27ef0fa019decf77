"""GPU meter on the real NVML library (``nvidia-ml-py``, imported as ``pynvml``).

NVML semantics relied on here (NVML API reference):

- ``nvmlDeviceGetTotalEnergyConsumption``: millijoules since the driver was last
  reloaded, Volta and newer; ``NVML_ERROR_NOT_SUPPORTED`` on older boards, in which
  case the session integrates ``nvmlDeviceGetPowerUsage`` (milliwatts) instead.
- ``nvmlDeviceGetProcessUtilization(handle, lastSeenTimeStamp)``: per-process SM
  utilisation samples newer than ``lastSeenTimeStamp`` (microseconds, CPU clock);
  ``NVML_ERROR_NOT_FOUND`` when there is no new sample, ``NVML_ERROR_NOT_SUPPORTED``
  on boards that do not keep them.
- Every other read may also answer ``NOT_SUPPORTED`` (e.g. temperature on some
  data-centre boards): that quantity is then None, never 0.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from workers.energy.meters import GpuSample, MeterUnavailable

try:  # the package is a dependency, but keep the engine importable without it
    import pynvml as _pynvml

    _IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - nvidia-ml-py is installed in the venv
    _pynvml = None
    _IMPORT_ERROR = f"the pynvml module (nvidia-ml-py) cannot be imported: {exc}"

#: Per-process utilisation is kept by the driver at about one sample per ~1/6 s;
#: asking more often than once a second only returns the same few samples.
PROC_UTIL_PERIOD_S = 1.0

_init_lock = threading.Lock()


def _nvml() -> Any:
    if _pynvml is None:
        raise MeterUnavailable(_IMPORT_ERROR)
    return _pynvml


def init() -> None:
    """Initialise NVML (reference counted by pynvml); MeterUnavailable says why not."""
    nv = _nvml()
    with _init_lock:
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise MeterUnavailable(f"NVML could not be initialised: {_error_text(exc)}") from exc


def shutdown() -> None:
    nv = _nvml()
    with _init_lock:
        try:
            nv.nvmlShutdown()
        except nv.NVMLError:
            pass  # already shut down or never initialised: nothing to release


def _error_text(exc: BaseException) -> str:
    nv = _pynvml
    value = getattr(exc, "value", None)
    if nv is not None and value == nv.NVML_ERROR_LIBRARY_NOT_FOUND:
        return "the NVML library (libnvidia-ml.so.1) was not found: no NVIDIA driver on this host"
    if nv is not None and value == nv.NVML_ERROR_DRIVER_NOT_LOADED:
        return "the NVIDIA driver is not loaded"
    return str(exc) or type(exc).__name__


def _is(exc: BaseException, code_name: str) -> bool:
    nv = _pynvml
    return nv is not None and getattr(exc, "value", None) == getattr(nv, code_name, object())


def _text(value: Any) -> str:
    # pynvml returns str in recent releases and bytes in old ones.
    return value.decode() if isinstance(value, bytes) else str(value)


def list_gpus() -> list[dict[str, Any]]:
    """The GPUs of this host for host registration; empty when NVML is absent."""
    try:
        init()
    except MeterUnavailable:
        return []
    nv = _nvml()
    gpus: list[dict[str, Any]] = []
    try:
        for index in range(int(nv.nvmlDeviceGetCount())):
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            try:
                nv.nvmlDeviceGetTotalEnergyConsumption(handle)
                counter = True
            except nv.NVMLError:
                counter = False
            gpus.append(
                {
                    "index": index,
                    "name": _text(nv.nvmlDeviceGetName(handle)),
                    "uuid": _text(nv.nvmlDeviceGetUUID(handle)),
                    "memory_mib": int(nv.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024),
                    "energy_counter": counter,
                }
            )
    except nv.NVMLError:
        return gpus
    finally:
        shutdown()
    return gpus


def gpu_utilisation() -> dict[str, float | None]:
    """Each GPU's utilisation now (percent, keyed by index as a string: it travels as
    JSON), for the host heartbeat and the Hosts page; empty when NVML is absent."""
    try:
        init()
    except MeterUnavailable:
        return {}
    nv = _nvml()
    found: dict[str, float | None] = {}
    try:
        for index in range(int(nv.nvmlDeviceGetCount())):
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            try:
                found[str(index)] = float(nv.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nv.NVMLError:
                found[str(index)] = None  # not supported on this GPU: shown as unknown
    except nv.NVMLError:
        return found
    finally:
        shutdown()
    return found


class NvmlGpuMeter:
    """One physical GPU read through NVML. Call :func:`init` first."""

    def __init__(self, index: int) -> None:
        nv = _nvml()
        self.index = index
        self.flags: list[str] = []
        try:
            count = int(nv.nvmlDeviceGetCount())
            if not 0 <= index < count:
                raise MeterUnavailable(f"GPU {index} does not exist (NVML sees {count} GPU(s))")
            self._handle = nv.nvmlDeviceGetHandleByIndex(index)
            name = _text(nv.nvmlDeviceGetName(self._handle))
            uuid = _text(nv.nvmlDeviceGetUUID(self._handle))
        except nv.NVMLError as exc:
            raise MeterUnavailable(f"GPU {index}: {_error_text(exc)}") from exc
        self.device = f"GPU {index}: {name} ({uuid})"
        self.has_energy_counter = self._probe_counter()
        self._power_ok = True
        self._util_ok = True
        self._mem_ok = True
        self._temp_ok = True
        self._proc_ok = True
        # Only samples taken after the meter opened belong to this run.
        self._last_seen_us = int(time.time() * 1_000_000)
        self._last_proc_read = 0.0

    def _probe_counter(self) -> bool:
        nv = _nvml()
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except nv.NVMLError as exc:
            if not _is(exc, "NVML_ERROR_NOT_SUPPORTED"):
                self.flags.append(f"energy counter unreadable: {_error_text(exc)}")
            return False
        return True

    def read(self) -> GpuSample:
        nv = _nvml()
        h = self._handle
        energy: int | None = None
        if self.has_energy_counter:
            try:
                energy = int(nv.nvmlDeviceGetTotalEnergyConsumption(h))
            except nv.NVMLError:
                energy = None  # a transient failure: the session falls back to power
        power = util = mem = temp = None
        if self._power_ok:
            try:
                power = float(nv.nvmlDeviceGetPowerUsage(h)) / 1000.0  # mW -> W
            except nv.NVMLError as exc:
                self._power_ok = not _is(exc, "NVML_ERROR_NOT_SUPPORTED")
        if self._util_ok:
            try:
                util = float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            except nv.NVMLError as exc:
                self._util_ok = not _is(exc, "NVML_ERROR_NOT_SUPPORTED")
        if self._mem_ok:
            try:
                mem = float(nv.nvmlDeviceGetMemoryInfo(h).used) / (1024 * 1024)
            except nv.NVMLError as exc:
                self._mem_ok = not _is(exc, "NVML_ERROR_NOT_SUPPORTED")
        if self._temp_ok:
            try:
                temp = float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
            except nv.NVMLError as exc:
                self._temp_ok = not _is(exc, "NVML_ERROR_NOT_SUPPORTED")
        return GpuSample(
            power_w=power,
            energy_mj=energy,
            util_pct=util,
            mem_mib=mem,
            temp_c=temp,
            proc_util=self._read_proc_util(),
        )

    def _read_proc_util(self) -> tuple[tuple[int, float], ...] | None:
        if not self._proc_ok:
            return None
        now = time.monotonic()
        if now - self._last_proc_read < PROC_UTIL_PERIOD_S:
            return ()  # supported, but nothing asked for this tick
        self._last_proc_read = now
        nv = _nvml()
        try:
            samples = nv.nvmlDeviceGetProcessUtilization(self._handle, self._last_seen_us)
        except nv.NVMLError as exc:
            # NOT_FOUND: no new sample since lastSeenTimeStamp. pynvml also raises
            # NVMLError(NVML_SUCCESS) when the count query returns zero samples.
            if _is(exc, "NVML_ERROR_NOT_FOUND") or getattr(exc, "value", None) == 0:
                return ()
            if _is(exc, "NVML_ERROR_NOT_SUPPORTED"):
                self._proc_ok = False
                self.flags.append("NVML does not report per-process utilisation on this GPU")
                return None
            return ()
        pairs: list[tuple[int, float]] = []
        newest = self._last_seen_us
        for sample in samples:
            stamp = int(sample.timeStamp)
            if stamp <= self._last_seen_us:
                continue  # already counted in an earlier read
            pairs.append((int(sample.pid), float(sample.smUtil)))
            newest = max(newest, stamp)
        self._last_seen_us = newest
        return tuple(pairs)

    def close(self) -> None:
        """The handle needs no release; :func:`shutdown` releases the library."""
