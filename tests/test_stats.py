"""Tests for hmxnb/stats.py: known cases computed by hand."""

import math

import numpy as np
import pytest

from hmxnb import stats


@pytest.mark.parametrize(
    "b, c, method, expected",
    [
        (2, 8, "exact", 112 / 1024),  # 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * (1 + 10 + 45) / 1024
        (2, 8, "midp", 67 / 1024),  # 2 * (56 - 45 / 2) / 1024
        (2, 8, "chi2", math.erfc(math.sqrt(2.5 / 2))),  # (|2 - 8| - 1)^2 / 10 = 2.5; chi2(1) sf = erfc(sqrt(x / 2))
        (8, 2, "midp", 67 / 1024),  # symmetric in b and c
        (0, 6, "exact", 2 / 64),  # 2 * P(X = 0), X ~ Bin(6, 1/2)
        (5, 5, "exact", 1.0),  # balanced table: 2 * P(X <= 5) > 1, capped at 1
        (0, 0, "midp", 1.0),  # no discordant pairs: no evidence at all
        (1, 0, "chi2", 1.0),  # continuity correction: (|1 - 0| - 1)^2 = 0
    ],
)
def test_mcnemar_fixed_tables(b, c, method, expected):
    assert stats.mcnemar(b, c, method) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_unknown_method():
    with pytest.raises(ValueError, match="unknown McNemar method"):
        stats.mcnemar(1, 2, "fisher")


def test_mcnemar_counts():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    assert stats.mcnemar_counts(a, b) == (2, 1)  # items 1 and 4: A right B wrong; item 2: A wrong B right


@pytest.mark.parametrize(
    "new, ref, expected",
    [
        (0.55, 0.50, 10.0),  # 10% better
        (0.425, 0.50, -15.0),  # the paper's 15.0% degradation
        (-0.1, -0.2, 50.0),  # divides by |ref|: moving up from a negative value is +
        (0.3, 0.3, 0.0),  # no change
        (1.0, 0.0, math.nan),  # undefined against 0
        (math.nan, 0.5, math.nan),  # missing value
    ],
)
def test_relative_change(new, ref, expected):
    got = stats.relative_change(new, ref)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    "pvalues, expected",
    [
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),  # 0.005*4, 0.01*3, 0.03*2, max(0.04*1, 0.06)
        ([0.02, math.nan, 0.04], [0.04, math.nan, 0.04]),  # NaN left out: m = 2
        ([0.5, 0.6], [1.0, 1.0]),  # 0.5*2 = 1.0, then monotone: max(0.6, 1.0)
        ([0.03], [0.03]),  # one test: unchanged
    ],
)
def test_holm_fixed_pvalues(pvalues, expected):
    np.testing.assert_allclose(stats.holm(pvalues), expected, equal_nan=True)


@pytest.mark.parametrize(
    "diff, ci, p_adj, higher_is_better, expected",
    [
        (0.1, (0.02, 0.18), 0.01, True, "enhanced"),  # significant, up, higher is better
        (0.1, (0.02, 0.18), 0.01, False, "degraded"),  # same change on a lower-is-better metric (bias score)
        (-0.1, (-0.18, -0.02), 0.01, True, "degraded"),  # significant drop in accuracy
        (-0.1, (-0.18, -0.02), 0.01, False, "enhanced"),  # significant drop in bias
        (0.1, (0.02, 0.18), 0.05, True, "no significant change"),  # p_adj == alpha is not < alpha
        (0.1, (0.02, 0.18), 0.0499, True, "enhanced"),  # just under alpha
        (0.1, (0.0, 0.18), 0.01, True, "no significant change"),  # CI endpoint at 0 does not exclude 0
        (-0.1, (-0.18, 0.0), 0.01, True, "no significant change"),  # same on the upper side
        (0.1, (-0.01, 0.18), 0.001, True, "no significant change"),  # tiny p but CI covers 0
        (0.0, (0.0, 0.0), 1.0, True, "no significant change"),  # no change
        (math.nan, (math.nan, math.nan), math.nan, True, "no significant change"),  # nothing measured
    ],
)
def test_classify_thresholds(diff, ci, p_adj, higher_is_better, expected):
    assert stats.classify(diff, ci, p_adj, higher_is_better, alpha=0.05) == expected


def _paired(n, shift, seed):
    """Paired data with a known mean difference `shift` and strong item effects (pairing matters)."""
    rng = np.random.default_rng(seed)
    item = rng.normal(0, 2, n)
    return item + shift + rng.normal(0, 0.5, n), item + rng.normal(0, 0.5, n)


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_bootstrap_ci_covers_known_difference(method):
    a, b = _paired(200, 0.5, seed=1)
    ci = stats.paired_bootstrap_ci(a, b, n_resamples=1000, method=method, seed=0)
    assert ci.low < 0.5 < ci.high  # covers the true difference
    assert ci.low > 0  # and, pairing removing the item effect, excludes 0
    assert ci.distribution.size == 1000


