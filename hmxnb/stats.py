"""Statistics for paired model comparisons: bootstrap CIs, McNemar, sign-flip / Wilcoxon, Holm, classes.

Pure functions on numbers and arrays; `hmxnb.compare` applies them to benchmark records. The paper names
no test, no CI and no correction (paper.md section 5.3), so every choice here is ours and says where from.
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import numpy as np
from scipy import stats

CLASSES = ("enhanced", "degraded", "no significant change")
# Above this many items the BCa interval's jackknife (an n x n array: full Hub BBQ, ~58k records, would need tens
# of GB) is replaced by the percentile interval; BootstrapCI.method says which one a result got.
BCA_MAX_N = 3000


class BootstrapCI(NamedTuple):
    """A bootstrap confidence interval, the resampled statistics it came from and how it was computed.

    `method`: "BCa", "percentile" (asked for, above BCA_MAX_N items, or where BCa is undefined), "point" (no
    variation in the resamples) or "none" (fewer than two items).
    """

    low: float
    high: float
    distribution: np.ndarray
    method: str = "none"


def ci_method(n: int, method: str) -> str:
    """The interval actually used for n items: "percentile" instead of "BCa" above BCA_MAX_N items."""
    return "percentile" if method == "BCa" and n > BCA_MAX_N else method


def relative_change(new: float, ref: float) -> float:
    """Relative change of `new` against `ref` in %: 100 * (new - ref) / |ref|; NaN when ref is 0 or NaN.

    The paper reports degradations in % ("15.0%", "< 2%") without saying relative or absolute (paper.md 5.2);
    we read them as relative changes of the metric value.
    """
    if ref is None or new is None or not np.isfinite(ref) or not np.isfinite(new) or ref == 0:
        return float("nan")
    return 100.0 * (new - ref) / abs(ref)


def mcnemar_counts(correct_a, correct_b) -> tuple[int, int]:
    """Discordant pair counts (b, c) of paired correctness: b = A right and B wrong, c = A wrong and B right."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


def mcnemar(b: int, c: int, method: str = "midp") -> float:
    """Two-sided McNemar p-value from the discordant counts b and c of a paired 2x2 table.

    Args:
        b, c: discordant pairs (A right / B wrong, and A wrong / B right); concordant pairs carry no information.
        method: "midp" (default), the mid-p exact test recommended by Fagerland, Lydersen & Laake (2013,
            BMC Med Res Methodol 13:91): 2 * [P(X <= min) - P(X = min) / 2], X ~ Binomial(b + c, 1/2);
            "exact", the conditional binomial test (McNemar 1947; conservative): 2 * P(X <= min);
            "chi2", the chi-square statistic with Edwards' continuity correction, (|b - c| - 1)^2 / (b + c), 1 df.
    Returns 1.0 when there are no discordant pairs.
    """
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    if method == "exact":
        p = 2.0 * stats.binom.cdf(k, n, 0.5)
    elif method == "midp":
        p = 2.0 * (stats.binom.cdf(k, n, 0.5) - 0.5 * stats.binom.pmf(k, n, 0.5))
    elif method == "chi2":
        p = stats.chi2.sf(max(abs(b - c) - 1, 0) ** 2 / n, df=1)
    else:
        raise ValueError(f"unknown McNemar method '{method}' (use midp, exact or chi2)")
    return float(min(1.0, p))


def sign_flip_test(diffs, n_resamples: int = 2000, seed: int = 0) -> float:
    """Two-sided paired permutation p-value for mean(diffs) = 0, flipping the sign of each paired difference.

    The paired (sign-flip) permutation test of Fisher (1935), via `scipy.stats.permutation_test` with one
    sample and permutation_type="samples"; exact when 2**n <= n_resamples, Monte Carlo otherwise.
    """
    d = np.asarray(diffs, dtype=float)
    if d.size < 2 or np.all(d == 0):  # one pair: both sign patterns are as extreme, the exact p is 1 (scipy refuses)
        return 1.0
    res = stats.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", vectorized=True,
        n_resamples=n_resamples, rng=np.random.default_rng(seed),
    )
    return float(min(1.0, res.pvalue))


