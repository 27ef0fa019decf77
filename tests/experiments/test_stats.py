"""experiments.stats against SciPy called directly, brute-force references and simulated
data with fixed seeds (energies in joules of two groups of repeated runs)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from experiments import stats

SOLO = [1010.0, 985.0, 1003.0, 1021.0, 995.0, 1008.0, 990.0]
PARALLEL = [1302.0, 1275.0, 1330.0, 1290.0, 1311.0, 1288.0, 1296.0]


def _coverage(n: int, j: int) -> float:
    """P(x(j) <= median <= x(n+1-j)) for a continuous distribution, counted exactly."""
    return sum(math.comb(n, i) for i in range(j, n - j + 1)) / 2**n


def test_the_median_interval_is_the_widest_order_statistic_pair_reaching_95_percent():
    for n in range(1, 60):
        ranks = stats.order_ranks(n)
        best = max((j for j in range(1, n // 2 + 1) if _coverage(n, j) >= 0.95), default=None)
        if best is None:
            assert ranks is None, n
        else:
            assert ranks is not None and ranks[0] == best, n
            assert ranks[1] == pytest.approx(_coverage(n, best))
    assert stats.MIN_INTERVAL_RUNS == 6 and stats.order_ranks(6) == (1, 0.96875)
    assert stats.MIN_RUNS == 7  # each median at 97.5 % for the ratio's interval
    # Written out in the module (no SciPy at import): the same as computed.
    assert stats.MIN_INTERVAL_RUNS == stats.min_runs_for(stats.CONFIDENCE)
    assert stats.MIN_RUNS == stats.min_runs_for(stats.RATIO_EACH)
    assert stats._Z_EACH == pytest.approx(float(sps.norm.ppf(1 - (1 - stats.RATIO_EACH) / 2)))


def test_a_group_of_three_shows_no_95_percent_interval_only_its_values():
    """A percentile bootstrap of 3 runs gave their range and called it 95 %."""
    s = stats.summarise([310.0, 300.0, 305.0])
    assert (s.n, s.median, s.low, s.high, s.coverage) == (3, 305.0, None, None, None)
    assert s.too_few and s.values == (300.0, 305.0, 310.0)
    six = stats.summarise([5.0, 1.0, 4.0, 2.0, 6.0, 3.0])
    assert (six.low, six.high, six.coverage) == (1.0, 6.0, 0.96875)
    nine = stats.summarise(list(range(9, 0, -1)))
    assert (nine.low, nine.high) == (2, 8) and nine.coverage == pytest.approx(_coverage(9, 2))


def test_the_intervals_cover_the_true_median_and_ratio_as_often_as_they_say():
    """Simulated skewed (log-normal) runs, fixed seed: the median's interval covers the
    true median at least 95 % of the time at every size it is shown; so does the
    ratio's (conservative by construction)."""
    rng = np.random.default_rng(16)
    trials = 1500
    for n in (6, 7, 10, 15):
        a = rng.lognormal(mean=np.log(1300.0), sigma=0.3, size=(trials, n))
        b = rng.lognormal(mean=np.log(1000.0), sigma=0.3, size=(trials, n))
        medians = [stats.summarise(row.tolist()) for row in a]
        covered = np.mean([s.low <= 1300.0 <= s.high for s in medians])
        assert covered >= 0.95 - 2 * math.sqrt(0.05 * 0.95 / trials), (n, covered)
        if n >= stats.MIN_RUNS:
            intervals = [
                stats.ratio_interval(x.tolist(), y.tolist()) for x, y in zip(a, b, strict=True)
            ]
            hit = np.mean([lo <= 1.3 <= hi for lo, hi in intervals])
            assert hit >= 0.95, (n, hit)
    assert stats.ratio_interval([1.0] * 6, [1.0] * 6) is None  # 6 a side: not yet


def test_the_ratio_interval_is_the_quotient_of_the_975_percent_median_intervals():
    a = stats.summarise(PARALLEL, stats.RATIO_EACH)
    b = stats.summarise(SOLO, stats.RATIO_EACH)
    assert a.coverage >= 0.975 and b.coverage >= 0.975
    assert stats.ratio_interval(PARALLEL, SOLO) == (a.low / b.high, a.high / b.low)
    c = stats.compare(PARALLEL, SOLO)
    assert c.ratio == pytest.approx(1296.0 / 1003.0)
    assert c.ratio_low < c.ratio < c.ratio_high


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


def test_p_has_two_significant_figures_and_a_floor():
    assert [stats.format_p(p) for p in (1.0, 0.7, 0.1797, 0.0123, 0.001, 0.00099)] == [
        "p = 1.0",
        "p = 0.70",
        "p = 0.18",
        "p = 0.012",
        "p = 0.0010",
        "p < 0.001",
    ]


def test_clear_difference_gives_a_verdict_with_direction_and_interval():
    c = stats.compare(PARALLEL, SOLO)
    assert c.enough and c.significant
    assert c.effect_size == 1.0  # every parallel run used more than every solo run
    line = c.verdict("parallel", "solo")
    assert line.startswith("parallel uses more energy than solo: ×1.292 (95 % CI ×")
    assert "p < 0.001" in line and "too few" not in line


