"""experiments.stats against SciPy called directly and brute-force references, on fixed
data (energies in joules of two groups of repeated runs)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from experiments import stats

SOLO = [1010.0, 985.0, 1003.0, 1021.0, 995.0, 1008.0, 990.0]
PARALLEL = [1302.0, 1275.0, 1330.0, 1290.0, 1311.0, 1288.0]


def _scipy_interval(data, statistic):
    res = sps.bootstrap(
        data,
        statistic,
        n_resamples=stats.N_RESAMPLES,
        vectorized=True,
        method="percentile",
        rng=np.random.default_rng(stats.SEED),
    )
    return res.confidence_interval.low, res.confidence_interval.high


def test_group_median_and_interval_match_scipy_bootstrap():
    s = stats.summarise(SOLO)
    assert s.n == 7
    assert s.median == 1003.0
    low, high = _scipy_interval((np.array(SOLO),), lambda x, axis: np.median(x, axis=axis))
    assert (s.low, s.high) == pytest.approx((low, high))
    assert s.low <= s.median <= s.high
    assert min(SOLO) <= s.low and s.high <= max(SOLO)


def test_ratio_interval_matches_scipy_two_sample_bootstrap():
    c = stats.compare(PARALLEL, SOLO)
    assert c.ratio == pytest.approx(float(np.median(PARALLEL)) / 1003.0)
    low, high = _scipy_interval(
        (np.array(PARALLEL), np.array(SOLO)),
        lambda x, y, axis: np.median(x, axis=axis) / np.median(y, axis=axis),
    )
    assert (c.ratio_low, c.ratio_high) == pytest.approx((low, high))
    assert c.ratio_low < c.ratio < c.ratio_high


def test_compare_takes_all_three_intervals_from_one_bootstrap_with_the_separate_results(
    monkeypatch,
):
    """compare() resamples both groups once for the two medians and the ratio (the
    page's costliest step, halved); the intervals are those of summarise() and
    ratio_interval(), each its own bootstrap with the same seed."""
    rng = np.random.default_rng(5)
    a = rng.uniform(2e4, 9e4, 60).tolist()
    b = rng.uniform(2e4, 9e4, 45).tolist()
    alone = (stats.summarise(a), stats.summarise(b), stats.ratio_interval(a, b))
    calls = []
    real = sps.bootstrap
    monkeypatch.setattr(
        stats.sps, "bootstrap", lambda *args, **kw: calls.append(1) or real(*args, **kw)
    )
    c = stats.compare(a, b)
    assert len(calls) == 1
    assert (c.a.low, c.a.high) == pytest.approx((alone[0].low, alone[0].high), rel=1e-12)
    assert (c.b.low, c.b.high) == pytest.approx((alone[1].low, alone[1].high), rel=1e-12)
    assert (c.ratio_low, c.ratio_high) == pytest.approx(alone[2], rel=1e-12)
    assert (c.a.median, c.b.median) == (float(np.median(a)), float(np.median(b)))


def _exact_two_sided_p(a, b):
    """Mann-Whitney's exact p by enumerating every split of the pooled values."""
    pooled = a + b
    n = len(a)
    ranks = sps.rankdata(pooled)

    def u_of(idx):
        return sum(ranks[i] for i in idx) - n * (n + 1) / 2

    observed = u_of(range(n))
    mean = n * len(b) / 2
    splits = list(itertools.combinations(range(len(pooled)), n))
    extreme = sum(1 for idx in splits if abs(u_of(idx) - mean) >= abs(observed - mean) - 1e-9)
    return extreme / len(splits)


def test_mann_whitney_p_value_is_the_exact_permutation_p():
    a = [12.0, 15.0, 11.0, 19.0, 14.0]
    b = [10.0, 9.5, 13.0, 8.0, 10.5]
    c = stats.compare(a, b)
    assert c.p_value == pytest.approx(_exact_two_sided_p(a, b))
    assert c.p_value == pytest.approx(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def test_effect_size_is_the_rank_biserial_correlation_counted_pair_by_pair():
    a = [12.0, 15.0, 11.0, 19.0, 14.0, 10.0]
    b = [10.0, 9.5, 13.0, 8.0, 10.5]
    pairs = [(x, y) for x in a for y in b]
    greater = sum(1 for x, y in pairs if x > y)
    less = sum(1 for x, y in pairs if x < y)
    c = stats.compare(a, b)
    assert c.effect_size == pytest.approx((greater - less) / len(pairs))


def test_clear_difference_gives_a_verdict_with_direction():
    c = stats.compare(PARALLEL, SOLO)
    assert c.enough and c.significant
    assert c.effect_size == 1.0  # every parallel run used more than every solo run
    line = c.verdict("parallel", "solo")
    assert line.startswith("parallel uses more energy than solo")
    assert "too few" not in line


def test_identical_groups_are_not_significant():
    c = stats.compare(SOLO, list(reversed(SOLO)))
    assert c.enough and not c.significant
    assert c.ratio == 1.0
    assert "no significant difference" in c.verdict("a", "b")


def test_too_few_runs_gives_no_verdict_and_how_many_more():
    c = stats.compare([1300.0, 1250.0], [1000.0, 1100.0, 1010.0])
    assert not c.enough and not c.significant
    assert c.more_needed >= stats.MIN_RUNS - 2
    line = c.verdict("parallel", "solo")
    assert line.startswith("too few runs (2 parallel, 3 solo")
    assert f"{c.more_needed} more per group" in line
    assert "±5%" in line


def test_more_runs_needed_scales_with_the_square_of_the_width():
    # A ±10 % interval from 8 runs needs 4x the runs for ±5 %: 32, so 24 more.
    assert stats.more_runs_needed(8, 9, 0.10, precision=0.05) == 24
    # Already precise: only the minimum counts.
    assert stats.more_runs_needed(8, 9, 0.01) == 0
    assert stats.more_runs_needed(3, 9, 0.01) == stats.MIN_RUNS - 3
    # One run: no spread to extrapolate from, only the minimum.
    assert stats.more_runs_needed(1, 9, None) == stats.MIN_RUNS - 1


def test_wide_interval_with_enough_runs_still_asks_for_more():
    rng = np.random.default_rng(5)
    a = list(rng.normal(1000, 200, 6))
    b = list(rng.normal(1000, 200, 6))
    c = stats.compare(a, b)
    assert c.enough
    assert c.ratio_precision > stats.PRECISION
    assert c.more_needed > 0
    assert f"about {c.more_needed} more runs per group" in c.verdict()


def test_small_and_degenerate_groups():
    assert stats.summarise([]) == stats.GroupSummary(0, None, None, None)
    assert stats.summarise([5.0]) == stats.GroupSummary(1, 5.0, None, None)
    assert stats.summarise([5.0, 5.0, 5.0]) == stats.GroupSummary(3, 5.0, 5.0, 5.0)
    assert stats.ratio_interval([2.0, 2.0], [1.0, 1.0]) == (2.0, 2.0)
    c = stats.compare([], [1.0, 2.0])
    assert c.ratio is None and c.p_value is None and not c.enough


def test_trend_matches_linregress_and_the_textbook_band():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    y = [10.2, 11.9, 14.1, 16.2, 17.8, 20.1, 22.3, 23.8]
    t = stats.fit_trend(x, y)
    ref = sps.linregress(x, y)
    q = sps.t.ppf(0.975, len(x) - 2)
    assert t.slope == pytest.approx(ref.slope)
    assert t.intercept == pytest.approx(ref.intercept)
    assert (t.slope_low, t.slope_high) == pytest.approx(
        (ref.slope - q * ref.stderr, ref.slope + q * ref.stderr)
    )
    # At the mean of x the band's half-width is t * s / sqrt(n).
    resid = np.array(y) - (ref.intercept + ref.slope * np.array(x))
    s = math.sqrt(float(np.sum(resid**2)) / (len(x) - 2))
    band = stats.fit_trend(x, y, points=3).band
    mid_x, low, fit, high = band[1]
    assert mid_x == pytest.approx(4.5)
    assert fit == pytest.approx(ref.intercept + ref.slope * 4.5)
    assert (high - low) / 2 == pytest.approx(q * s / math.sqrt(len(x)))
    # The band is narrowest at the mean of x.
    widths = [h - lo for _, lo, _, h in t.band]
    assert min(widths) < widths[0] and min(widths) < widths[-1]


def test_trend_on_log_x_is_per_decade():
    x = [1e-4, 1e-3, 1e-2, 1e-1]
    y = [100.0, 110.0, 121.0, 129.0]
    t = stats.fit_trend(x, y, log_x=True)
    assert t.slope == pytest.approx(sps.linregress(np.log10(x), y).slope)
    assert t.band[0][0] == pytest.approx(1e-4) and t.band[-1][0] == pytest.approx(1e-1)
    assert "per decade of learning_rate" in t.describe("learning_rate", "J")


def test_trend_needs_three_points_and_two_x_values():
    assert stats.fit_trend([1.0, 2.0], [3.0, 4.0]) is None
    assert stats.fit_trend([2.0, 2.0, 2.0], [3.0, 4.0, 5.0]) is None