def wilcoxon_test(diffs) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (scipy.stats.wilcoxon, zero_method="wilcox").

    Returns 1.0 when every difference is zero (the test is undefined there).
    """
    d = np.asarray(diffs, dtype=float)
    if d.size == 0 or np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox").pvalue)


def _ci_from(res, point: float, confidence_level: float, method: str) -> BootstrapCI:
    """CI from a scipy BootstrapResult; falls back to percentiles (then to the point) where BCa is undefined."""
    dist = np.asarray(res.bootstrap_distribution, dtype=float).ravel()
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.isfinite(low) and np.isfinite(high):
        return BootstrapCI(low, high, dist, method)
    finite = dist[np.isfinite(dist)]
    if finite.size == 0 or np.ptp(finite) == 0:
        return BootstrapCI(point, point, dist, "point")
    tail = 100 * (1 - confidence_level) / 2
    return BootstrapCI(float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail)), dist, "percentile")


def paired_bootstrap_ci(
    a, b, statistic: Callable = np.mean, n_resamples: int = 2000, confidence_level: float = 0.95,
    method: str = "BCa", seed: int = 0,
) -> BootstrapCI:
    """CI of statistic(a) - statistic(b) for per-item values a, b paired by position, resampling items.

    `scipy.stats.bootstrap` with paired=True (Efron & Tibshirani 1993, ch. 14); method "BCa" (default, Efron 1987)
    or "percentile" (always above BCA_MAX_N items). `statistic(x, axis)` must be vectorised (np.mean is). Where BCa
    is undefined (no variation in the resamples) the interval falls back to percentiles, then to the point estimate.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    point = float(statistic(a, axis=-1) - statistic(b, axis=-1))
    if a.size < 2:
        return BootstrapCI(float("nan"), float("nan"), np.array([]))
    method = ci_method(a.size, method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (a, b), lambda x, y, axis: statistic(x, axis=axis) - statistic(y, axis=axis), paired=True,
            vectorized=True, n_resamples=n_resamples, confidence_level=confidence_level, method=method,
            rng=np.random.default_rng(seed),
        )
    return _ci_from(res, point, confidence_level, method)


def index_bootstrap_ci(
    n: int, diff_fn: Callable, n_resamples: int = 2000, confidence_level: float = 0.95,
    method: str = "BCa", seed: int = 0,
) -> BootstrapCI:
    """CI of a difference that is any function of a set of paired items, e.g. a ratio statistic per model.

    Resamples the shared item index 0..n-1 with `scipy.stats.bootstrap` (so both models see the same items:
    a paired bootstrap) and calls `diff_fn(idx) -> float` once per resample (and n times for the BCa jackknife,
    which is skipped above BCA_MAX_N items: percentile intervals there).
    """
    if n < 2:
        return BootstrapCI(float("nan"), float("nan"), np.array([]))
    point = float(diff_fn(np.arange(n)))
    method = ci_method(n, method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (np.arange(n),), lambda idx: diff_fn(np.asarray(idx, dtype=int)), vectorized=False,
            n_resamples=n_resamples, confidence_level=confidence_level, method=method,
            rng=np.random.default_rng(seed),
        )
    return _ci_from(res, point, confidence_level, method)


def bootstrap_pvalue(distribution) -> float:
    """Two-sided bootstrap p-value of a difference: 2 * min(share of resamples <= 0, share >= 0), capped at 1.

    The percentile-interval inversion (Efron & Tibshirani 1993, sec. 16.4; Hall & Wilson 1991 warn it is
    approximate): the smallest alpha at which the percentile CI excludes 0. Non-finite resamples are dropped.
    Used only for ratio statistics ("statistic" metrics), where no exact paired test applies.
    """
    d = np.asarray(distribution, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    below = (np.sum(d <= 0) + 1) / (d.size + 1)
    above = (np.sum(d >= 0) + 1) / (d.size + 1)
    return float(min(1.0, 2 * min(below, above)))


def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values: p_(i) * (m - i + 1), made monotone, capped at 1.

    NaN p-values are left NaN and do not count towards m.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def classify(diff: float, ci: tuple[float, float], p_adj: float, higher_is_better: bool, alpha: float = 0.05) -> str:
    """Class of one result: "enhanced", "degraded" or "no significant change" (the paper's three, paper.md 5.2).

    Significant means p_adj < alpha (Holm-adjusted) AND the CI excludes 0 on the side of diff (strictly:
    an endpoint at exactly 0 does not exclude it). A significant diff is "enhanced" when it goes the better
    way (up if higher_is_better, else down), "degraded" otherwise. NaN anywhere -> "no significant change".
    The paper states no criterion (paper.md 5.3); this rule is ours.
    """
    low, high = ci
    if not all(np.isfinite(v) for v in (diff, low, high, p_adj)) or p_adj >= alpha:
        return "no significant change"
    if diff > 0 and low > 0:
        up = True
    elif diff < 0 and high < 0:
        up = False
    else:
        return "no significant change"
    return "enhanced" if up == higher_is_better else "degraded"
