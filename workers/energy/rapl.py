"""CPU energy from RAPL through the powercap sysfs tree (``/sys/class/powercap``).

Layout (Linux ``intel_rapl`` driver, also used for AMD since 5.8)::

    intel-rapl:0/name            "package-0"
    intel-rapl:0/energy_uj       cumulative microjoules, wraps at max_energy_range_uj
    intel-rapl:0/max_energy_range_uj
    intel-rapl:0/intel-rapl:0:1/name   "dram" (also "core", "uncore": parts of the package)

Only ``package-N`` and ``dram`` zones are summed: core/uncore are inside the package,
and ``psys`` (platform) and ``intel-rapl-mmio`` would count the package twice. RAPL
sees the whole socket, so the figure includes the background training and everything
else on the host.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workers.energy.integrate import counter_delta
from workers.energy.meters import CpuMethod, CpuReading, MeterUnavailable

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
WHOLE_MACHINE_FLAG = "whole machine: includes the background"


@dataclass(slots=True)
class _Zone:
    name: str
    kind: str  # "package" or "dram"
    energy_path: Path
    max_range_uj: int | None
    last_uj: int = 0
    last_t: float = 0.0
    total_uj: float = 0.0
    wraps: int = 0
    #: Wraps bridged by the power of the interval before (range unknown).
    bridged: int = 0
    #: µJ/s over the last interval without a wrap: what bridges a wrap of unknown range.
    rate_uj_s: float | None = None
    #: energy_uj kept open between start() and stop(): each poll is one pread (sysfs
    #: renders the value afresh on every read at offset 0) instead of open/read/close.
    fd: int = -1

    def read_uj(self) -> int:
        if self.fd < 0:
            return _read_int(self.energy_path)
        return int(os.pread(self.fd, 32, 0).strip())

    def open(self) -> None:
        self.close()
        try:
            self.fd = os.open(self.energy_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.fd = -1  # read by path on every poll instead

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def discover_zones(root: Path = DEFAULT_POWERCAP_ROOT) -> list[_Zone]:
    """The package and DRAM zones under ``root``; MeterUnavailable says why there are none."""
    if not root.is_dir():
        raise MeterUnavailable(f"{root} does not exist (no powercap/RAPL driver on this host)")
    zones: list[_Zone] = []
    seen: set[Path] = set()
    try:
        candidates = sorted(root.glob("*rapl*")) + sorted(root.glob("*rapl*/*rapl*"))
    except OSError as exc:
        raise MeterUnavailable(f"{root} cannot be listed: {exc}") from exc
    for zone_dir in candidates:
        # /sys/class/powercap lists subzones at top level too (as symlinks): dedupe.
        real = zone_dir.resolve()
        if real in seen or not (zone_dir / "energy_uj").exists():
            continue
        if "mmio" in zone_dir.name:
            # intel-rapl-mmio:N is the same package counter read through MMIO on
            # newer Intel parts: summing it too would count the package twice.
            continue
        seen.add(real)
        try:
            name = (zone_dir / "name").read_text().strip()
        except OSError:
            continue
        if name.startswith("package"):
            kind = "package"
        elif name == "dram":
            kind = "dram"
        else:
            continue
        max_range: int | None
        try:
            max_range = _read_int(zone_dir / "max_energy_range_uj")
        except (OSError, ValueError):
            max_range = None  # wraps are then bridged (see RaplCpuMeter.poll)
        zones.append(_Zone(f"{zone_dir.name} ({name})", kind, zone_dir / "energy_uj", max_range))
    if not zones:
        raise MeterUnavailable(f"no RAPL package or dram zone under {root}")
    for zone in zones:
        try:
            _read_int(zone.energy_path)
        except PermissionError as exc:
            raise MeterUnavailable(
                f"{zone.energy_path} is not readable by this user "
                "(root-only since Linux 5.10, CVE-2020-8694)"
            ) from exc
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"{zone.energy_path} cannot be read: {exc}") from exc
    return zones


def package_power_limits_w(root: Path = DEFAULT_POWERCAP_ROOT) -> list[float]:
    """The long-term power limit (PL1) of every package zone, in watts; [] if none reads.

    ``constraint_0_power_limit_uw`` stays world-readable where ``energy_uj`` became
    root-only, so a host that cannot measure can still say what its packages may draw.
    """
    limits: list[float] = []
    seen: set[Path] = set()
    try:
        candidates = sorted(root.glob("*rapl*"))
    except OSError:
        return []
    for zone_dir in candidates:
        real = zone_dir.resolve()
        if "mmio" in zone_dir.name or real in seen:
            continue  # the MMIO zone is the same package's limit a second time
        seen.add(real)
        try:
            if not (zone_dir / "name").read_text().strip().startswith("package"):
                continue
            name_file = zone_dir / "constraint_0_name"
            if name_file.exists() and name_file.read_text().strip() != "long_term":
                continue
            limit_uw = _read_int(zone_dir / "constraint_0_power_limit_uw")
        except (OSError, ValueError):
            continue
        if limit_uw > 0:
            limits.append(limit_uw / 1e6)
    return limits


class RaplCpuMeter:
    method: CpuMethod = "rapl"
    whole_machine = True

    def __init__(
        self, root: Path = DEFAULT_POWERCAP_ROOT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._zones = discover_zones(root)
        self._clock = clock
        self.device = "RAPL " + ", ".join(z.name for z in self._zones)
        self._has_dram = any(z.kind == "dram" for z in self._zones)
        self._packages = [z for z in self._zones if z.kind == "package"]
        self._drams = [z for z in self._zones if z.kind == "dram"]
        self.updated_at: float | None = None

    def start(self, foreground_pid: int | None) -> None:
        now = self._clock()
        for zone in self._zones:
            zone.open()
            zone.last_uj = zone.read_uj()
            zone.last_t = now
            zone.total_uj = 0.0
            zone.wraps = zone.bridged = 0
            zone.rate_uj_s = None
        self.updated_at = now

    def poll(self) -> None:
        now = self._clock()
        missed = False
        pread = os.pread
        for zone in self._zones:
            try:
                # zone.read_uj(), inline: this runs every tick.
                fd = zone.fd
                current = int(pread(fd, 32, 0)) if fd >= 0 else _read_int(zone.energy_path)
            except (OSError, ValueError):
                missed = True
                continue  # a missed read only delays the delta to the next poll
            elapsed = now - zone.last_t
            if current >= zone.last_uj:
                delta: float = current - zone.last_uj
                if elapsed > 0:
                    zone.rate_uj_s = delta / elapsed
            else:
                zone.wraps += 1
                if zone.max_range_uj:
                    delta = counter_delta(zone.last_uj, current, zone.max_range_uj)
                else:
                    # max_energy_range_uj unreadable: the part before the wrap is
                    # unknown. Bridge the interval with the power just before it (at
                    # least what was counted since the wrap), and go on counting: a
                    # total that stopped at the first wrap would be far worse.
                    zone.bridged += 1
                    bridged = (zone.rate_uj_s or 0.0) * max(elapsed, 0.0)
                    delta = max(float(current), bridged)
            zone.total_uj += delta
            zone.last_uj = current
            zone.last_t = now
        if not missed:  # a partial read is no fresh reading of the whole
            self.updated_at = now

    def running_j(self) -> float | None:
        """Package + DRAM so far, in joules: :meth:`total`'s figure without the reading
        and its flags (the live line asks every tick)."""
        package = sum(z.total_uj for z in self._packages) / 1e6
        if not self._has_dram:
            return package
        return package + sum(z.total_uj for z in self._drams) / 1e6

    def total(self) -> CpuReading:
        package = sum(z.total_uj for z in self._packages) / 1e6
        dram = sum(z.total_uj for z in self._drams) / 1e6
        wraps = sum(z.wraps for z in self._zones)
        flags = [WHOLE_MACHINE_FLAG]
        bridged = sum(z.bridged for z in self._zones)
        if wraps > bridged:
            flags.append(f"RAPL counter wrapped {wraps - bridged} time(s) during the run (handled)")
        if bridged:
            flags.append(
                f"RAPL counter wrapped {bridged} time(s) with max_energy_range_uj unreadable: "
                "the poll interval across each wrap is estimated from the power just before it"
            )
        return CpuReading(package, dram if self._has_dram else None, flags)

    def stop(self) -> CpuReading:
        try:
            self.poll()
        finally:
            for zone in self._zones:
                zone.close()
        return self.total()
