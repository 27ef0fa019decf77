"""Statistics for comparing the energy of two groups of runs (parallel against solo, or
any two groups), and trends of energy against a hyperparameter. Pure: no Django, so the
command line (``submit --wait``), the pages and the report share one implementation.

The maths is SciPy's (``bootstrap``, ``mannwhitneyu``, ``linregress``), not ours; this
module only chooses the settings and turns the results into what a reviewer reads:

- each group: median with a percentile-bootstrap 95 % confidence interval;
- the ratio of medians (a over b) with its bootstrap 95 % interval, both groups
  resampled independently;
- Mann-Whitney U (two-sided; exact for small samples without ties) and its effect
  size, the rank-biserial correlation (-1..1, positive when a tends to be larger);
- below ``MIN_RUNS`` per group no verdict, but "too few runs" with how many more runs
  per group would bring the ratio's interval to +-``PRECISION``.

Bootstrap resampling uses a fixed seed, so a page shows the same interval every time
it is drawn from the same runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
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
#: Below this many runs in either group there is no verdict. With 4 against 4 the
#: smallest two-sided Mann-Whitney p is 0.029, with 3 against 3 it is 0.1: the test
#: cannot speak at all under 4, and 5 leaves it some room.
MIN_RUNS = 5
#: The precision "how many more runs" aims at: the ratio's 95 % interval within
#: +-5 % of the ratio (half-width over ratio).
PRECISION = 0.05
ALPHA = 0.05
N_RESAMPLES = 2000
SEED = 20261130


@dataclass(frozen=True)
class GroupSummary:
    """Median of one group with its bootstrap interval (None below two values)."""

    n: int
    median: float | None
    low: float | None
    high: float | None


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
    enough: bool
    #: Runs to add to each group for the ratio's interval to reach +-PRECISION
    #: (0 when it is there already; an estimate, see ``more_runs_needed``).
    more_needed: int
    precision: float = PRECISION
    min_runs: int = MIN_RUNS

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

    def verdict(self, a_name: str = "a", b_name: str = "b") -> str:
        """One line a reviewer can read; never a verdict below MIN_RUNS."""
        if not self.enough:
            return (
                f"too few runs ({self.a.n} {a_name}, {self.b.n} {b_name}; a verdict needs "
                f"{self.min_runs} each): about {self.more_needed} more per group for a "
                f"±{self.precision:.0%} interval on the ratio"
            )
        assert self.ratio is not None and self.p_value is not None
        if self.significant:
            direction = "more" if self.ratio > 1 else "less"
            line = (
                f"{a_name} uses {direction} energy than {b_name}: "
                f"×{self.ratio:.3f}, p = {self.p_value:.2g}"
            )
        else:
            line = (
                f"no significant difference between {a_name} and {b_name} "
                f"(×{self.ratio:.3f}, p = {self.p_value:.2g})"
            )
        if self.more_needed:
            line += (
                f"; about {self.more_needed} more runs per group for a "
                f"±{self.precision:.0%} interval on the ratio"
            )
        return line


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
            f"r = {self.r:.2f}, p = {self.p_value:.2g}, n = {self.n})"
        )


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray([float(v) for v in values if v is not None], dtype=float)
    kept: np.ndarray = arr[np.isfinite(arr)]
    return kept


def _median(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.median(x, axis=axis))


def _ratio_of_medians(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.median(x, axis=axis) / np.median(y, axis=axis))


def _bootstrap(data: tuple[np.ndarray, ...], statistic: object) -> Any:
    """SciPy's bootstrap as every interval here uses it: groups resampled independently,
    the same seed, percentile intervals (BCa's jackknife gives NaN for the median of
    small samples with ties, which energy figures of repeated runs often have). Returns
    the confidence interval (low and high: floats, or arrays for a vector statistic)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "degenerate distribution" on identical values
        res = _sps().bootstrap(
            data,
            statistic,
            n_resamples=N_RESAMPLES,
            vectorized=True,
            paired=False,
            confidence_level=CONFIDENCE,
            method="percentile",
            rng=np.random.default_rng(SEED),
        )
    return res.confidence_interval


def _interval(data: tuple[np.ndarray, ...], statistic: object) -> tuple[float, float]:
    ci = _bootstrap(data, statistic)
    return float(ci.low), float(ci.high)


def summarise(values: Sequence[float]) -> GroupSummary:
    """Median and its bootstrap 95 % interval (no interval for fewer than two values)."""
    x = _clean(values)
    if x.size == 0:
        return GroupSummary(0, None, None, None)
    median = float(np.median(x))
    if x.size < 2:
        return GroupSummary(1, median, None, None)
    if float(x.min()) == float(x.max()):
        return GroupSummary(int(x.size), median, median, median)
    low, high = _interval((x,), _median)
    return GroupSummary(int(x.size), median, low, high)


