"""Seeded simulations with CI-sized counts (bench/stats_simulations.py runs the full counts).

Each check is a binomial test on the simulated rate at a 1e-4 level: a correct method
fails one by chance about once in 10,000 runs, a wrong one (a too-narrow interval, an
inflated false-positive rate) fails it; the "wrong method" checks below show that the same
checks do catch inflation.
"""

import numpy
import pytest
from scipy.stats import binomtest

from bench.stats_simulations import ALPHA, draw_outcomes, draw_rates, holm_experiment, live_experiment, one_experiment
from experiments_app import stats

LEVEL = 1e-4
CELLS = [(n, k) for k in (1, 3, 5) for n in (30, 100, 300)]


def _not_above(hits, total, rate):
    return binomtest(hits, total, rate, alternative="greater").pvalue > LEVEL


def _not_below(hits, total, rate):
    return binomtest(hits, total, rate, alternative="less").pvalue > LEVEL


@pytest.mark.parametrize(("n", "k"), CELLS)
def test_aa_false_positive_rate_and_coverage(n, k):
    rows = [one_experiment(seed, n, k, "aa") for seed in range(10_000 * n + k, 10_000 * n + k + 400)]
    false_positives = sum(1 for row in rows if row[0] < ALPHA)
    covered = sum(1 for row in rows if row[1])
    assert _not_above(false_positives, len(rows), ALPHA) and _not_below(false_positives, len(rows), ALPHA)
    assert _not_below(covered, len(rows), 1 - ALPHA)


@pytest.mark.parametrize(("n", "k"), [(100, 3), (300, 5), (30, 5)])
def test_task_level_test_holds_where_pairing_per_repetition_inflates(n, k):
    # The variant helps some tasks and hurts as many: no average difference, but the task effects
    # make a task's repetitions agree with each other, which per-repetition pairing ignores.
    rows = [one_experiment(seed, n, k, "mixed_null") for seed in range(300)]
    ours = sum(1 for row in rows if row[0] < ALPHA)
    wrong = sum(1 for row in rows if row[2] < ALPHA)
    assert _not_above(ours, len(rows), ALPHA)
    assert not _not_above(wrong, len(rows), ALPHA)


@pytest.mark.parametrize(("n", "k"), [(100, 1), (100, 3), (300, 5)])
def test_interval_covers_a_true_effect(n, k):
    rows = [one_experiment(seed, n, k, "effect") for seed in range(300)]
    assert _not_below(sum(1 for row in rows if row[1]), len(rows), 1 - ALPHA)


def test_holm_keeps_the_family_wise_error_with_ten_null_variants():
    rows = [holm_experiment(seed, 60, 3) for seed in range(200)]
    adjusted = sum(1 for row in rows if row[0])
    raw = sum(1 for row in rows if row[1])
    assert _not_above(adjusted, len(rows), ALPHA)
    # Without the adjustment the same experiments do show the inflation the check is there to catch.
    assert not _not_above(raw, len(rows), ALPHA)


@pytest.mark.parametrize(("method", "k"), [("betting", 1), ("betting", 3), ("betting", 5), ("mixture", 1)])
def test_live_monitoring_looked_at_after_every_task_keeps_the_false_positive_rate(method, k):
    rows = [live_experiment(seed, 100, k, "aa", method) for seed in range(300)]
    assert _not_above(sum(1 for row in rows if row[0]), len(rows), ALPHA)


def test_peeking_at_the_fixed_sample_p_value_after_every_task_inflates_it():
    # The naive alternative to a confidence sequence: stop as soon as McNemar's p < alpha.
    false_positives = 0
    for seed in range(300):
        rng = numpy.random.default_rng(seed)
        variant_rates, baseline_rates, _ = draw_rates(rng, 300, "aa")
        variant, baseline = draw_outcomes(rng, variant_rates, baseline_rates, 1)
        up = numpy.cumsum(variant[:, 0] & ~baseline[:, 0])
        down = numpy.cumsum(~variant[:, 0] & baseline[:, 0])
        if any(stats.mcnemar_exact(int(b), int(c)) < ALPHA for b, c in zip(up, down, strict=True)):
            false_positives += 1
    assert not _not_above(false_positives, 300, ALPHA)


def test_stopping_when_decided_saves_tests_with_a_true_effect():
    rows = [live_experiment(seed, 300, 3, "effect") for seed in range(100)]
    better = sum(1 for row in rows if row[0] == "better")
    worse = sum(1 for row in rows if row[0] == "worse")
    saved = 1 - sum(row[1] for row in rows) / (300 * len(rows))
    assert worse == 0
    assert better >= 90
    assert saved > 0.3
