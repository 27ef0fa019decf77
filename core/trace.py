"""Compact storage of a run's sample trace (kept in the database, plotted by the pages).

Layout: ``b"WLT1"``, a 4-byte big-endian header length, a JSON header, then a zlib
body. Each channel is quantised to an integer grid (``scale``: 1 ms for time, 0.01 W
for power, ...), delta-encoded, and stored in the narrowest integer type its deltas
fit. At 10 Hz the time deltas are all ~100 ms and the others change little from one
tenth of a second to the next, so zlib packs an hour of one GPU into roughly 100 KB
where a row per sample would be tens of MB.

A reading the meter could not take is kept as missing (a presence bitmap), never
as 0: :func:`decode_trace` returns None there.

While a run goes on, :class:`LiveTrace` (``b"WLT2"``) sends the chart a trace that
grows: each call encodes only the samples added since the previous one, as a chunk
laid out like the body above, through one zlib stream flushed after every chunk.
Re-encoding the whole trace every 2 s would cost the runner thread O(run length)
each time (tens of ms an hour into a run). The stored final trace is ``WLT1``.
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
LIVE_MAGIC = b"WLT2"
LIVE_VERSION = 2

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


#: Up to this many samples a channel is encoded in plain Python: a live chunk holds
#: ~20 (2 s at 10 Hz), where numpy's per-call overhead is most of the cost (the
#: runner's live trace took 0.6-1.1 ms of CPU per call on the loaded dev box). The
#: bytes are the same either way (tests/core/test_trace.py compares them).
SMALL_CHANNEL = 256
_INT64 = 2**63
_STRUCT_CODES = {"<i1": "b", "<i2": "h", "<i4": "i", "<i8": "q"}


def _encode_channel_numpy(
    values: Sequence[float | None], scale: float, n: int
) -> tuple[bytes | None, int, int, str, bytes]:
    present = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    q = np.fromiter((round(v / scale) for v in values if v is not None), dtype=np.int64)
    bitmap = None if present.all() else np.packbits(present).tobytes()
    first = int(q[0]) if q.size else 0
    deltas = np.diff(q) if q.size else q
    bound = int(np.abs(deltas).max()) if deltas.size else 0
    dtype = next(name for name, limit in _DTYPES if bound < limit)
    return bitmap, first, int(q.size), dtype, deltas.astype(dtype).tobytes()


def _encode_channel_small(
    values: Sequence[float | None], scale: float, n: int
) -> tuple[bytes | None, int, int, str, bytes] | None:
    """:func:`_encode_channel_numpy`'s bytes for a short channel, without numpy; None
    where a value is outside int64 (numpy's result there is numpy's to give)."""
    q = [round(v / scale) for v in values if v is not None]
    bitmap: bytes | None = None
    if len(q) != n:
        bits = bytearray((n + 7) // 8)  # np.packbits: first sample in the high bit
        for i, v in enumerate(values):
            if v is not None:
                bits[i >> 3] |= 0x80 >> (i & 7)
        bitmap = bytes(bits)
    deltas = [b - a for a, b in zip(q, q[1:], strict=False)]
    bound = max(map(abs, deltas)) if deltas else 0
    if bound >= _INT64 or (q and not (-_INT64 <= min(q) and max(q) < _INT64)):
        return None
    dtype = next(name for name, limit in _DTYPES if bound < limit)
    packed = struct.pack(f"<{len(deltas)}{_STRUCT_CODES[dtype]}", *deltas)
    return bitmap, q[0] if q else 0, len(q), dtype, packed


def _encode_body(
    channels: Mapping[str, Sequence[float | None]],
) -> tuple[int, list[dict[str, Any]], bytearray]:
    if "t" not in channels:
        raise ValueError("trace needs a 't' channel (seconds from the start)")
    n = len(channels["t"])
    header_channels: list[dict[str, Any]] = []
    body = bytearray()
    for key, values in channels.items():
        if len(values) != n:
            raise ValueError(f"trace channel {key!r} has {len(values)} samples, 't' has {n}")
        scale = _scale_for(key)
        encoded = _encode_channel_small(values, scale, n) if n <= SMALL_CHANNEL else None
        if encoded is None:
            encoded = _encode_channel_numpy(values, scale, n)
        bitmap, first, count, dtype, deltas = encoded
        if bitmap is not None:
            body += bitmap
        body += deltas
        header_channels.append(
            {
                "key": key,
                "scale": scale,
                "missing": bitmap is not None,
                "first": first,
                "count": count,
                "dtype": dtype,
            }
        )
    return n, header_channels, body


def encode_trace(
    channels: Mapping[str, Sequence[float | None]],
    meta: Mapping[str, Any] | None = None,
) -> bytes:
    """Encode channels of equal length. ``t`` (seconds from the start) is required;
    GPU channels are named ``gpu<index>.<field>`` (see :func:`gpu_key`)."""
    n, header_channels, body = _encode_body(channels)
    header = {"v": VERSION, "n": n, "channels": header_channels, "meta": dict(meta or {})}
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack(">I", len(head)) + head + zlib.compress(bytes(body), 9)


class LiveTrace:
    """A trace that grows while the run goes on; each :meth:`append` encodes only the
    new samples. Every append must give the same channels (fixed at construction)."""

    def __init__(self, keys: Sequence[str], meta: Mapping[str, Any] | None = None) -> None:
        if "t" not in keys:
            raise ValueError("trace needs a 't' channel (seconds from the start)")
        for key in keys:
            _scale_for(key)  # an unknown quantity fails here, not mid-run
        self.keys = tuple(keys)
        self.count = 0
        self._meta = dict(meta or {})
        self._zlib = zlib.compressobj(9)
        self._stream = bytearray()
        # The header is json.dumps({"v", "n", "keys", "meta"}) with only "n" changing:
        # its two fixed parts are dumped once, not at every call.
        self._head_start = f'{{"v":{json.dumps(LIVE_VERSION)},"n":'.encode()
        keys_json = json.dumps(self.keys, separators=(",", ":"))
        meta_json = json.dumps(self._meta, separators=(",", ":"))
        self._head_end = f',"keys":{keys_json},"meta":{meta_json}}}'.encode()

    def append(self, channels: Mapping[str, Sequence[float | None]]) -> bytes:
        """Add the samples taken since the last call; the whole trace so far."""
        if tuple(channels) != self.keys:
            raise ValueError(f"live trace channels {tuple(channels)} != {self.keys}")
        n, entries, body = _encode_body(channels)
        if n:
            head = json.dumps({"n": n, "channels": entries}, separators=(",", ":")).encode()
            chunk = struct.pack("<II", len(head), len(body)) + head + bytes(body)
            # A sync flush ends every chunk on a byte boundary, so the bytes sent so far
            # always decode, while zlib keeps its window across chunks.
            self._stream += self._zlib.compress(chunk) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            self.count += n
        return self.data()

    def data(self) -> bytes:
        head = b"%b%d%b" % (self._head_start, self.count, self._head_end)
        return b"".join((LIVE_MAGIC, struct.pack(">I", len(head)), head, self._stream))


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    if len(data) < 8 or data[:4] not in (MAGIC, LIVE_MAGIC):
        raise TraceFormatError("not a Wattlab trace (bad magic)")
    live = data[:4] == LIVE_MAGIC
    (length,) = struct.unpack(">I", data[4:8])
    try:
        header = json.loads(data[8 : 8 + length])
        if live:
            # A live trace's stream is never finished: take what it holds so far.
            body = zlib.decompressobj().decompress(data[8 + length :])
        else:
            body = zlib.decompress(data[8 + length :])
    except (ValueError, zlib.error) as exc:
        raise TraceFormatError(f"damaged trace: {exc}") from exc
    if not isinstance(header, dict) or header.get("v") != (LIVE_VERSION if live else VERSION):
        version = header.get("v") if isinstance(header, dict) else None
        raise TraceFormatError(f"unknown trace version {version!r}")
    return header, body


def trace_meta(data: bytes) -> dict[str, Any]:
    """The metadata stored with the trace (devices, rate, start time)."""
    meta = _split(data)[0]["meta"]
    return dict(meta)


def decode_channels(data: bytes) -> dict[str, list[float | None]]:
    """The stored channels under their stored names (``t``, ``gpu0.power_w``, ...)."""
    header, body = _split(data)
    if header["v"] == VERSION:
        return _decode_body(header, body, 0)[0]
    pos = 0
    try:
        out: dict[str, list[float | None]] = {key: [] for key in header["keys"]}
        while pos < len(body):
            head_len, body_len = struct.unpack_from("<II", body, pos)
            chunk = json.loads(body[pos + 8 : pos + 8 + head_len])
            start = pos + 8 + head_len
            part, _ = _decode_body(chunk, body[start : start + body_len], 0)
            for key, values in part.items():
                out[key].extend(values)
            pos = start + body_len
    except (struct.error, ValueError, KeyError) as exc:
        raise TraceFormatError(f"damaged trace: {exc}") from exc
    if any(len(values) != header["n"] for values in out.values()):
        raise TraceFormatError("damaged trace: fewer samples than its header says")
    return out


def _decode_body(
    header: Mapping[str, Any], body: bytes, pos: int
) -> tuple[dict[str, list[float | None]], int]:
    n = int(header["n"])
    out: dict[str, list[float | None]] = {}
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
    return out, pos


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
