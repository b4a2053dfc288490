"""Power and planning: the formulas against statsmodels and against the exact power of the test they plan for."""

import math

import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.power import NormalIndPower

from experiments_app.stats import power


def _exact_mcnemar_power(n, up, down, alpha=0.05):
    """Exact power of the two-sided exact McNemar test with n tasks, P(fail→pass) = up, P(pass→fail) = down."""
    discordance = up + down
    total = 0.0
    for discordant in range(n + 1):
        weight = scipy_stats.binom.pmf(discordant, n, discordance)
        if weight < 1e-14 or discordant == 0:
            continue
        # Reject when the two-sided exact binomial p < alpha: the rejection region is symmetric.
        critical = scipy_stats.binom.ppf(alpha / 2, discordant, 0.5)
        while critical >= 0 and 2 * scipy_stats.binom.cdf(critical, discordant, 0.5) >= alpha:
            critical -= 1
        if critical < 0:
            continue
        share = up / discordance
        total += weight * (
            scipy_stats.binom.cdf(critical, discordant, share) + scipy_stats.binom.sf(discordant - critical - 1, discordant, share)
        )
    return total


@pytest.mark.parametrize(("delta", "discordance"), [(0.1, 0.3), (0.05, 0.2), (0.15, 0.25), (0.08, 0.12)])
def test_connor_sample_size_gives_about_80_percent_exact_power(delta, discordance):
    # Connor (1987), Biometrics 43:207-211: an approximation to the exact test's power.
    n = power.tasks_needed(delta, k=1, discordance=discordance)
    achieved = _exact_mcnemar_power(n, (discordance + delta) / 2, (discordance - delta) / 2)
    assert 0.75 <= achieved <= 0.86


@pytest.mark.parametrize(("delta", "var_d"), [(0.05, 0.1), (0.02, 0.03), (0.1, 0.2)])
def test_variance_form_matches_statsmodels_one_sample_normal_power(delta, var_d):
    reference = NormalIndPower().solve_power(effect_size=delta / math.sqrt(var_d), alpha=0.05, power=0.8, ratio=0)
    # statsmodels also counts the (negligible) chance of rejecting in the wrong tail, hence 1e-4 and not 1e-9.
    assert power.variance_tasks(delta, var_d) == pytest.approx(reference, rel=1e-4)
    assert power.tasks_needed(delta, k=3, var_d=var_d) == math.ceil(reference)


@pytest.mark.parametrize(("k", "noise"), [(1, {"discordance": 0.2}), (1, {"discordance": 0.0}), (3, {"var_d": 0.05}), (5, {"var_d": 0.0})])
@pytest.mark.parametrize("n", [30, 100, 1000])
def test_mde_is_the_difference_the_tasks_detect(k, noise, n):
    smallest = power.mde(n, k=k, **noise)
    assert 0 < smallest <= 1
    assert power.tasks_needed(smallest * 1.0001, k=k, **noise) <= n
    assert power.tasks_needed(smallest * 0.98, k=k, **noise) > n


def test_mde_floor_keeps_a_comparison_without_discordance_honest():
    # No discordant task among 100 does not mean any difference is detectable: δ needs discordance ≥ δ.
    assert power.mde(100, k=1, discordance=0.0) == pytest.approx(0.078, abs=0.003)


def test_tasks_needed_is_none_without_a_difference():
    assert power.tasks_needed(0.0, k=1, discordance=0.2) is None


def test_plan_without_measurement_matches_connor_under_independence():
    planned = power.plan(0.7, 5, k=1)
    rate, other = 0.7, 0.75
    discordance = rate * (1 - other) + other * (1 - rate)
    assert planned["tasks_needed"] == math.ceil(power.connor_tasks(0.05, discordance))
    assert planned["noise"] == "assumed"


def test_plan_needs_fewer_tasks_with_more_repetitions_and_measured_noise():
    one = power.plan(0.6, 5, k=1)["tasks_needed"]
    five = power.plan(0.6, 5, k=5)["tasks_needed"]
    measured = power.plan(0.6, 5, k=5, measured={"within_var": 0.1})["tasks_needed"]
    assert measured < five < one
    assert power.plan(0.6, 5, k=5, measured={"within_var": 0.1})["tests_needed"] == measured * 5


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError):
        power.plan(1.2, 5)
    with pytest.raises(ValueError):
        power.plan(0.5, 0)
    with pytest.raises(ValueError):
        power.plan(0.5, 5, k=0)
    with pytest.raises(ValueError):
        power.plan(0.5, 5, measured={})
