"""The single-machine broker never hands a reader a half-written message (webapp.fs_broker).

A writer process puts messages as fast as it can while this process takes them, as a
worker polling its queue does. kombu's own transport, under the same load, hands the
reader empty or partial files, whose messages are then lost (kombu issue #1551): the
second test shows the race is real here, so the first can fail."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection
from kombu.utils.imports import symbol_by_name

from webapp.fs_broker import PARTIAL_SUFFIX

MESSAGES = 400
#: Large enough that a write spans several scheduler slices on these machines.
PAD = "x" * 300_000

WRITER = """
import sys
from kombu import Connection
from kombu.utils.imports import symbol_by_name
transport, folder, count, pad = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
opts = {"data_folder_in": folder, "data_folder_out": folder}
with Connection(transport=symbol_by_name(transport), transport_options=opts) as conn:
    channel = conn.default_channel
    for i in range(count):
        channel._put("q", {"i": i, "pad": "x" * pad})
"""


def _race(transport_path: str, folder: Path) -> tuple[list[int], list[str]]:
    """(message numbers taken whole, errors) while a writer process puts MESSAGES."""
    folder.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, transport_path, str(folder), str(MESSAGES), str(len(PAD))]
    )
    opts = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    taken: list[int] = []
    errors: list[str] = []
    with Connection(transport=symbol_by_name(transport_path), transport_options=opts) as conn:
        channel = conn.default_channel
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                message = channel._get("q")
            except Empty:
                if writer.poll() is not None and not any(folder.glob("*.msg")):
                    break
                continue
            except Exception as exc:  # an empty or partial file: not JSON
                errors.append(f"{type(exc).__name__}: {exc}"[:120])
                continue
            taken.append(message["i"])
            assert message["pad"] == PAD
    writer.wait(timeout=30)
    assert writer.returncode == 0
    return taken, errors


def test_every_message_is_taken_whole_and_none_is_lost(tmp_path: Path) -> None:
    taken, errors = _race("webapp.fs_broker:Transport", tmp_path / "queue")
    assert errors == []
    assert sorted(taken) == list(range(MESSAGES))
    assert not list((tmp_path / "queue").glob(f"*{PARTIAL_SUFFIX}"))


@pytest.mark.slow
def test_kombus_own_transport_loses_messages_under_the_same_load(tmp_path: Path) -> None:
    # What the fix is for: if this ever stops failing, kombu has fixed its writer.
    taken, errors = _race("kombu.transport.filesystem:Transport", tmp_path / "queue")
    assert errors and len(set(taken)) < MESSAGES, (len(errors), len(set(taken)))
