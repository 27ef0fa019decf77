import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.trace import (
    SCALES,
    SMALL_CHANNEL,
    LiveTrace,
    TraceFormatError,
    _encode_channel_numpy,
    _encode_channel_small,
    decode_channels,
    decode_trace,
    encode_trace,
    gpu_key,
    trace_meta,
)

reading = st.one_of(st.none(), st.floats(min_value=0, max_value=1000, allow_nan=False))


@st.composite
def traces(draw: st.DrawFn) -> dict[str, list[float | None]]:
    n = draw(st.integers(min_value=0, max_value=200))
    steps = draw(st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=n, max_size=n))
    t: list[float | None] = []
    now = 0.0
    for step in steps:
        t.append(now)
        now += step
    channels: dict[str, list[float | None]] = {"t": t}
    for field in ("power_w", "util_pct", "mem_mib", "temp_c"):
        channels[gpu_key(0, field)] = draw(st.lists(reading, min_size=n, max_size=n))
    return channels


@settings(max_examples=60, deadline=None)
@given(traces())
def test_round_trip_is_within_half_a_quantisation_step_and_keeps_gaps(
    channels: dict[str, list[float | None]],
) -> None:
    decoded = decode_channels(encode_trace(channels))
    assert set(decoded) == set(channels)
    for key, values in channels.items():
        half_step = SCALES[key.rsplit(".", 1)[-1]] / 2 + 1e-9
        assert len(decoded[key]) == len(values)
        for original, back in zip(values, decoded[key], strict=True):
            if original is None:
                assert back is None
            else:
                assert back is not None and abs(back - original) <= half_step


def test_decode_trace_names_the_single_gpu_fields_plainly() -> None:
    data = encode_trace(
        {"t": [0.0, 0.1], gpu_key(0, "power_w"): [100.0, 101.5], gpu_key(0, "temp_c"): [60, 61]},
        {"hz": 10.0},
    )
    assert decode_trace(data) == {
        "t": [0.0, 0.1],
        "power_w": [100.0, 101.5],
        "temp_c": [60.0, 61.0],
    }
    assert trace_meta(data) == {"hz": 10.0}


def test_several_gpus_are_kept_apart_and_combined() -> None:
    data = encode_trace(
        {
            "t": [0.0, 0.1, 0.2],
            gpu_key(0, "power_w"): [100.0, 110.0, 120.0],
            gpu_key(1, "power_w"): [50.0, None, 70.0],
            gpu_key(0, "temp_c"): [60.0, 61.0, 62.0],
            gpu_key(1, "temp_c"): [70.0, 50.0, 50.0],
        }
    )
    out = decode_trace(data)
    assert out["gpu0_power_w"] == [100.0, 110.0, 120.0]
    assert out["gpu1_power_w"] == [50.0, None, 70.0]
    assert out["power_w"] == [150.0, None, 190.0]  # a missing GPU is a gap, not a dip
    assert out["temp_c"] == [70.0, 61.0, 62.0]  # the hottest GPU


