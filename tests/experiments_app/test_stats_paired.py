"""Paired intervals and tests against published values and scipy (the references are cited per test)."""

import math
from fractions import Fraction

import numpy
import pytest
from scipy import stats as scipy_stats

from experiments_app.stats import intervals, permutation, proportions

# Newcombe (1998), "Improved confidence intervals for the difference between binomial proportions
# based on paired data", Statistics in Medicine 17:2635-2650, Table III, method 10 (4 d.p.).
# Cells: both positive, first only, second only, neither.
NEWCOMBE_TABLE_III_METHOD_10 = [
    ((36, 12, 2, 0), (0.0569, 0.3404)),
    ((20, 12, 2, 16), (0.0562, 0.3292)),
    ((18, 12, 2, 18), (0.0562, 0.3290)),
    ((36, 14, 0, 0), (0.1528, 0.4167)),
    ((35, 14, 0, 1), (0.1461, 0.4175)),
    ((18, 14, 0, 18), (0.1441, 0.3963)),
    ((2, 97, 1, 0), (0.8721, 0.9854)),
    ((1, 97, 1, 1), (0.8736, 0.9850)),
    ((0, 29, 1, 0), (0.6666, 0.9882)),
    ((2, 98, 0, 0), (0.9178, 0.9945)),
    ((1, 98, 0, 1), (0.9171, 0.9916)),
    ((0, 30, 0, 0), (0.8395, 1.0)),
    ((54, 0, 0, 0), (-0.0664, 0.0664)),
]


@pytest.mark.parametrize(("cells", "expected"), NEWCOMBE_TABLE_III_METHOD_10)
def test_newcombe_method_10_matches_the_published_table(cells, expected):
    low, high = proportions.newcombe_paired_interval(*cells)
    assert (low, high) == (pytest.approx(expected[0], abs=1e-4), pytest.approx(expected[1], abs=1e-4))


def test_newcombe_matches_fagerland_lydersen_laake_worked_example():
    # Fagerland, Lydersen & Laake (2017), Statistical Analysis of Contingency Tables, ch. 8, Cavo et al. (2012):
    # complete response before/after consolidation therapy, cells 59, 6, 16, 80: -0.0621 (95% CI -0.1186 to -0.0046).
    low, high = proportions.newcombe_paired_interval(59, 6, 16, 80)
    assert (low, high) == (pytest.approx(-0.1186, abs=1e-4), pytest.approx(-0.0046, abs=1e-4))


def test_newcombe_widens_with_confidence():
    narrow = proportions.newcombe_paired_interval(20, 12, 2, 16, alpha=0.1)
    wide = proportions.newcombe_paired_interval(20, 12, 2, 16, alpha=0.01)
    assert wide[0] < narrow[0] < 0.2 < narrow[1] < wide[1]


def test_newcombe_of_no_pairs_is_undefined():
    assert proportions.newcombe_paired_interval(0, 0, 0, 0) == (None, None)


@pytest.mark.parametrize(
    ("a", "n_a", "b", "n_b"), [(3, 3, 0, 3), (5, 5, 2, 5), (4, 5, 1, 5), (0, 5, 5, 5), (2, 4, 3, 6), (1, 1, 0, 1), (7, 10, 2, 3)]
)
def test_fisher_one_sided_matches_scipy(a, n_a, b, n_b):
    table = [[a, n_a - a], [b, n_b - b]]
    assert proportions.fisher_one_sided(a, n_a, b, n_b, True) == pytest.approx(
        scipy_stats.fisher_exact(table, alternative="greater").pvalue, rel=1e-12
    )
    assert proportions.fisher_one_sided(a, n_a, b, n_b, False) == pytest.approx(
        scipy_stats.fisher_exact(table, alternative="less").pvalue, rel=1e-12
    )


def _scipy_sign_flip(differences):
    """scipy's paired permutation test, exhaustive: permutation_type="samples" swaps each pair."""
    x = numpy.array([float(d) for d in differences])
    result = scipy_stats.permutation_test(
        (x, numpy.zeros_like(x)), lambda a, b: numpy.mean(a - b), permutation_type="samples", n_resamples=numpy.inf
    )
    return result.pvalue


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_sign_flip_exact_matches_scipy_permutation_test(seed, k):
    rng = numpy.random.default_rng(seed)
    n = 14
    variant, baseline = rng.binomial(k, 0.65, n), rng.binomial(k, 0.5, n)
    differences = [Fraction(int(v) - int(b), k) for v, b in zip(variant, baseline, strict=True)]
    got = permutation.sign_flip_p_value(differences)
    assert got["method"] == "exact"
    assert got["p_value"] == pytest.approx(_scipy_sign_flip(differences), rel=1e-9)