def test_identical_groups_are_not_significant():
    c = stats.compare(SOLO, list(reversed(SOLO)))
    assert c.enough and not c.significant
    assert c.ratio == 1.0
    assert "no significant difference" in c.verdict("a", "b")


def test_too_few_runs_gives_no_verdict_and_how_many_more():
    c = stats.compare([1300.0, 1250.0, 1280.0], [1000.0, 1100.0, 1010.0])
    assert not c.enough and not c.significant
    assert c.ratio_low is None and c.a.low is None
    assert c.runs_needed is not None and c.runs_needed >= stats.MIN_RUNS
    line = c.verdict("parallel", "solo")
    assert line.startswith("too few runs (3 parallel, 3 solo; a verdict needs 7 each)")
    assert f"about {c.more_needed} more per group for a ±5 % interval" in line


def test_runs_needed_is_the_stated_formula():
    a = [1300.0, 1250.0, 1280.0, 1310.0]
    b = [1000.0, 1100.0, 1010.0]
    ca = np.std(a, ddof=1) / np.median(a)
    cb = np.std(b, ddof=1) / np.median(b)
    c = math.sqrt((3 * ca**2 + 2 * cb**2) / 5)
    z = sps.norm.ppf(1 - 0.025 / 2)
    expected = math.ceil((z * math.sqrt(math.pi / 2) * 2 * c / 0.05) ** 2)
    assert stats.runs_needed(a, b) == max(expected, stats.MIN_RUNS)
    # No spread to estimate from, or nothing positive to divide by: not estimated.
    assert stats.runs_needed([5.0], [6.0]) is None
    assert stats.runs_needed([0.0, 0.0], [1.0, 2.0]) is None
    assert stats.compare([5.0], [6.0]).more_needed == stats.MIN_RUNS - 1


def test_runs_needed_is_stable_on_simulated_runs_and_converges_as_n_grows():
    """Three runs a side, then six (the same first three), on 400 simulated experiments
    (fixed seed): the estimate rarely moves by more than 3x and almost never by an
    order of magnitude (the issue saw "6 more" become "74 more"); from 48 runs a side it
    is within 20 % of the true answer for the simulated spread."""
    rng = np.random.default_rng(20261203)
    cv = 0.06
    z = sps.norm.ppf(1 - 0.025 / 2)
    truth = (z * math.sqrt(math.pi / 2) * 2 * cv / 0.05) ** 2
    jumps = []
    late = []
    spread = {}
    for n in (3, 6, 12, 48):
        spread[n] = []
    for _ in range(400):
        a = rng.normal(1300.0, 1300.0 * cv, 48)
        b = rng.normal(1000.0, 1000.0 * cv, 48)
        est = {n: stats.runs_needed(a[:n].tolist(), b[:n].tolist()) for n in spread}
        for n, value in est.items():
            spread[n].append(value)
        jumps.append(est[6] / est[3])
        late.append(est[48])
    jumps_arr = np.array(jumps)
    assert np.mean((jumps_arr > 10) | (jumps_arr < 0.1)) <= 0.01
    assert np.mean((jumps_arr > 3) | (jumps_arr < 1 / 3)) <= 0.10
    assert abs(np.median(late) / truth - 1) < 0.2
    # The estimates narrow as runs are added.
    widths = [np.percentile(spread[n], 90) - np.percentile(spread[n], 10) for n in spread]
    assert widths == sorted(widths, reverse=True)


def test_non_finite_values_are_left_out_and_counted_and_huge_ones_never_raise():
    s = stats.summarise([1000.0, float("inf"), 1010.0, float("nan"), None])
    assert (s.n, s.not_finite, s.median) == (2, 2, 1005.0)
    huge = stats.compare([1.7e308, 1.7e308, 1.6e308] * 3, [1000.0, float("inf")] * 5)
    assert huge.b.not_finite == 5 and huge.b.n == 5
    assert huge.a.median == 1.7e308  # no (a + b) / 2 overflow
    assert huge.runs_needed is None  # the spread overflows: not estimated, not raised
    assert "spread cannot be estimated" in huge.verdict()
    assert stats.compare([float("inf")] * 3, [1.0]).a.n == 0


def test_small_and_degenerate_groups():
    assert stats.summarise([]) == stats.GroupSummary(0, None)
    one = stats.summarise([5.0])
    assert (one.n, one.median, one.low, one.values) == (1, 5.0, None, (5.0,))
    same = stats.summarise([5.0] * 7)
    assert (same.low, same.high) == (5.0, 5.0)
    assert stats.ratio_interval([2.0] * 7, [1.0] * 7) == (2.0, 2.0)
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


def test_trend_needs_three_points_and_two_x_values_and_survives_huge_values():
    assert stats.fit_trend([1.0, 2.0], [3.0, 4.0]) is None
    assert stats.fit_trend([2.0, 2.0, 2.0], [3.0, 4.0, 5.0]) is None
    assert stats.fit_trend([1.0, 2.0, 3.0], [1.7e308, -1.7e308, 1.7e308]) is None
