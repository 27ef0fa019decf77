"""Test program: a training that writes its environment, user and group ids to
``OUT_DIR/<role>-<pid>.json`` (the role from the engine's marker), then exits 0."""

import json
import os
import sys
from pathlib import Path

out = Path(sys.argv[1])
role = os.environ.get("WATTLAB_ROLE", "none")
record = {"env": dict(os.environ), "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
target = out / f"{role}-{os.getpid()}.json"
partial = target.with_suffix(".part")
partial.write_text(json.dumps(record))
partial.rename(target)  # whole or not at all for a reader polling the folder
print("Test Accuracy: 50.00%", flush=True)
