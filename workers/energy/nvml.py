"""GPU meter on the real NVML library (``nvidia-ml-py``, imported as ``pynvml``).

NVML semantics relied on here (NVML API reference, ``pynvml.py``):

- ``nvmlDeviceGetFieldValues(handle, [NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
  NVML_FI_DEV_POWER_INSTANT])`` reads the energy counter (mJ since the driver loaded,
  Volta and newer) and the instantaneous power (mW) in one call; each value carries
  its own ``nvmlReturn``, so one unsupported field does not lose the other.
  ``nvmlDeviceGetPowerUsage`` is a one-second average on Ampere (but GA100) and
  Hopper: it is only the fallback, and the figure says so.
- ``nvmlDeviceGetTotalEnergyConsumption``: the same counter, for drivers without the
  field; ``NVML_ERROR_NOT_SUPPORTED`` before Volta (the session integrates power).
- ``nvmlDeviceGetMigMode``: with MIG enabled the counter and power cover the whole
  board, other tenants' instances included, so such a GPU is refused (as Zeus does).
- ``nvmlDeviceGetMemoryInfo(handle, version=nvmlMemory_v2)``: ``used`` without the
  driver's reserved memory (v1 counts it as used).
- ``nvmlDeviceGetProcessUtilization(handle, lastSeenTimeStamp)``: per-process SM
  utilisation samples newer than ``lastSeenTimeStamp`` (microseconds, CPU wall
  clock); ``NVML_ERROR_NOT_FOUND`` when there is no new sample. Each process's
  sample carries its own stamp, and drivers return each process's newest one, which
  may be older than another process's: the filter is per process here (NVML is asked
  from the previous read's time less :data:`PROC_LATE_S`, and a sample already
  returned is dropped by its pid and stamp), never "newer than the newest stamp of
  any process". Some drivers average a process's samples since ``lastSeenTimeStamp``:
  asking from the previous read keeps that average to about one read's interval.
- Settings and clocks (``nvmlDeviceGetEnforcedPowerLimit``, ``nvmlDeviceGetClockInfo``,
  ``nvmlDeviceGetApplicationsClock``, ``nvmlDeviceGetCurrentClocksEventReasons``) are
  read once a second with utilisation: a run records them and a change is flagged.
- Every read may answer an error: that quantity is None for the sample (never 0),
  the rest of the sample stands, and the report counts the failures.

NVML is opened once per process (:func:`init` is idempotent) and released only when
no call is in flight: a hung call must not have the library pulled from under it.
Before a fork the library is released (when idle) so a pool child opens its own.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from workers.energy.meters import GpuSample, GpuState, MeterUnavailable

try:  # the package is a dependency, but keep the engine importable without it
    import pynvml as _pynvml

    _IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - nvidia-ml-py is installed in the venv
    _pynvml = None
    _IMPORT_ERROR = f"the pynvml module (nvidia-ml-py) cannot be imported: {exc}"

#: The driver keeps each process's newest sample, one per ~1/6 s while it is active
#: (workers.energy.share): read on every tick of the 10 Hz sampler, no sample goes
#: unseen and a process with no new sample was idle in that period. Read once a second,
#: five of six were never seen, and the processes' samples, each at its own phase,
#: covered different parts of the second: a part only one process's sample covered
#: went wholly to it. The limit only keeps a faster sampler from asking more often
#: than 20 times a second. The smoke check measures this call's cost on a real GPU.
PROC_UTIL_PERIOD_S = 0.05
#: Utilisation, memory and temperature change slowly and NVML updates them about
#: once a second: read them at 1 Hz and hold the value between reads.
SLOW_PERIOD_S = 1.0
#: How far before the previous read NVML is asked for per-process samples again: a
#: process's newest sample may arrive this much after another's newer one.
PROC_LATE_S = 2.0
#: Field ids (nvml.h); fixed by NVML's ABI, spelled here for pynvml releases without them.
FI_TOTAL_ENERGY = 83  # NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, mJ
FI_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT, mW
_MIG_ENABLED = 1  # NVML_DEVICE_MIG_ENABLE
_MIB = 1024 * 1024
_CUDA_ENV = "CUDA_VISIBLE_DEVICES"

_lock = threading.Lock()
_open_pid: int | None = None  # the process that holds NVML open
_in_flight = 0  # NVML calls under way (any thread)
_meters_open = 0  # NvmlGpuMeter objects holding device handles


def _nvml() -> Any:
    if _pynvml is None:
        raise MeterUnavailable(_IMPORT_ERROR)
    return _pynvml


def init() -> None:
    """Open NVML for this process (once); MeterUnavailable says why not."""
    global _open_pid
    nv = _nvml()
    with _lock:
        if _open_pid == os.getpid():
            return
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise MeterUnavailable(f"NVML could not be initialised: {_error_text(exc)}") from exc
        _open_pid = os.getpid()


def shutdown() -> bool:
    """Release NVML unless a call is in flight (a hung read): True when released."""
    global _open_pid
    with _lock:
        return _release_locked()


def _release_locked() -> bool:
    global _open_pid
    if _open_pid != os.getpid():
        _open_pid = None
        return True
    if _in_flight:
        return False
    try:
        _nvml().nvmlShutdown()
    except Exception:  # noqa: BLE001 - already shut down: nothing to release
        pass
    _open_pid = None
    return True


class _Calling:
    """Counts a call in flight, so :func:`shutdown` never runs under it. A plain
    context manager, not @contextmanager's generator: it is entered every tick."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _in_flight
        with _lock:
            _in_flight += 1

    def __exit__(self, *exc: object) -> None:
        global _in_flight
        with _lock:
            _in_flight -= 1