def test_sign_flip_with_unequal_repetitions_matches_scipy():
    differences = [
        Fraction(2, 3) - Fraction(1, 2),
        Fraction(1, 1) - Fraction(1, 4),
        Fraction(0),
        Fraction(1, 3),
        Fraction(-1, 2),
        Fraction(3, 5) - 0,
    ]
    differences += [Fraction(1, 5), Fraction(2, 3), Fraction(1, 2), Fraction(-1, 3), Fraction(1, 6), Fraction(3, 4)]
    assert permutation.sign_flip_p_value(differences)["p_value"] == pytest.approx(_scipy_sign_flip(differences), rel=1e-9)


@pytest.mark.parametrize(("b", "c"), [(1, 7), (0, 5), (3, 12), (10, 10), (40, 61)])
def test_sign_flip_on_single_outcomes_is_exact_mcnemar(b, c):
    differences = [1] * b + [-1] * c + [0] * 17
    assert permutation.sign_flip_p_value(differences)["p_value"] == pytest.approx(scipy_stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_sign_flip_monte_carlo_agrees_with_the_exact_distribution():
    rng = numpy.random.default_rng(7)
    variant, baseline = rng.binomial(4, 0.55, 400), rng.binomial(4, 0.5, 400)
    differences = [Fraction(int(v) - int(b), 4) for v, b in zip(variant, baseline, strict=True)]
    exact = permutation.sign_flip_p_value(differences)
    sampled = permutation.sign_flip_p_value(differences, exact_budget=0)
    assert exact["method"] == "exact" and sampled["method"] == "monte_carlo"
    assert sampled["permutations"] >= 10_000
    # 10,000 permutations: the Monte Carlo p-value is within 4 binomial standard errors of the exact one.
    p = exact["p_value"]
    assert abs(sampled["p_value"] - p) < 4 * math.sqrt(p * (1 - p) / 10_000) + 1e-4


def test_sign_flip_monte_carlo_is_reproducible():
    differences = [Fraction(1, 3)] * 300 + [Fraction(-2, 3)] * 120 + [Fraction(1, 1)] * 40
    first = permutation.sign_flip_p_value(differences, exact_budget=0)
    assert first == permutation.sign_flip_p_value(differences, exact_budget=0)


def test_sign_flip_without_difference_is_one():
    assert permutation.sign_flip_p_value([0, 0, Fraction(1, 3), Fraction(-1, 3)])["p_value"] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_t_interval_matches_scipy_ttest(seed):
    values = list(numpy.random.default_rng(seed).normal(0.1, 0.3, 20 + seed))
    n, mean, variance = intervals.mean_and_variance(values)
    reference = scipy_stats.ttest_1samp(values, 0).confidence_interval(0.9)
    low, high = intervals.t_interval(mean, variance, n, alpha=0.1)
    assert (low, high) == (pytest.approx(reference.low, rel=1e-9), pytest.approx(reference.high, rel=1e-9))


def test_bootstrap_interval_matches_scipy_percentile_bootstrap_at_the_expanded_level():
    # Hesterberg (2015) expanded percentile: the percentile interval at level 1 − α'.
    values = list(numpy.random.default_rng(11).beta(0.5, 2.0, 20))
    level = intervals.expanded_alpha(len(values), 0.05)
    assert 0 < level < 0.05
    reference = scipy_stats.bootstrap(
        (values,), numpy.mean, confidence_level=1 - level, method="percentile", n_resamples=200_000, random_state=1
    )
    low, high = intervals.bootstrap_interval(values)
    width = reference.confidence_interval.high - reference.confidence_interval.low
    # 4,000 resamples: each bound within 5% of the interval's width of scipy's 200,000-resample bound.
    assert low == pytest.approx(reference.confidence_interval.low, abs=0.05 * width)
    assert high == pytest.approx(reference.confidence_interval.high, abs=0.05 * width)


def test_expanded_level_matches_the_t_quantile():
    # √(n/(n−1)) · t_{0.975, n−1} is the normal quantile of 1 − α'/2.
    n = 12
    level = intervals.expanded_alpha(n, 0.05)
    assert scipy_stats.norm.ppf(1 - level / 2) == pytest.approx(math.sqrt(n / (n - 1)) * scipy_stats.t.ppf(0.975, n - 1), rel=1e-9)
