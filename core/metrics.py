"""Metrics out of a training log: each pattern's last match, first group as a number.

Every metric a pattern finds is kept under its own name (the earlier profiler wrote
only the metrics its CSV had columns for, so ``f1`` and others vanished). What a
pattern matched but could not read as a number, and patterns that do not compile, are
reported by ``extract_metrics_report`` instead of disappearing without a word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Training logs are full of colour codes; strip them so patterns see plain text.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_FLAGS = re.IGNORECASE | re.MULTILINE


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass
class MetricsReport:
    values: dict[str, float] = field(default_factory=dict)
    #: name -> why a pattern that exists gave no value although it matched or is broken.
    problems: dict[str, str] = field(default_factory=dict)


def check_patterns(patterns: dict[str, str]) -> dict[str, str]:
    """name -> error for each pattern that is not a compilable regex (for forms/imports)."""
    errors: dict[str, str] = {}
    for name, pattern in patterns.items():
        if not isinstance(pattern, str) or not pattern:
            errors[name] = "must be a non-empty regular expression"
            continue
        try:
            re.compile(pattern, _FLAGS)
        except re.error as exc:
            errors[name] = f"not a valid regular expression: {exc}"
    return errors


def extract_metrics_report(log: str, patterns: dict[str, str]) -> MetricsReport:
    """Last numeric match wins, case-insensitive; the first group (else the whole match)
    is read as a number. A pattern that never matches is simply absent."""
    text = strip_ansi(log)
    report = MetricsReport()
    for name, pattern in patterns.items():
        try:
            compiled = re.compile(pattern, _FLAGS)
        except (re.error, TypeError) as exc:
            # One broken pattern must not cost the others their values.
            report.problems[name] = f"pattern does not compile: {exc}"
            continue
        value: float | None = None
        unreadable: str | None = None
        for match in compiled.finditer(text):
            raw = match.group(1) if compiled.groups else match.group(0)
            number = _NUMBER.search(raw or "")
            if number:
                value = float(number.group(0))
            else:
                unreadable = raw or ""
        if value is not None:
            report.values[name] = value
        elif unreadable is not None:
            report.problems[name] = f"matched {unreadable!r}, which is not a number"
    return report


def extract_metrics(log: str, patterns: dict[str, str]) -> dict[str, float]:
    """Last match wins, case-insensitive; a pattern that never matches is absent."""
    return extract_metrics_report(log, patterns).values


def succeeded(log: str, exit_code: int | None, success_pattern: str | None) -> bool:
    """Exit code 0, plus the success pattern somewhere in the log when there is one."""
    if exit_code != 0:
        return False
    if not success_pattern:
        return True
    try:
        compiled = re.compile(success_pattern, _FLAGS)
    except re.error:
        # A success pattern that cannot be checked cannot confirm success.
        return False
    return compiled.search(strip_ansi(log)) is not None