def test_an_hour_at_10_hz_fits_in_500_kb() -> None:
    # Deterministic pseudo-random walk so the test is reproducible.
    n, seed = 36_000, 12345
    power, util, p = [], [], 200.0
    for _ in range(n):
        seed = (seed * 1103515245 + 12345) % 2**31
        p = min(max(p + (seed % 2001 - 1000) / 100.0, 50.0), 350.0)
        power.append(p)
        util.append(float(seed % 101))
    channels = {
        "t": [i * 0.1 + (i % 7) * 1e-4 for i in range(n)],
        gpu_key(0, "power_w"): power,
        gpu_key(0, "util_pct"): util,
        gpu_key(0, "mem_mib"): [8000.0 + (i // 600) for i in range(n)],
        gpu_key(0, "temp_c"): [70.0 + (i // 3000) for i in range(n)],
    }
    assert len(encode_trace(channels)) < 500_000


@pytest.mark.parametrize(
    "data", [b"", b"nope", b"WLT1\x00\x00\x00\x02{}", b"WLT1\x00\x00\x00\x02{}xx"]
)
def test_damaged_bytes_raise_a_clear_error(data: bytes) -> None:
    with pytest.raises(TraceFormatError):
        decode_trace(data)


def test_channels_of_unequal_length_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="gpu0.power_w"):
        encode_trace({"t": [0.0, 0.1], gpu_key(0, "power_w"): [1.0]})


def _stream(data: bytes) -> bytes:
    """A trace's bytes after its (rewritten) header."""
    length = int.from_bytes(data[4:8], "big")
    return data[8 + length :]


@settings(max_examples=40, deadline=None)
@given(traces(), st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_a_live_trace_fed_in_chunks_decodes_like_the_whole_trace(
    channels: dict[str, list[float | None]], cuts: list[int]
) -> None:
    n = len(channels["t"])
    bounds = sorted({0, n, *(min(c, n) for c in cuts)})
    live = LiveTrace(list(channels), {"hz": 10.0})
    data = live.append({k: [] for k in channels})  # before the first sample
    assert decode_channels(data) == {k: [] for k in channels}
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        data = live.append({k: v[lo:hi] for k, v in channels.items()})
        assert len(decode_channels(data)["t"]) == hi
    assert decode_channels(data) == decode_channels(encode_trace(channels))
    assert trace_meta(data) == {"hz": 10.0}


def test_a_live_trace_never_re_encodes_what_it_already_sent() -> None:
    # What was sent stays, byte for byte, at the start of every later trace: each
    # append encodes only its new samples (re-encoding the whole would change them).
    live = LiveTrace(["t", gpu_key(0, "power_w")])
    sent = [
        _stream(
            live.append({"t": [i / 10 for i in range(k, k + 20)], "gpu0.power_w": [250.0] * 20})
        )
        for k in range(0, 100, 20)
    ]
    for earlier, later in zip(sent, sent[1:], strict=False):
        assert len(later) > len(earlier)
        assert later.startswith(earlier)


def test_a_live_trace_refuses_a_change_of_channels() -> None:
    live = LiveTrace(["t", gpu_key(0, "power_w")])
    with pytest.raises(ValueError, match="channels"):
        live.append({"t": [0.0]})


def test_a_damaged_live_trace_is_a_format_error() -> None:
    data = LiveTrace(["t"]).append({"t": [0.0, 0.1, 0.2]})
    head = 8 + int.from_bytes(data[4:8], "big")
    with pytest.raises(TraceFormatError):
        decode_trace(data[:head] + b"\x00garbage")


wide_reading = st.one_of(
    st.none(),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    st.integers(min_value=-(10**6), max_value=10**6),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(wide_reading, max_size=SMALL_CHANNEL),
    st.sampled_from(sorted(set(SCALES.values()))),
)
def test_a_short_channel_is_encoded_to_the_same_bytes_without_numpy(
    values: list[float | None], scale: float
) -> None:
    # Live chunks (~20 samples) are encoded in plain Python, the stored trace with
    # numpy: both must give the same bytes, gaps, every delta width and sign included.
    small = _encode_channel_small(values, scale, len(values))
    assert small == _encode_channel_numpy(values, scale, len(values))


@pytest.mark.parametrize(
    "values",
    [[], [None], [None] * 9, [1.0], [0.0, 1.27, -1.28, None, 300.0, -70000.0, 3e7, None, 0.0]],
)
def test_the_edges_of_the_short_encoder_match_numpy(values: list[float | None]) -> None:
    small = _encode_channel_small(values, 0.01, len(values))
    assert small == _encode_channel_numpy(values, 0.01, len(values))


def test_values_beyond_int64_are_left_to_numpy() -> None:
    assert _encode_channel_small([0.0, 1e20], 0.01, 2) is None


def test_the_live_header_is_the_json_of_its_fields() -> None:
    meta = {"hz": 10.0, "gpus": [{"index": 0, "device": "GPU 0: é"}], "started_at": None}
    live = LiveTrace(["t", gpu_key(0, "power_w")], meta)
    for count in (0, 3):
        data = live.append({"t": [0.1 * i for i in range(count)], "gpu0.power_w": [1.0] * count})
        header = {"v": 2, "n": live.count, "keys": live.keys, "meta": meta}
        head = json.dumps(header, separators=(",", ":")).encode()
        assert data[8 : 8 + len(head)] == head
        assert int.from_bytes(data[4:8], "big") == len(head)