def test_bootstrap_ci_coverage_near_nominal():
    # 60 independent data sets, true difference 0.5: a 95% interval should cover it about 57 times.
    hits = 0
    for rep in range(60):
        a, b = _paired(60, 0.5, seed=100 + rep)
        ci = stats.paired_bootstrap_ci(a, b, n_resamples=500, seed=rep)
        hits += ci.low < 0.5 < ci.high
    assert hits >= 51  # P(Bin(60, 0.95) <= 50) < 0.2%


def test_bootstrap_ci_is_seeded():
    a, b = _paired(50, 0.2, seed=3)
    first, again = (stats.paired_bootstrap_ci(a, b, n_resamples=300, seed=7)[:2] for _ in range(2))
    assert first == again


def test_bootstrap_ci_degenerate_falls_back_to_point():
    a, b = np.ones(20), np.zeros(20)  # every paired difference is exactly 1: BCa is undefined
    ci = stats.paired_bootstrap_ci(a, b, n_resamples=200)
    assert (ci.low, ci.high) == (1.0, 1.0)


def test_index_bootstrap_ci_ratio_statistic():
    # A ratio statistic per model: share of 'biased' answers among answered items; true difference 0.3.
    rng = np.random.default_rng(0)
    n = 300
    biased_a, biased_b = rng.random(n) < 0.7, rng.random(n) < 0.4
    ratio = lambda x, idx: x[idx].mean()  # noqa: E731
    ci = stats.index_bootstrap_ci(n, lambda idx: ratio(biased_a, idx) - ratio(biased_b, idx), n_resamples=500)
    assert ci.low < 0.3 < ci.high
    assert ci.low > 0


@pytest.mark.parametrize(
    "distribution, expected",
    [
        (np.linspace(0.1, 1.0, 999), 2 / 1000),  # all resamples > 0: smallest possible p, (0 + 1) / (999 + 1) * 2
        (np.linspace(-1.0, 1.0, 1000), 1.0),  # centred on 0: capped at 1
        ([np.nan, np.nan], math.nan),  # nothing to go on
    ],
)
def test_bootstrap_pvalue(distribution, expected):
    got = stats.bootstrap_pvalue(distribution)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


@pytest.mark.parametrize(
    "diffs, expected",
    [
        ([1, 1, 1, 1, 1], 2 / 32),  # exact: only the all-positive of 2^5 sign patterns is as extreme, each side
        ([1, -1, 1, -1], 1.0),  # mean 0: every pattern at least as extreme
        ([0, 0, 0], 1.0),  # no differences
        ([0.3], 1.0),  # one pair (bench_limit: 1): exact p of 2 sign patterns, where scipy raises ValueError
    ],
)
def test_sign_flip_exact(diffs, expected):
    assert stats.sign_flip_test(diffs, n_resamples=2000) == pytest.approx(expected)


@pytest.mark.parametrize(
    "diffs, expected",
    [
        ([1, 2, 3, 4, 5], 2 / 32),  # exact signed-rank: W- = 0 has probability 1/32 per side
        ([0, 0], 1.0),  # all zero: defined as 1
    ],
)
def test_wilcoxon(diffs, expected):
    assert stats.wilcoxon_test(diffs) == pytest.approx(expected)


@pytest.mark.parametrize("which", ["paired", "index"])
def test_large_sets_use_percentile_not_the_bca_jackknife(monkeypatch, which):
    # BCa's jackknife builds an n x n array (full Hub BBQ, ~58k records: tens of GB); above BCA_MAX_N items the
    # percentile interval is used instead, and the result says so.
    asked = []
    real = stats.stats.bootstrap
    monkeypatch.setattr(stats.stats, "bootstrap", lambda *a, **kw: asked.append(kw["method"]) or real(*a, **kw))
    n = 3001
    a, b = _paired(n, 0.5, seed=2)
    if which == "paired":
        ci = stats.paired_bootstrap_ci(a, b, n_resamples=200, method="BCa")
    else:
        ci = stats.index_bootstrap_ci(n, lambda idx: a[idx].mean() - b[idx].mean(), n_resamples=200, method="BCa")
    assert asked == ["percentile"] and ci.method == "percentile"
    assert ci.low < 0.5 < ci.high


def test_small_sets_keep_bca_and_say_so():
    a, b = _paired(200, 0.5, seed=1)
    assert stats.paired_bootstrap_ci(a, b, n_resamples=300, method="BCa").method == "BCa"
    assert stats.paired_bootstrap_ci(np.ones(20), np.zeros(20), n_resamples=200).method == "point"  # degenerate
