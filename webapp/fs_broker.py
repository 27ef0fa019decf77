"""kombu's filesystem transport with messages that appear whole (the single-machine broker).

kombu's own ``_put`` opens the message file under its final name, then locks it and
writes; its ``_get`` lists the folder and moves any ``*.{queue}.msg`` file away without
taking the lock. A reader that lists the folder between the writer's ``open`` and its
``write`` takes an empty file: ``loads("")`` fails, and the message, already moved
out of the queue, is lost (kombu issue #1551). On a loaded machine that left a
submitted experiment queued for ever. Here the message is written under a name the
reader skips (it does not end in ``.{queue}.msg``) and renamed into place: a rename
within one folder is atomic, so a reader sees no file or the whole one.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

#: What an unfinished message's name ends with; the reader takes only ``.msg`` files.
PARTIAL_SUFFIX = ".partial"


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Put ``payload`` onto ``queue``: written aside, then renamed into the queue.

        (kombu names the argument ``payload`` here, ``message`` in its base class: mypy
        sees two signatures, and this one is kombu.transport.filesystem's.)
        """
        # The name kombu gives it (milliseconds first: the reader takes them in order).
        name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + PARTIAL_SUFFIX
        try:
            with open(partial, "wb") as out:
                out.write(str_to_bytes(dumps(payload)))  # type: ignore[no-untyped-call]
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