_CALLING = _Calling()


def _calling() -> _Calling:
    return _CALLING


_fork_held = False


def _before_fork() -> None:
    global _fork_held
    # A child must not inherit an open NVML (its driver handles and locks are the
    # parent's): release it if idle; the parent reopens on its next call. Not while a
    # meter holds device handles: those would die with the library.
    _fork_held = _lock.acquire(blocking=False)
    if _fork_held and not _meters_open:
        _release_locked()


def _after_fork_in_parent() -> None:
    global _fork_held
    if _fork_held:
        _fork_held = False
        _lock.release()


def _after_fork_in_child() -> None:
    global _lock, _in_flight, _fork_held, _meters_open
    _lock = threading.Lock()  # a lock held by a parent's thread would never be freed
    _in_flight = 0  # threads do not survive a fork
    _meters_open = 0  # the parent's meters are the parent's
    _fork_held = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


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


# ---- which devices this process may use ---------------------------------------------


def visible_filter(
    devices: list[tuple[int, str]], env: Mapping[str, str] | None = None
) -> tuple[set[int] | None, str]:
    """The NVML indices an inherited ``CUDA_VISIBLE_DEVICES`` allows (None: all), and
    a note on how it was read. ``devices``: (NVML index, UUID) of every GPU.

    Entries are UUIDs (``GPU-…``, a unique prefix is enough, as in CUDA) or ordinals.
    Ordinals are read in NVML's PCI-bus order, which is CUDA's only with
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; the training is pinned by UUID either way, so
    it runs on what is metered. As in CUDA, the list ends at the first invalid entry.
    """
    raw = (os.environ if env is None else env).get(_CUDA_ENV)
    if raw is None:
        return None, ""
    allowed: set[int] = set()
    notes: list[str] = []
    for entry in (e.strip() for e in raw.split(",")):
        if entry.isdigit():
            index = int(entry)
            if not any(i == index for i, _ in devices):
                notes.append(f"entry {entry!r} names no GPU: the rest is ignored")
                break
            allowed.add(index)
            notes.append("ordinals read in PCI-bus order")
            continue
        matches = [i for i, uuid in devices if entry and uuid.startswith(entry)]
        if entry.startswith("GPU-") and len(matches) == 1:
            allowed.add(matches[0])
            continue
        notes.append(f"entry {entry!r} matches no single GPU: the rest is ignored")
        break
    note = f"{_CUDA_ENV}={raw!r} inherited: only GPU(s) {sorted(allowed)} metered"
    extra = sorted(set(notes))
    return allowed, note + (f" ({'; '.join(extra)})" if extra else "")


