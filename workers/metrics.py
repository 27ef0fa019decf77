"""Metrics out of a training log: each pattern's last match, first group as a number."""

from __future__ import annotations

import re

# Training logs are full of colour codes; strip them so patterns see plain text.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def extract_metrics(log: str, patterns: dict[str, str]) -> dict[str, float]:
    """Last match wins, case-insensitive; a pattern that never matches is absent."""
    text = strip_ansi(log)
    found: dict[str, float] = {}
    for name, pattern in patterns.items():
        value: float | None = None
        for match in re.finditer(pattern, text, flags=re.IGNORECASE | re.MULTILINE):
            raw = match.group(1) if match.groups() else match.group(0)
            number = _NUMBER.search(raw or "")
            if number:
                value = float(number.group(0))
        if value is not None:
            found[name] = value
    return found


def succeeded(log: str, exit_code: int | None, success_pattern: str | None) -> bool:
    """Exit code 0, plus the success pattern somewhere in the log when there is one."""
    if exit_code != 0:
        return False
    if not success_pattern:
        return True
    return re.search(success_pattern, strip_ansi(log), flags=re.IGNORECASE | re.MULTILINE) is not None
