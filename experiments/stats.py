"""Statistics for comparing two groups of runs (parallel against solo, or any two
groups), and trends of energy against a hyperparameter. Pure: no Django, so the command
line (``submit --wait``), the pages, the report and the API share one implementation.

The maths is SciPy's (``binom``, ``mannwhitneyu``, ``linregress``); this module chooses
the methods and turns the results into what a reviewer reads. The methods, said in every
legend (``MEDIAN_METHOD``, ``RATIO_METHOD``):

- each group: the median with its **order-statistic (binomial) 95 % interval**
  ``[x(j), x(n+1-j)]``, the widest ``j`` whose coverage ``P(j <= B <= n-j)``,
  ``B ~ Binomial(n, 1/2)``, is still at least 95 %. Distribution-free (energies and
  durations are skewed), its coverage is exact, not an approximation, and ties only make
  it conservative. It exists from ``MIN_INTERVAL_RUNS`` = 6 runs (coverage 96.9 %,
  the range of the 6 values); below that no interval is shown, only the values: a
  percentile bootstrap of 3 runs gives their range and calls it 95 % (it covers 75 %).
- a ratio of medians (a over b: parallel over solo, of energy or of duration): each
  median's 97.5 % order-statistic interval, and the ratio's interval is the range of
  their quotient, ``[low_a / high_b, high_a / low_b]``. Both medians lie in their
  intervals together with probability at least 1 - 2.5 % - 2.5 % (Bonferroni), so the
  ratio's interval covers at least 95 % whatever the distributions: conservative, exact
  as a bound, and the same kind of interval as each median's. It exists from
  ``MIN_RUNS`` = 7 runs a side (the first n whose interval reaches 97.5 %).
- Mann-Whitney U (two-sided; exact for small samples without ties) and its effect size,
  the rank-biserial correlation (-1..1, positive when a tends to be larger);
- a verdict only when the ratio has its interval (``MIN_RUNS`` a side); below that "too
  few runs", with how many runs per group one stated formula asks for
  (``runs_needed``).

Non-finite values (an edited or corrupt figure) never reach the maths: they are left out
and counted (``GroupSummary.not_finite``), and a result that overflows is None, never an
exception.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np


def _sps() -> Any:
    """SciPy's statistics, imported when first needed: importing ``scipy.stats`` costs
    about a second of CPU, and every process that sets up Django imports this module
    (the admin imports the selectors), a Slurm job's worker at each start included."""
    from scipy import stats

    return stats


def __getattr__(name: str) -> Any:
    # ``stats.sps`` (SciPy's module) still reads as before, for whoever patches it.
    if name == "sps":
        return _sps()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CONFIDENCE = 0.95
#: Each median's interval inside a ratio's (Bonferroni: two at 97.5 % hold together
#: with probability at least 95 %).
RATIO_EACH = 1 - (1 - CONFIDENCE) / 2
#: The precision "runs needed" aims at: the ratio's 95 % interval within +-5 % of the
#: ratio (half-width over ratio).
PRECISION = 0.05
ALPHA = 0.05

MEDIAN_METHOD = "order-statistic (binomial) 95 % interval of the median"
RATIO_METHOD = (
    "ratio of medians; its interval is the range of the quotient of the two medians' "
    "97.5 % order-statistic intervals (at least 95 % by Bonferroni)"
)

#: The test behind p and the verdict, and its effect size.
TEST_METHOD = "Mann-Whitney U test (two-sided)"
EFFECT_SIZE = "rank-biserial correlation"


