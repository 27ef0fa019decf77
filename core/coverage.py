"""How much of a foreground window the background load covered (pure interval maths).

Covered time is the length of the *union* of the background runs clipped to the
window, never a sum of their durations: two overlapping background runs (a restart
racing the previous run's teardown) must not count the same second twice.
All instants are epoch seconds from one host's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from core.contract import CoverageReport


@dataclass(frozen=True)
class Verdict:
    value: str
    label: str
    #: the least covered percentage that earns this verdict
    min_percent: float
    #: for the verdict's text on pages and charts (a hex colour)
    colour: str


#: Every coverage verdict, best first: a run gets the first one whose threshold its
#: coverage reaches, and a verdict's rank is its place here (an experiment shows its
#: runs' worst). Thresholds, labels and colours are read from here and nowhere else:
#: the model fields' choices, pages, charts and the help text. The colours are also
#: text colours: each keeps 4.5:1 on white and on the page background (WCAG 2.1 AA).
VERDICTS: Final = (
    Verdict("good", "good", 95.0, "#047857"),
    Verdict("partial", "partial", 80.0, "#b45309"),
    Verdict("insufficient", "insufficient", 0.0, "#b91c1c"),
)
GOOD: Final = VERDICTS[0].value
_BY_VALUE: Final = {v.value: v for v in VERDICTS}
#: The colour of a window with no verdict yet (a run still going).
NO_VERDICT_COLOUR: Final = "#475569"


def verdict_choices() -> list[tuple[str, str]]:
    """(value, label) pairs for a Django field's ``choices``."""
    return [(v.value, v.label) for v in VERDICTS]


def verdict_for(percent: float) -> str:
    for verdict in VERDICTS:
        if percent >= verdict.min_percent:
            return verdict.value
    return VERDICTS[-1].value


def verdict_rank(value: str) -> int:
    """0 for the best verdict, higher is worse; -1 for none (not computed)."""
    verdict = _BY_VALUE.get(value)
    return -1 if verdict is None else VERDICTS.index(verdict)


def worst_verdict(values: Sequence[str] | set[str]) -> str:
    """The worst of the given verdicts; "" when none of them is one."""
    return max(values, key=verdict_rank, default="")


def verdict_colour(value: str) -> str:
    verdict = _BY_VALUE.get(value)
    return NO_VERDICT_COLOUR if verdict is None else verdict.colour


def verdict_rule() -> str:
    """The thresholds in words, e.g. "≥ 95 % good, ≥ 80 % partial, else insufficient"."""
    *ranked, last = VERDICTS
    parts = [f"≥ {v.min_percent:g} % {v.label}" for v in ranked]
    return ", ".join([*parts, f"else {last.label}"])


def _merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, non-overlapping union of closed intervals (touching ones are merged)."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _advice(gaps: list[tuple[float, float]], window_s: float, runs: int) -> str:
    if runs == 0:
        return (
            "No background run overlapped this window: check the background training's logs "
            "(does it start at all?) and lengthen the startup wait."
        )
    length = max((end - start for start, end in gaps), default=0.0)
    if length >= window_s / 4:
        return (
            f"The background load was missing for {length:.1f} s in one stretch: make each "
            "background training last longer than a foreground run, or check its logs for "
            "failures; if the gap is at the start, lengthen the startup wait."
        )
    return (
        f"{len(gaps)} gaps, the longest {length:.1f} s: these are restarts between background "
        "runs. Reduce the restart delay, or run longer background trainings so they "
        "restart less often."
    )


def compute_coverage(
    window_start: float,
    window_end: float,
    runs: Sequence[tuple[float, float | None]],
    *,
    now: float | None = None,
) -> CoverageReport:
    """Coverage of ``[window_start, window_end]`` by the background ``runs``.

    A run whose end is ``None`` is still going and counts up to ``now`` (default: the
    window's end). A zero-length window is covered (100 %) exactly when some run spans
    its instant; a window that ends before it starts is an error.
    """
    if window_end < window_start:
        raise ValueError(f"window ends ({window_end}) before it starts ({window_start})")
    open_end = window_end if now is None else now
    clipped: list[tuple[float, float]] = []
    overlapping = 0
    window_s = window_end - window_start
    for start, end in runs:
        stop = open_end if end is None else end
        lo, hi = max(start, window_start), min(stop, window_end)
        # A run overlaps when it shares a positive length with the window (or, for an
        # instant window, contains the instant); touching at an edge covers nothing.
        if hi > lo or (window_s == 0 and start <= window_start <= stop):
            overlapping += 1
            clipped.append((lo, hi))
    merged = _merged(clipped)
    covered = sum(end - start for start, end in merged)
    gaps: list[tuple[float, float]] = []
    cursor = window_start
    for start, end in merged:
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < window_end:
        gaps.append((cursor, window_end))
    if window_s > 0:
        percent = 100.0 * covered / window_s
    else:
        percent = 100.0 if merged else 0.0
    percent = min(100.0, percent)
    longest = max((end - start for start, end in gaps), default=0.0)
    verdict = verdict_for(percent)
    advice = "" if verdict == GOOD else _advice(gaps, window_s, overlapping)
    return CoverageReport(
        percent=percent,
        covered_s=covered,
        window_s=window_s,
        longest_gap_s=longest,
        background_runs=overlapping,
        verdict=verdict,
        advice=advice,
        gaps=gaps,
    )