def cuda_pin(uuids: list[str]) -> dict[str, str]:
    """The environment that makes CUDA use exactly these GPUs: by UUID, in bus order."""
    if not uuids:
        return {}
    return {_CUDA_ENV: ",".join(uuids), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def _memory_used_mib(nv: Any, handle: Any, v2: bool) -> float:
    if v2:
        return float(nv.nvmlDeviceGetMemoryInfo(handle, version=nv.nvmlMemory_v2).used) / _MIB
    return float(nv.nvmlDeviceGetMemoryInfo(handle).used) / _MIB


def _describe(nv: Any, index: int) -> dict[str, Any]:
    handle = nv.nvmlDeviceGetHandleByIndex(index)
    try:
        nv.nvmlDeviceGetTotalEnergyConsumption(handle)
        counter = True
    except nv.NVMLError:
        counter = False
    return {
        "index": index,
        "name": _text(nv.nvmlDeviceGetName(handle)),
        "uuid": _text(nv.nvmlDeviceGetUUID(handle)),
        "memory_mib": int(nv.nvmlDeviceGetMemoryInfo(handle).total) // _MIB,
        "energy_counter": counter,
        "mig": _mig_enabled(nv, handle),
    }


def _mig_enabled(nv: Any, handle: Any) -> bool:
    try:
        return int(nv.nvmlDeviceGetMigMode(handle)[0]) == _MIG_ENABLED
    except nv.NVMLError:  # NOT_SUPPORTED: a board without MIG
        return False


def unmeterable(gpu: dict[str, Any]) -> str:
    """Why a GPU of :func:`list_gpus` cannot be metered ("" = it can): such a GPU gets
    no worker slot, so no training runs on it unmeasured or lands on another GPU."""
    if "error" in gpu:
        return f"GPU {gpu.get('index')}: NVML cannot read it ({gpu['error']})"
    if gpu.get("mig"):
        return (
            f"GPU {gpu.get('index')} has MIG enabled: NVML's energy and power cover the "
            "whole board, other tenants' instances included"
        )
    return ""


def list_gpus() -> list[dict[str, Any]]:
    """The GPUs this process may use, for host registration; empty without NVML.

    A GPU NVML cannot read (no permission, lost) is listed with an ``error`` and
    does not hide the others.
    """
    try:
        init()
    except MeterUnavailable:
        return []
    nv = _nvml()
    gpus: list[dict[str, Any]] = []
    with _calling():
        try:
            count = int(nv.nvmlDeviceGetCount())
        except nv.NVMLError:
            return []
        for index in range(count):
            try:
                gpus.append(_describe(nv, index))
            except Exception as exc:  # noqa: BLE001 - one bad GPU must not hide the rest
                gpus.append({"index": index, "error": _error_text(exc)})
    allowed, _note = visible_filter([(g["index"], g.get("uuid", "")) for g in gpus])
    return [g for g in gpus if allowed is None or g["index"] in allowed]


def driver_version() -> str:
    """The NVIDIA driver's version, for the host's record (a report's hardware); ""
    without NVML or where the driver does not say."""
    try:
        init()
    except MeterUnavailable:
        return ""
    nv = _nvml()
    with _calling():
        try:
            return _text(nv.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001 - a missing version costs the fact, not the host
            return ""


def gpu_utilisation() -> dict[str, float | None]:
    """Each GPU's utilisation now (percent, keyed by index as a string: it travels as
    JSON), for the host heartbeat and the Hosts page; empty when NVML is absent."""
    try:
        init()
    except MeterUnavailable:
        return {}
    nv = _nvml()
    found: dict[str, float | None] = {}
    with _calling():
        try:
            count = int(nv.nvmlDeviceGetCount())
        except nv.NVMLError:
            return found
        for index in range(count):
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(index)
                found[str(index)] = float(nv.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:  # noqa: BLE001 - unreadable GPU: shown as unknown
                found[str(index)] = None
    return found


def _field_number(value: Any) -> float:
    """The number in an ``nvmlFieldValue_t`` by its ``valueType``."""
    attr = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
    kind = int(value.valueType)
    return float(getattr(value.value, attr[kind] if 0 <= kind < len(attr) else "ullVal"))


class NvmlGpuMeter:
    """One physical GPU read through NVML. Call :func:`init` first."""

    def __init__(self, index: int) -> None:
        nv = _nvml()
        self.index = index
        self.flags: list[str] = []
        with _calling():
            try:
                count = int(nv.nvmlDeviceGetCount())
                if not 0 <= index < count:
                    raise MeterUnavailable(f"GPU {index} does not exist (NVML sees {count} GPU(s))")
                self._handle = nv.nvmlDeviceGetHandleByIndex(index)
                name = _text(nv.nvmlDeviceGetName(self._handle))
                self.name = name
                self.uuid: str | None = _text(nv.nvmlDeviceGetUUID(self._handle))
            except nv.NVMLError as exc:
                raise MeterUnavailable(f"GPU {index}: {_error_text(exc)}") from exc
            if _mig_enabled(nv, self._handle):
                raise MeterUnavailable(
                    f"GPU {index} has MIG enabled: NVML's energy and power cover the whole "
                    "board, other tenants' instances included, so it is not metered"
                )
            self._fields = self._probe_fields()
            self._legacy_counter = FI_TOTAL_ENERGY not in self._fields and self._probe_counter()
            self._mem_v2 = self._probe_memory_v2()
        self.device = f"GPU {index}: {name} ({self.uuid})"
        self._open = True
        _count_meter(+1)
        self.has_energy_counter = FI_TOTAL_ENERGY in self._fields or self._legacy_counter
        if FI_POWER_INSTANT not in self._fields:
            self.flags.append(
                f"GPU {index}: power from nvmlDeviceGetPowerUsage, a one-second average on "
                "Ampere (but GA100) and Hopper: the trace, maximum and average are smoothed"
            )
        #: Quantities NVML said it does not support on this GPU: not asked again.
        self._unsupported: set[str] = set()
        self._held: dict[str, float | None] = {"util": None, "mem": None, "temp": None}
        self._last_slow = float("-inf")
        # Only samples taken after the meter opened belong to this run; then, per
        # process, only samples newer than the last one it returned.
        self._opened_us = int(time.time() * 1_000_000)
        self._proc_seen: dict[int, int] = {}
        self._last_proc_read = float("-inf")
        self._last_proc_wall_us = self._opened_us

    def _probe_fields(self) -> list[int]:
        nv = _nvml()
        try:
            values = nv.nvmlDeviceGetFieldValues(self._handle, [FI_TOTAL_ENERGY, FI_POWER_INSTANT])
        except Exception:  # noqa: BLE001 - an old driver or pynvml: the single calls remain
            return []
        return [int(v.fieldId) for v in values if int(v.nvmlReturn) == 0]

    def _probe_counter(self) -> bool:
        nv = _nvml()
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except nv.NVMLError as exc:
            if not _is(exc, "NVML_ERROR_NOT_SUPPORTED"):
                self.flags.append(f"energy counter unreadable: {_error_text(exc)}")
            return False
        return True

    def _probe_memory_v2(self) -> bool:
        nv = _nvml()
        if not hasattr(nv, "nvmlMemory_v2"):
            return False
        try:
            _memory_used_mib(nv, self._handle, v2=True)
        except Exception:  # noqa: BLE001 - older driver or pynvml: v1 (counts reserved memory)
            return False
        return True

    def read(self) -> GpuSample:
        errors: list[tuple[str, str]] = []
        state = None
        with _calling():
            energy, power = self._read_fast(errors)
            now = time.monotonic()
            if now - self._last_slow >= SLOW_PERIOD_S:
                self._last_slow = now
                state = self._read_slow(errors)
            proc = self._read_proc_util()
        return GpuSample(
            power_w=power,
            energy_mj=energy,
            util_pct=self._held["util"],
            mem_mib=self._held["mem"],
            temp_c=self._held["temp"],
            proc_util=proc,
            errors=tuple(errors) if errors else (),
            state=state,
        )

    def read_energy_power(self) -> tuple[int | None, float | None]:
        """The energy counter (mJ) and power (W) alone, as :meth:`read` gets them: what
        :func:`workers.energy.sensors.observe_update_periods` polls."""
        with _calling():
            return self._read_fast([])

    def _read_fast(self, errors: list[tuple[str, str]]) -> tuple[int | None, float | None]:
        """Energy (mJ) and power (W): one field-values call, else the single calls."""
        nv = _nvml()
        energy: int | None = None
        power: float | None = None
        if self._fields:
            try:
                values = nv.nvmlDeviceGetFieldValues(self._handle, self._fields)
            except Exception as exc:  # noqa: BLE001 - fall back to the single calls below
                errors.append(("energy and power fields", _error_text(exc)))
                values = []
            for value in values:
                field_id = int(value.fieldId)
                if int(value.nvmlReturn) != 0:
                    what = "energy field" if field_id == FI_TOTAL_ENERGY else "power field"
                    errors.append((what, _error_text(nv.NVMLError(int(value.nvmlReturn)))))
                elif field_id == FI_TOTAL_ENERGY:
                    energy = int(_field_number(value))
                elif field_id == FI_POWER_INSTANT:
                    power = _field_number(value) / 1000.0  # mW -> W
        if energy is None and self.has_energy_counter:
            energy = self._quantity(
                "energy", lambda: int(nv.nvmlDeviceGetTotalEnergyConsumption(self._handle)), errors
            )
        if power is None:
            power = self._quantity(
                "power", lambda: float(nv.nvmlDeviceGetPowerUsage(self._handle)) / 1000.0, errors
            )
        return energy, power

    def _read_slow(self, errors: list[tuple[str, str]]) -> GpuState:
        nv = _nvml()
        h = self._handle
        self._held["util"] = self._quantity(
            "utilisation", lambda: float(nv.nvmlDeviceGetUtilizationRates(h).gpu), errors
        )
        self._held["mem"] = self._quantity(
            "memory", lambda: _memory_used_mib(nv, h, self._mem_v2), errors
        )
        self._held["temp"] = self._quantity(
            "temperature",
            lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            errors,
        )
        return self._read_state(errors)

    def _read_state(self, errors: list[tuple[str, str]]) -> GpuState:
        """Settings and clocks; one NOT_SUPPORTED costs that quantity only."""
        nv = _nvml()
        h = self._handle

        def clock(name: str, call: str, kind: str) -> float | None:
            value: float | None = self._quantity(
                name, lambda: float(getattr(nv, call)(h, getattr(nv, kind))), errors
            )
            return value

        reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        limit = self._quantity(
            "power limit", lambda: float(nv.nvmlDeviceGetEnforcedPowerLimit(h)) / 1000.0, errors
        )
        return GpuState(
            power_limit_w=limit,
            sm_clock_mhz=clock("SM clock", "nvmlDeviceGetClockInfo", "NVML_CLOCK_SM"),
            mem_clock_mhz=clock("memory clock", "nvmlDeviceGetClockInfo", "NVML_CLOCK_MEM"),
            app_sm_clock_mhz=clock(
                "application SM clock", "nvmlDeviceGetApplicationsClock", "NVML_CLOCK_SM"
            ),
            app_mem_clock_mhz=clock(
                "application memory clock", "nvmlDeviceGetApplicationsClock", "NVML_CLOCK_MEM"
            ),
            event_reasons=None
            if reasons is None
            else self._quantity("clock event reasons", lambda: int(reasons(h)), errors),
        )

    def _quantity(self, name: str, read: Any, errors: list[tuple[str, str]]) -> Any:
        """One quantity: its value, or None with the error noted (NOT_SUPPORTED: never
        asked again). Any exception is caught: it costs this quantity, not the sample."""
        if name in self._unsupported:
            return None
        try:
            return read()
        except Exception as exc:  # noqa: BLE001 - see the docstring
            if _is(exc, "NVML_ERROR_NOT_SUPPORTED"):
                self._unsupported.add(name)
            else:
                errors.append((name, _error_text(exc)))
            return None

    def _read_proc_util(self) -> tuple[tuple[int, float, int], ...] | None:
        if "process utilisation" in self._unsupported:
            return None
        now = time.monotonic()
        if now - self._last_proc_read < PROC_UTIL_PERIOD_S:
            return ()  # supported, but nothing asked for this tick
        self._last_proc_read = now
        nv = _nvml()
        # Asked for the last few seconds, not "since the newest stamp of any process":
        # a process's new sample may be older than another's (see the module's notes).
        wall_us = int(time.time() * 1_000_000)
        floor = max(self._opened_us, self._last_proc_wall_us - int(PROC_LATE_S * 1_000_000))
        self._last_proc_wall_us = wall_us
        try:
            samples = nv.nvmlDeviceGetProcessUtilization(self._handle, floor)
        except Exception as exc:  # noqa: BLE001 - a failed read is no sample
            # NOT_FOUND: no new sample since lastSeenTimeStamp. pynvml also raises
            # NVMLError(NVML_SUCCESS) when the count query returns zero samples.
            if _is(exc, "NVML_ERROR_NOT_FOUND") or getattr(exc, "value", None) == 0:
                return ()
            if _is(exc, "NVML_ERROR_NOT_SUPPORTED"):
                self._unsupported.add("process utilisation")
                self.flags.append("NVML does not report per-process utilisation on this GPU")
                return None
            return ()
        found: list[tuple[int, float, int]] = []
        seen = self._proc_seen
        for sample in samples:
            pid, stamp = int(sample.pid), int(sample.timeStamp)
            if stamp <= max(seen.get(pid, 0), self._opened_us):
                continue  # this process's sample already returned (or before the meter)
            seen[pid] = stamp
            found.append((pid, float(sample.smUtil), stamp))
        if len(seen) > 1000:  # pids long gone: forget them
            self._proc_seen = {p: t for p, t in seen.items() if t >= floor}
        return tuple(found)

    def close(self) -> None:
        """The handle needs no release; NVML stays open for the process."""
        if self._open:
            self._open = False
            _count_meter(-1)


def _count_meter(delta: int) -> None:
    global _meters_open
    with _lock:
        _meters_open += delta
