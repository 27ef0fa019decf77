"""Compact storage of a run's sample trace (kept in the database, plotted by the pages).

Layout: ``b"WLT1"``, a 4-byte big-endian header length, a JSON header, then a zlib
body. Each channel is quantised to an integer grid (``scale``: 1 ms for time, 0.01 W
for power, ...), delta-encoded, and stored in the narrowest integer type its deltas
fit. At 10 Hz the time deltas are all ~100 ms and the others change little from one
tenth of a second to the next, so zlib packs an hour of one GPU into roughly 100 KB
where a row per sample would be tens of MB.

A reading the meter could not take is kept as missing (a presence bitmap), never
as 0: :func:`decode_trace` returns None there.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MAGIC = b"WLT1"
VERSION = 1

#: Quantisation step per quantity (value = round(x / scale) * scale).
SCALES: dict[str, float] = {
    "t": 0.001,
    "power_w": 0.01,
    "util_pct": 0.1,
    "mem_mib": 1.0,
    "temp_c": 0.1,
    "cpu_power_w": 0.01,
}
GPU_FIELDS = ("power_w", "util_pct", "mem_mib", "temp_c")

_DTYPES = (("<i1", 2**7), ("<i2", 2**15), ("<i4", 2**31), ("<i8", 2**63))


class TraceFormatError(ValueError):
    """The bytes are not a Wattlab trace (or are damaged)."""


def gpu_key(index: int, field: str) -> str:
    return f"gpu{index}.{field}"


def _scale_for(key: str) -> float:
    return SCALES[key.rsplit(".", 1)[-1]]


def encode_trace(
    channels: Mapping[str, Sequence[float | None]],
    meta: Mapping[str, Any] | None = None,
) -> bytes:
    """Encode channels of equal length. ``t`` (seconds from the start) is required;
    GPU channels are named ``gpu<index>.<field>`` (see :func:`gpu_key`)."""
    if "t" not in channels:
        raise ValueError("trace needs a 't' channel (seconds from the start)")
    n = len(channels["t"])
    header_channels: list[dict[str, Any]] = []
    body = bytearray()
    for key, values in channels.items():
        if len(values) != n:
            raise ValueError(f"trace channel {key!r} has {len(values)} samples, 't' has {n}")
        scale = _scale_for(key)
        present = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        q = np.fromiter((round(v / scale) for v in values if v is not None), dtype=np.int64)
        entry: dict[str, Any] = {"key": key, "scale": scale, "missing": bool(not present.all())}
        if entry["missing"]:
            body += np.packbits(present).tobytes()
        first = int(q[0]) if q.size else 0
        deltas = np.diff(q) if q.size else q
        bound = int(np.abs(deltas).max()) if deltas.size else 0
        dtype = next(name for name, limit in _DTYPES if bound < limit)
        entry.update(first=first, count=int(q.size), dtype=dtype)
        body += deltas.astype(dtype).tobytes()
        header_channels.append(entry)
    header = {"v": VERSION, "n": n, "channels": header_channels, "meta": dict(meta or {})}
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack(">I", len(head)) + head + zlib.compress(bytes(body), 9)


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    if len(data) < 8 or data[:4] != MAGIC:
        raise TraceFormatError("not a Wattlab trace (bad magic)")
    (length,) = struct.unpack(">I", data[4:8])
    try:
        header = json.loads(data[8 : 8 + length])
        body = zlib.decompress(data[8 + length :])
    except (ValueError, zlib.error) as exc:
        raise TraceFormatError(f"damaged trace: {exc}") from exc
    if header.get("v") != VERSION:
        raise TraceFormatError(f"unknown trace version {header.get('v')!r}")
    return header, body


def trace_meta(data: bytes) -> dict[str, Any]:
    """The metadata stored with the trace (devices, rate, start time)."""
    meta = _split(data)[0]["meta"]
    return dict(meta)


def decode_channels(data: bytes) -> dict[str, list[float | None]]:
    """The stored channels under their stored names (``t``, ``gpu0.power_w``, ...)."""
    header, body = _split(data)
    n = int(header["n"])
    out: dict[str, list[float | None]] = {}
    pos = 0
    try:
        for ch in header["channels"]:
            if ch["missing"]:
                nbytes = (n + 7) // 8
                bits = np.frombuffer(body, dtype=np.uint8, count=nbytes, offset=pos)
                present = np.unpackbits(bits)[:n].astype(bool)
                pos += nbytes
            else:
                present = np.ones(n, dtype=bool)
            count = int(ch["count"])
            dtype = np.dtype(ch["dtype"])
            ndeltas = max(count - 1, 0)
            deltas = np.frombuffer(body, dtype=dtype, count=ndeltas, offset=pos).astype(np.int64)
            pos += ndeltas * dtype.itemsize
            q = np.concatenate(([ch["first"]], ch["first"] + np.cumsum(deltas)))[:count]
            values = (q * float(ch["scale"])).tolist()
            it = iter(values)
            out[ch["key"]] = [next(it) if p else None for p in present.tolist()]
    except (KeyError, ValueError, StopIteration) as exc:
        raise TraceFormatError(f"damaged trace: {exc}") from exc
    return out


def decode_trace(data: bytes) -> dict[str, list[float | None]]:
    """Arrays for plotting: ``t`` (seconds from the start), ``power_w``, ``util_pct``,
    ``mem_mib``, ``temp_c`` (the GPU, or with several GPUs: total power and memory,
    mean utilisation, hottest temperature), ``gpu<i>_<field>`` per GPU when there are
    several, and ``cpu_power_w`` when the CPU meter gives power over time.
    None marks a sample the meter could not read (JSON null, a gap in the chart)."""
    stored = decode_channels(data)
    out: dict[str, list[float | None]] = {"t": stored["t"]}
    gpus = sorted({k.split(".", 1)[0] for k in stored if k.startswith("gpu")})
    for field in GPU_FIELDS:
        series = [stored[f"{g}.{field}"] for g in gpus if f"{g}.{field}" in stored]
        if not series:
            continue
        if len(gpus) == 1:
            out[field] = series[0]
            continue
        combined: list[float | None] = []
        for row in zip(*series, strict=True):
            if any(v is None for v in row):
                combined.append(None)  # a partial sum would look like a real dip
                continue
            vals = [v for v in row if v is not None]
            if field in ("power_w", "mem_mib"):
                combined.append(sum(vals))
            elif field == "util_pct":
                combined.append(sum(vals) / len(vals))
            else:
                combined.append(max(vals))
        out[field] = combined
    if len(gpus) > 1:
        for key, values in stored.items():
            if key.startswith("gpu"):
                out[key.replace(".", "_", 1)] = values
    if "cpu_power_w" in stored:
        out["cpu_power_w"] = stored["cpu_power_w"]
    return out
