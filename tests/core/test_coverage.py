"""Coverage maths against a brute-force reference (hypothesis) and worked examples."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.coverage import (
    VERDICTS,
    compute_coverage,
    verdict_for,
    verdict_rank,
    verdict_rule,
    worst_verdict,
)

# Integer instants make a brute-force reference exact: a unit cell [k, k + 1] is
# covered when some run contains it, and every union / gap is a whole number of cells.
instant = st.integers(min_value=0, max_value=60)
run = st.tuples(instant, st.one_of(st.none(), instant)).map(
    lambda r: (r[0], r[1]) if r[1] is None else (min(r), max(r))
)


def brute_force(lo: int, hi: int, runs: list[tuple[int, int | None]], now: int):
    ends = [(start, now if end is None else end) for start, end in runs]
    covered_cells = [any(s <= k and k + 1 <= e for s, e in ends) for k in range(lo, hi)]
    longest = current = 0
    for covered in covered_cells:
        current = 0 if covered else current + 1
        longest = max(longest, current)
    overlapping = sum(1 for s, e in ends if any(s <= k and k + 1 <= e for k in range(lo, hi)))
    return sum(covered_cells), longest, overlapping


# No per-example deadline: the suite runs on a loaded, shared machine.
@settings(deadline=None)
@given(
    window=st.tuples(instant, instant).map(sorted).filter(lambda w: w[0] < w[1]),
    runs=st.lists(run, max_size=8),
    now=instant,
)
def test_it_matches_a_brute_force_count_of_covered_seconds(window, runs, now):
    lo, hi = window
    report = compute_coverage(float(lo), float(hi), runs, now=float(now))
    covered, longest, overlapping = brute_force(lo, hi, runs, now)
    assert report.covered_s == covered
    assert report.window_s == hi - lo
    assert report.percent == pytest.approx(100.0 * covered / (hi - lo))
    assert report.longest_gap_s == longest
    assert report.background_runs == overlapping
    assert sum(e - s for s, e in report.gaps) + report.covered_s == pytest.approx(hi - lo)


@settings(deadline=None)
@given(
    window=st.tuples(st.floats(0, 1e4), st.floats(0, 1e4)).map(sorted),
    runs=st.lists(st.tuples(st.floats(0, 1e4), st.floats(0, 1e4)).map(sorted), max_size=10),
)
def test_it_never_exceeds_the_window_nor_the_sum_of_runs_and_ignores_order(window, runs):
    lo, hi = window
    report = compute_coverage(lo, hi, runs)
    clipped_sum = sum(max(0.0, min(e, hi) - max(s, lo)) for s, e in runs)
    assert report.covered_s <= hi - lo + 1e-9
    assert report.covered_s <= clipped_sum + 1e-9
    assert 0.0 <= report.percent <= 100.0
    assert compute_coverage(lo, hi, list(reversed(runs))).covered_s == pytest.approx(
        report.covered_s
    )
    assert all(lo <= s < e <= hi for s, e in report.gaps)


def test_overlapping_runs_are_counted_once_not_summed():
    report = compute_coverage(0, 10, [(0, 8), (2, 10)])
    assert report.covered_s == 10
    assert report.percent == 100.0
    assert report.background_runs == 2
    assert report.verdict == "good"
    assert report.advice == ""


def test_a_run_still_going_counts_up_to_now():
    assert compute_coverage(0, 10, [(2, None)], now=7).covered_s == 5
    assert compute_coverage(0, 10, [(2, None)]).covered_s == 8  # default: window end


def test_restart_gaps_give_partial_verdict_and_restart_advice():
    # 8 s runs with a 1 s restart delay: 18 of 20 s covered.
    report = compute_coverage(0, 20, [(-3, 5), (6, 14), (15, 23)])
    assert report.percent == pytest.approx(90.0)
    assert report.verdict == "partial"
    assert report.gaps == [(5, 6), (14, 15)]
    assert report.longest_gap_s == 1
    assert "restart delay" in report.advice


def test_a_long_hole_is_insufficient_with_advice_about_the_stretch():
    report = compute_coverage(0, 100, [(0, 30)])
    assert report.verdict == "insufficient"
    assert report.longest_gap_s == 70
    assert "one stretch" in report.advice


def test_no_background_at_all_says_so():
    report = compute_coverage(0, 10, [(20, 30)])
    assert (report.percent, report.background_runs, report.verdict) == (0.0, 0, "insufficient")
    assert "No background run" in report.advice


def test_zero_length_window_is_covered_only_when_a_run_spans_it():
    assert compute_coverage(5, 5, [(0, 10)]).percent == 100.0
    empty = compute_coverage(5, 5, [(6, 10)])
    assert (empty.percent, empty.window_s, empty.gaps) == (0.0, 0.0, [])
    assert not math.isnan(empty.percent)


def test_a_window_ending_before_it_starts_is_an_error():
    with pytest.raises(ValueError, match="before it starts"):
        compute_coverage(10, 5, [])


def test_each_verdict_starts_at_its_threshold_in_the_list():
    for verdict in VERDICTS:
        assert verdict_for(verdict.min_percent) == verdict.value
    assert verdict_for(100.0) == VERDICTS[0].value
    assert verdict_for(VERDICTS[0].min_percent - 0.01) == VERDICTS[1].value
    assert verdict_for(0.0) == VERDICTS[-1].value


def test_the_list_is_ordered_best_first_and_the_worst_verdict_is_its_last():
    thresholds = [v.min_percent for v in VERDICTS]
    assert thresholds == sorted(thresholds, reverse=True)
    assert [verdict_rank(v.value) for v in VERDICTS] == list(range(len(VERDICTS)))
    assert worst_verdict({"good", "insufficient", "partial", ""}) == "insufficient"
    assert worst_verdict({"good", ""}) == "good"
    assert worst_verdict(set()) == ""


def test_the_rule_in_words_reads_the_thresholds():
    assert verdict_rule() == "≥ 95 % good, ≥ 80 % partial, else insufficient"
