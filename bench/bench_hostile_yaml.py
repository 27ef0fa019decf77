"""Parsing a hostile experiment file: 256 KiB whose hyperparameter is a YAML 1.1
sexagesimal integer (``1:1:...:1``), through Wattlab's parser (YAML 1.2's core schema:
the value is text, refused with a clear error) and through PyYAML's safe loader, the
parser before issue 18 (YAML 1.1: it builds a number of about 230,000 digits).

    .venv/bin/python bench/bench_hostile_yaml.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")


def main() -> int:
    import yaml

    from experiments.expfile import MAX_TEXT_BYTES, ExperimentFileError, parse_experiment_text

    head = "name: x\nforeground: {workload: w, hyperparameters: {epochs: "
    value = ":".join(["1"] * ((MAX_TEXT_BYTES - len(head) - 10) // 2))
    text = head + value + "}}\n"
    began = time.perf_counter()
    try:
        parse_experiment_text(text)
    except ExperimentFileError as exc:
        answer = exc.errors[0][:70]
    else:  # pragma: no cover - the value is refused
        answer = "accepted"
    wattlab_s = time.perf_counter() - began
    began = time.perf_counter()
    yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    pyyaml_s = time.perf_counter() - began
    print(f"{len(text)} bytes; load average {os.getloadavg()[0]:.1f}")
    print(f"Wattlab's parser (core schema): {wattlab_s:.3f} s -> {answer}...")
    print(f"PyYAML's safe loader (YAML 1.1, before issue 18): {pyyaml_s:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
