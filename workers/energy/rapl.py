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

from dataclasses import dataclass
from pathlib import Path

from workers.energy.integrate import counter_delta
from workers.energy.meters import CpuMethod, CpuReading, MeterUnavailable

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
WHOLE_MACHINE_FLAG = "whole machine: includes the background"


@dataclass
class _Zone:
    name: str
    kind: str  # "package" or "dram"
    energy_path: Path
    max_range_uj: int | None
    last_uj: int = 0
    total_uj: int = 0
    wraps: int = 0


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
            max_range = None
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


class RaplCpuMeter:
    method: CpuMethod = "rapl"
    whole_machine = True

    def __init__(self, root: Path = DEFAULT_POWERCAP_ROOT) -> None:
        self._zones = discover_zones(root)
        self.device = "RAPL " + ", ".join(z.name for z in self._zones)
        self._has_dram = any(z.kind == "dram" for z in self._zones)

    def start(self, foreground_pid: int | None) -> None:
        for zone in self._zones:
            zone.last_uj = _read_int(zone.energy_path)
            zone.total_uj = 0
            zone.wraps = 0

    def poll(self) -> None:
        for zone in self._zones:
            try:
                current = _read_int(zone.energy_path)
            except (OSError, ValueError):
                continue  # a missed read only delays the delta to the next poll
            if current < zone.last_uj:
                zone.wraps += 1
            zone.total_uj += counter_delta(zone.last_uj, current, zone.max_range_uj)
            zone.last_uj = current

    def total(self) -> CpuReading:
        package = sum(z.total_uj for z in self._zones if z.kind == "package") / 1e6
        dram = sum(z.total_uj for z in self._zones if z.kind == "dram") / 1e6
        wraps = sum(z.wraps for z in self._zones)
        flags = [WHOLE_MACHINE_FLAG]
        if wraps:
            flags.append(f"RAPL counter wrapped {wraps} time(s) during the run (handled)")
        return CpuReading(package, dram if self._has_dram else None, flags)

    def stop(self) -> CpuReading:
        self.poll()
        return self.total()