def ratio_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """Bootstrap 95 % interval of median(a) / median(b), groups resampled independently."""
    x, y = _clean(a), _clean(b)
    if x.size < 2 or y.size < 2 or float(np.median(y)) == 0:
        return None
    if float(x.min()) == float(x.max()) and float(y.min()) == float(y.max()):
        r = float(x[0] / y[0])
        return r, r
    if float(np.min(y)) <= 0:
        return None  # a resampled median of zero would divide by zero
    return _interval((x, y), _ratio_of_medians)


def _medians_and_ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    mx = np.median(x, axis=axis)
    my = np.median(y, axis=axis)
    return np.stack([mx, my, mx / my])


def _joint_intervals(
    x: np.ndarray, y: np.ndarray
) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]] | None:
    """The intervals of median(x), median(y) and their ratio from ONE bootstrap: both
    groups resampled independently, the three statistics computed on the same
    resamples (SciPy's bootstrap with a vector statistic). Each is the same percentile
    interval that ``summarise`` and ``ratio_interval`` give (same seed, same draws:
    tests/experiments/test_stats.py checks it), at half their cost. None where those
    take a path of their own (fewer than two values, a non-positive value in y, or
    both groups constant)."""
    if x.size < 2 or y.size < 2 or float(np.min(y)) <= 0:
        return None
    if float(x.min()) == float(x.max()) and float(y.min()) == float(y.max()):
        return None
    ci = _bootstrap((x, y), _medians_and_ratio)
    low = [float(v) for v in ci.low]
    high = [float(v) for v in ci.high]
    return (low[0], high[0]), (low[1], high[1]), (low[2], high[2])


def more_runs_needed(
    n_a: int, n_b: int, relative_half_width: float | None, precision: float = PRECISION
) -> int:
    """Runs to add per group so that both reach MIN_RUNS and the ratio's interval
    reaches +-``precision``, assuming its width shrinks as 1/sqrt(n) (the usual rate for
    a median): n_needed = n * (width / target)^2, from the smaller group."""
    n = min(n_a, n_b)
    need = max(MIN_RUNS - n, 0)
    if relative_half_width is not None and n >= 2 and relative_half_width > precision:
        target = math.ceil(n * (relative_half_width / precision) ** 2)
        need = max(need, target - n)
    return need


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Group a against group b: medians, ratio a/b with intervals, Mann-Whitney U."""
    x, y = _clean(a), _clean(b)
    joint = _joint_intervals(x, y)
    interval: tuple[float, float] | None
    if joint is not None:
        (a_low, a_high), (b_low, b_high), interval = joint
        sa = GroupSummary(int(x.size), float(np.median(x)), a_low, a_high)
        sb = GroupSummary(int(y.size), float(np.median(y)), b_low, b_high)
    else:
        sa, sb = summarise(x.tolist()), summarise(y.tolist())
        interval = ratio_interval(x.tolist(), y.tolist())
    ratio = None
    if sa.median is not None and sb.median:
        ratio = sa.median / sb.median
    ratio_low, ratio_high = interval if interval is not None else (None, None)
    p_value = u_stat = effect = None
    if x.size and y.size:
        res = _sps().mannwhitneyu(x, y, alternative="two-sided", method="auto")
        u_stat = float(res.statistic)
        p_value = float(res.pvalue)
        effect = 2.0 * u_stat / (x.size * y.size) - 1.0
    rel = None
    if ratio and ratio_low is not None and ratio_high is not None and ratio > 0:
        rel = (ratio_high - ratio_low) / 2 / ratio
    enough = bool(x.size >= MIN_RUNS and y.size >= MIN_RUNS and ratio is not None)
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
        more_needed=more_runs_needed(int(x.size), int(y.size), rel),
    )


def fit_trend(
    xs: Sequence[float], ys: Sequence[float], *, log_x: bool = False, points: int = 24
) -> Trend | None:
    """Ordinary least squares of y on x (log10 x when ``log_x``) with the 95 % interval
    of the slope and the confidence band of the fitted line. None when it cannot be
    fitted: fewer than three points or a single x value."""
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
    res = sps.linregress(u, y)
    t = float(sps.t.ppf(0.5 + CONFIDENCE / 2, n - 2))
    slope = float(res.slope)
    intercept = float(res.intercept)
    slope_se = float(res.stderr)
    residuals = y - (intercept + slope * u)
    s = math.sqrt(float(np.sum(residuals**2)) / (n - 2))
    mean_u = float(u.mean())
    sxx = float(np.sum((u - mean_u) ** 2))
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