@functools.lru_cache(maxsize=4096)
def order_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, float] | None:
    """(j, coverage) of the narrowest symmetric order-statistic interval of the median
    ``[x(j), x(n+1-j)]`` (1-based ranks) whose exact coverage is at least
    ``confidence``; None when even the range of n values falls short."""
    if n < 1:
        return None
    cdf = _sps().binom.cdf(np.arange(n + 1), n, 0.5)
    j = np.arange(1, n // 2 + 1)
    # P(j <= B <= n - j) = F(n - j) - F(j - 1), falling as j grows.
    cover = cdf[n - j] - cdf[j - 1]
    reached = np.flatnonzero(cover >= confidence)
    if reached.size == 0:
        return None
    best = int(reached[-1])
    return best + 1, float(cover[best])


def min_runs_for(confidence: float) -> int:
    """The fewest values whose order-statistic interval reaches ``confidence``."""
    n = 1
    while order_ranks(n, confidence) is None:
        n += 1
    return n


#: The fewest runs for a median's 95 % interval (coverage 96.9 %): ``min_runs_for(
#: CONFIDENCE)``, written out so that importing this module does not import SciPy
#: (tests/experiments/test_stats.py checks the two agree).
MIN_INTERVAL_RUNS = 6
#: The fewest runs a side for the ratio's interval, and so for a verdict:
#: ``min_runs_for(RATIO_EACH)``, written out likewise.
MIN_RUNS = 7
#: The normal quantile of each median's 97.5 % interval (2.24), for ``runs_needed``.
_Z_EACH = NormalDist().inv_cdf(1 - (1 - RATIO_EACH) / 2)


def format_p(p: float | None) -> str:
    """p with two significant figures ("p = 0.18", "p = 1.0"), "p < 0.001" below that."""
    if p is None or not math.isfinite(p):
        return "p not computed"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:#.2g}"


def finite(values: Sequence[float | None]) -> tuple[list[float], int]:
    """(the finite values in order, how many were not finite). None is not a value and
    is not counted: a figure that was not measured is said elsewhere."""
    present = np.asarray([v for v in values if v is not None], dtype=float)
    ok = np.isfinite(present)
    kept: list[float] = present[ok].tolist()
    return kept, int(present.size - len(kept))


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _median_sorted(x: Sequence[float]) -> float:
    """The median of sorted values without the overflow of (a + b) / 2 near the float
    maximum."""
    n = len(x)
    mid = n // 2
    if n % 2:
        return float(x[mid])
    return float(x[mid - 1]) / 2 + float(x[mid]) / 2


@dataclass(frozen=True)
class GroupSummary:
    """One group's median, its order-statistic interval (None below
    ``MIN_INTERVAL_RUNS``) with the interval's exact coverage, range, and the values
    themselves (sorted) for a group too small for an interval."""

    n: int
    median: float | None
    low: float | None = None
    high: float | None = None
    #: The interval's exact coverage (0.969 for 6 runs); None without an interval.
    coverage: float | None = None
    min: float | None = None
    max: float | None = None
    values: tuple[float, ...] = field(default=(), repr=False)
    #: Values left out because they were not finite numbers.
    not_finite: int = 0
    # ``values``: kept only for a group too small for an interval (it is shown instead),
    # so a summary stays small whatever the number of runs.

    @property
    def too_few(self) -> bool:
        """A group with values but too few of them for a 95 % interval."""
        return 0 < self.n < MIN_INTERVAL_RUNS


def summarise(values: Sequence[float | None], confidence: float = CONFIDENCE) -> GroupSummary:
    """Median, order-statistic interval at ``confidence`` and range of the finite values."""
    kept, dropped = finite(values)
    if not kept:
        return GroupSummary(0, None, not_finite=dropped)
    x = np.sort(np.asarray(kept)).tolist()
    n = len(x)
    ranks = order_ranks(n, confidence)
    low = high = cover = None
    if ranks is not None:
        j, cover = ranks
        low, high = x[j - 1], x[n - j]
    return GroupSummary(
        n=n,
        median=_median_sorted(x),
        low=low,
        high=high,
        coverage=cover,
        min=x[0],
        max=x[-1],
        values=tuple(x) if n < MIN_INTERVAL_RUNS else (),
        not_finite=dropped,
    )


def ratio_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """The 95 % interval of median(a) / median(b) (see the module docstring): None below
    ``MIN_RUNS`` a side, or where b's interval reaches zero (or below)."""
    sa, sb = summarise(a, RATIO_EACH), summarise(b, RATIO_EACH)
    if sa.low is None or sa.high is None or sb.low is None or sb.high is None:
        return None
    if sb.low <= 0 or sa.low < 0:
        return None
    with np.errstate(all="ignore"):
        low, high = sa.low / sb.high, sa.high / sb.low
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def runs_needed(a: Sequence[float], b: Sequence[float], precision: float = PRECISION) -> int | None:
    """Runs per group for the ratio's interval to reach +-``precision``, by one formula:

        n = ceil((z * sqrt(pi / 2) * 2 * c / precision) ** 2), at least MIN_RUNS

    where ``sqrt(pi / 2) * s / sqrt(n)`` is the standard error of a median (normal
    approximation), z = 2.24 each median's 97.5 % quantile (the ratio's interval adds
    the two medians' relative half-widths), and ``c`` the pooled coefficient of
    variation of both groups, ``c**2 = sum((n_i - 1) * (s_i / m_i)**2) / sum(n_i - 1)``.
    Pooling both groups' spreads keeps the estimate steady at small n (tests/experiments/
    test_stats.py simulates it). None when it cannot be estimated: no group with two
    values, a median at or below zero, or a spread that overflows."""
    pooled = 0.0
    dof = 0
    for values in (a, b):
        kept, _dropped = finite(values)
        if len(kept) < 2:
            continue
        x = np.asarray(kept)
        m = _median_sorted(sorted(kept))
        if m <= 0:
            return None
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = float(np.std(x, ddof=1))
        if not math.isfinite(s):
            return None
        pooled += (len(kept) - 1) * (s / m) ** 2
        dof += len(kept) - 1
    if dof == 0:
        return None
    c = math.sqrt(pooled / dof)
    n = (_Z_EACH * math.sqrt(math.pi / 2) * 2 * c / precision) ** 2
    if not math.isfinite(n):
        return None
    return max(MIN_RUNS, math.ceil(n))


@dataclass(frozen=True)
class Comparison:
    """Group ``a`` against group ``b`` (for parallel against solo: a = parallel)."""

    a: GroupSummary
    b: GroupSummary
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    p_value: float | None
    u_statistic: float | None
    #: Rank-biserial correlation: P(a > b) - P(a < b) over all pairs.
    effect_size: float | None
    #: Both groups have MIN_RUNS and the ratio has its interval: a verdict is given.
    enough: bool
    #: Runs per group the formula asks for (``runs_needed``); None: cannot estimate.
    runs_needed: int | None
    precision: float = PRECISION
    min_runs: int = MIN_RUNS

    @property
    def more_needed(self) -> int:
        """Runs to add to the smaller group: to ``runs_needed`` where it is estimated,
        else to the ``MIN_RUNS`` a verdict needs."""
        target = self.runs_needed if self.runs_needed is not None else self.min_runs
        return max(target - min(self.a.n, self.b.n), 0)

    def more_for(self, n: int) -> int:
        """Runs to add to a group of ``n`` (each side is topped up on its own)."""
        target = self.runs_needed if self.runs_needed is not None else self.min_runs
        return max(target - n, 0)

    @property
    def significant(self) -> bool:
        return self.enough and self.p_value is not None and self.p_value < ALPHA

    @property
    def ratio_precision(self) -> float | None:
        """Half-width of the ratio's interval over the ratio (0.05 = +-5 %)."""
        if self.ratio is None or self.ratio_low is None or self.ratio_high is None:
            return None
        if self.ratio <= 0:
            return None
        return (self.ratio_high - self.ratio_low) / 2 / self.ratio

    def more_text(self) -> str:
        if self.runs_needed is None:
            return (
                f"at least {self.more_needed} more per group for a verdict "
                "(the spread cannot be estimated yet)"
            )
        return f"about {self.more_needed} more per group for a ±{self.precision * 100:g} % interval"

    def verdict(self, a_name: str = "a", b_name: str = "b", quantity: str = "energy") -> str:
        """One line a reviewer can read; never a verdict below MIN_RUNS."""
        if not self.enough:
            return (
                f"too few runs ({self.a.n} {a_name}, {self.b.n} {b_name}; a verdict needs "
                f"{self.min_runs} each): {self.more_text()} on the ratio"
            )
        assert self.ratio is not None and self.ratio_low is not None
        assert self.ratio_high is not None
        interval = f"95 % CI ×{self.ratio_low:.3f}–×{self.ratio_high:.3f}"
        if self.significant:
            direction = "more" if self.ratio > 1 else "less"
            line = (
                f"{a_name} uses {direction} {quantity} than {b_name}: "
                f"×{self.ratio:.3f} ({interval}), {format_p(self.p_value)}"
            )
        else:
            line = (
                f"no significant difference between {a_name} and {b_name} "
                f"(×{self.ratio:.3f}, {interval}, {format_p(self.p_value)})"
            )
        if self.more_needed:
            line += f"; {self.more_text()} on the ratio"
        return line


def compare(
    a: Sequence[float | None], b: Sequence[float | None], *, test: bool = True
) -> Comparison:
    """Group a against group b: medians with intervals, ratio a/b with its interval,
    Mann-Whitney U (``test``: a ratio shown without a verdict needs none), and the runs
    the formula asks for."""
    sa, sb = summarise(a), summarise(b)
    x, _ = finite(a)
    y, _ = finite(b)
    ratio = None
    if sa.median is not None and sb.median:
        with np.errstate(all="ignore"):
            ratio = _finite_or_none(sa.median / sb.median)
    interval = ratio_interval(x, y)
    ratio_low, ratio_high = interval if interval is not None else (None, None)
    p_value = u_stat = effect = None
    if x and y and test:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = _sps().mannwhitneyu(x, y, alternative="two-sided", method="auto")
        u_stat = _finite_or_none(float(res.statistic))
        p_value = _finite_or_none(float(res.pvalue))
        if u_stat is not None:
            effect = 2.0 * u_stat / (len(x) * len(y)) - 1.0
    enough = bool(
        len(x) >= MIN_RUNS
        and len(y) >= MIN_RUNS
        and ratio is not None
        and interval is not None
        and (p_value is not None or not test)
    )
    return Comparison(
        a=sa,
        b=sb,
        ratio=ratio,
        ratio_low=ratio_low,
        ratio_high=ratio_high,
        p_value=p_value,
        u_statistic=u_stat,
        effect_size=effect,
        enough=enough,
        runs_needed=runs_needed(x, y),
    )


@dataclass(frozen=True)
class Trend:
    """Least-squares line of y against x (or log10 x) with 95 % intervals.

    ``band`` holds (x, low, fit, high) along the observed x range: the confidence band
    of the fitted mean, y_hat +- t * s * sqrt(1/n + (x' - mean x')^2 / Sxx)."""

    n: int
    log_x: bool
    slope: float
    intercept: float
    slope_low: float
    slope_high: float
    r: float
    p_value: float
    band: list[tuple[float, float, float, float]] = field(default_factory=list)

    def describe(self, x_name: str, unit: str) -> str:
        per = f"per decade of {x_name}" if self.log_x else f"per unit of {x_name}"
        return (
            f"{self.slope:+.4g} {unit} {per} "
            f"(95 % CI {self.slope_low:+.4g} to {self.slope_high:+.4g}; "
            f"r = {self.r:.2f}, {format_p(self.p_value)}, n = {self.n})"
        )


def fit_trend(
    xs: Sequence[float], ys: Sequence[float], *, log_x: bool = False, points: int = 24
) -> Trend | None:
    """Ordinary least squares of y on x (log10 x when ``log_x``) with the 95 % interval
    of the slope and the confidence band of the fitted line. None when it cannot be
    fitted: fewer than three points, a single x value, or values so large the fit
    overflows."""
    pairs = [
        (float(x), float(y))
        for x, y in zip(xs, ys, strict=True)
        if math.isfinite(float(x)) and math.isfinite(float(y)) and (not log_x or float(x) > 0)
    ]
    if len(pairs) < 3:
        return None
    x = np.asarray([p[0] for p in pairs])
    y = np.asarray([p[1] for p in pairs])
    u = np.log10(x) if log_x else x
    if float(u.min()) == float(u.max()):
        return None
    n = int(u.size)
    sps = _sps()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.linregress(u, y)
        t = float(sps.t.ppf(0.5 + CONFIDENCE / 2, n - 2))
        slope = float(res.slope)
        intercept = float(res.intercept)
        slope_se = float(res.stderr)
        residuals = y - (intercept + slope * u)
        s = math.sqrt(float(np.sum(residuals**2)) / (n - 2))
        mean_u = float(u.mean())
        sxx = float(np.sum((u - mean_u) ** 2))
    if not all(math.isfinite(v) for v in (slope, intercept, slope_se, s, sxx)) or sxx == 0:
        return None
    band = []
    for ui in np.linspace(float(u.min()), float(u.max()), points):
        fit = intercept + slope * float(ui)
        half = t * s * math.sqrt(1 / n + (float(ui) - mean_u) ** 2 / sxx)
        xi = 10 ** float(ui) if log_x else float(ui)
        band.append((xi, fit - half, fit, fit + half))
    r = float(res.rvalue)
    p = float(res.pvalue)
    return Trend(
        n=n,
        log_x=log_x,
        slope=slope,
        intercept=intercept,
        slope_low=slope - t * slope_se,
        slope_high=slope + t * slope_se,
        r=0.0 if math.isnan(r) else r,
        p_value=1.0 if math.isnan(p) else p,
        band=band,
    )
