"""`compare`: one variant run against the baseline run, checked against the building blocks' references."""

import math
from fractions import Fraction

import numpy
import pytest
from scipy import stats as scipy_stats

from experiments_app import stats
from experiments_app.stats import comparison, intervals


def _summary(passed, n, errored=0, identical=False):
    return {"passed": passed, "n": n, "errored": errored, "identical": identical}


def _runs(seed, n, k, shift=0.0):
    rng = numpy.random.default_rng(seed)
    rates = rng.beta(2, 2, n)
    variant = {f"t{i}": _summary(int(rng.binomial(k, min(1.0, rate + shift))), k) for i, rate in enumerate(rates)}
    baseline = {f"t{i}": _summary(int(rng.binomial(k, rate)), k) for i, rate in enumerate(rates)}
    return variant, baseline


def _differences(variant, baseline):
    return [
        Fraction(variant[t]["passed"], variant[t]["n"]) - Fraction(baseline[t]["passed"], baseline[t]["n"])
        for t in sorted(variant.keys() & baseline.keys())
    ]


def test_single_runs_keep_mcnemar_and_the_outcome_pairing():
    new = {"a": True, "b": True, "c": False, "d": False, "n": True, "e": True, "f": True}
    old = {"a": False, "b": True, "c": True, "d": False, "o": False, "e": False, "f": False}
    result = stats.compare({t: _summary(int(p), 1) for t, p in new.items()}, {t: _summary(int(p), 1) for t, p in old.items()})
    paired = stats.paired_outcomes(new, old)
    for key in ("common", "new_only", "old_only", "improved", "regressed", "b", "c", "p_value"):
        assert result[key] == paired[key]
    assert result["test"] == "mcnemar_exact"
    # Cells: both pass (b), first only (a, e, f), second only (c), neither (d).
    low, high = stats.newcombe_paired_interval(1, 3, 1, 1)
    assert (result["delta_ci_low"], result["delta_ci_high"]) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert result["delta_pp"] == pytest.approx(100 * 2 / 6)
    assert result["ci_method"] == "newcombe"
    assert result["pass_at_k"] is None and result["pass_hat_k"] is None


@pytest.mark.parametrize("seed", range(3))
def test_repetitions_use_the_sign_flip_test_and_a_t_interval_on_task_differences(seed):
    variant, baseline = _runs(seed, 40, 3, shift=0.1)
    result = stats.compare(variant, baseline, alpha=0.1)
    differences = numpy.array([float(d) for d in _differences(variant, baseline)])
    # scipy's permutation_test on the task differences (randomized with 2·10⁵ resamples, hence the tolerance).
    reference = scipy_stats.permutation_test(
        (differences, numpy.zeros_like(differences)),
        lambda a, b: numpy.mean(a - b),
        permutation_type="samples",
        n_resamples=200_000,
        random_state=seed,
    ).pvalue
    assert result["p_value"] == pytest.approx(reference, abs=0.004 + 0.05 * reference)
    interval = scipy_stats.ttest_1samp(differences, 0).confidence_interval(0.9)
    assert result["ci_method"] == "t"
    assert result["delta_ci_low"] == pytest.approx(100 * interval.low, rel=1e-9)
    assert result["delta_ci_high"] == pytest.approx(100 * interval.high, rel=1e-9)
    assert result["delta_pp"] == pytest.approx(100 * differences.mean(), rel=1e-12)
    assert result["se"] == pytest.approx(differences.std(ddof=1) / math.sqrt(40), rel=1e-9)


def test_few_tasks_get_the_hull_of_the_t_and_bootstrap_intervals():
    variant, baseline = _runs(3, 12, 5, shift=0.1)
    result = stats.compare(variant, baseline)
    differences = [float(d) for d in _differences(variant, baseline)]
    boot_low, boot_high = intervals.bootstrap_interval(differences)
    t = scipy_stats.ttest_1samp(differences, 0).confidence_interval(0.95)
    assert result["ci_method"] == "t+bootstrap"
    assert result["delta_ci_low"] == pytest.approx(100 * min(boot_low, t.low), rel=1e-9)
    assert result["delta_ci_high"] == pytest.approx(100 * max(boot_high, t.high), rel=1e-9)


def test_variance_split_matches_its_definition():
    variant, baseline = _runs(4, 200, 4)
    result = stats.compare(variant, baseline)
    tasks = sorted(variant)
    v = numpy.array([variant[t]["passed"] / 4 for t in tasks])
    b = numpy.array([baseline[t]["passed"] / 4 for t in tasks])
    within = v * (1 - v) * 4 / 3 + b * (1 - b) * 4 / 3  # unbiased per-repetition variances
    total = numpy.var(v - b, ddof=1)
    assert result["within_var"] == pytest.approx(within.mean(), rel=1e-9)
    assert result["between_var"] == pytest.approx(max(0.0, total - within.mean() / 4), rel=1e-9, abs=1e-12)
    assert result["se_floor"] == pytest.approx(math.sqrt(result["between_var"] / 200), rel=1e-9)
    assert result["se_floor"] <= result["se"]


def test_improved_and_regressed_need_a_change_beyond_the_tasks_own_noise():
    variant = {"up": _summary(5, 5), "flaky_up": _summary(3, 5), "down": _summary(0, 5), "same": _summary(2, 5), "edge": _summary(4, 5)}
    baseline = {"up": _summary(0, 5), "flaky_up": _summary(1, 5), "down": _summary(4, 5), "same": _summary(2, 5), "edge": _summary(0, 5)}
    result = stats.compare(variant, baseline)
    # One-sided Fisher: 5/5 vs 0/5 p = 1/252, 4/5 vs 0/5 p = 5/210 · … = 0.024, 3/5 vs 1/5 p = 0.26, 0/5 vs 4/5 p = 0.024.
    assert result["improved"] == ["edge", "up"]
    assert result["regressed"] == ["down"]
    assert result["b"] == 3 and result["c"] == 1


def test_unequal_repetitions_use_task_fractions_without_crashing():
    variant = {"a": _summary(2, 3), "b": _summary(1, 2), "c": _summary(1, 1), "d": _summary(0, 4), "e": _summary(3, 3)}
    baseline = {"a": _summary(1, 2), "b": _summary(0, 3), "c": _summary(0, 1), "d": _summary(1, 4), "e": _summary(2, 5)}
    result = stats.compare(variant, baseline)
    differences = [float(d) for d in _differences(variant, baseline)]
    assert result["delta_pp"] == pytest.approx(100 * numpy.mean(differences))
    assert result["p_value"] == pytest.approx(stats.sign_flip_p_value(_differences(variant, baseline))["p_value"])
    assert "c" in result["improved"]  # ran once on both sides: fail→pass


def test_labels_flaky_count_and_pass_at_k_describe_the_variant():
    variant = {"a": _summary(3, 3), "b": _summary(1, 3), "c": _summary(0, 3), "d": _summary(2, 3)}
    baseline = {"a": _summary(3, 3), "b": _summary(3, 3), "c": _summary(0, 3)}
    result = stats.compare(variant, baseline)
    assert result["labels"] == {"a": "stable_pass", "b": "flaky", "c": "stable_fail", "d": "flaky"}
    assert result["flaky"] == 2
    assert result["pass_at_k"] == pytest.approx(3 / 4)
    assert result["pass_hat_k"] == pytest.approx(1 / 4)
    assert (result["common"], result["new_only"], result["old_only"]) == (3, 1, 0)


def test_error_rate_mismatch_is_flagged_below_one_in_a_thousand():
    variant = {f"t{i}": _summary(0, 1, errored=1 if i < 30 else 0) for i in range(100)}
    baseline = {f"t{i}": _summary(0, 1) for i in range(100)}
    result = stats.compare(variant, baseline)
    assert [warning["code"] for warning in result["warnings"]] == ["error_rate_mismatch"]
    assert "30.0% of the variant's vs 0.0% of the baseline's" in result["warnings"][0]["detail"]
    assert scipy_stats.binomtest(0, 30, 0.5).pvalue < 0.001


def test_a_few_more_errors_are_not_a_mismatch():
    variant = {f"t{i}": _summary(0, 1, errored=1 if i < 5 else 0) for i in range(100)}
    baseline = {f"t{i}": _summary(0, 1, errored=1 if i in (50, 51) else 0) for i in range(100)}
    assert stats.compare(variant, baseline)["warnings"] == []


def test_identical_repetitions_are_flagged_when_most_tasks_repeat_byte_for_byte():
    variant = {f"t{i}": _summary(3, 3, identical=i < 7) for i in range(10)}
    baseline = {f"t{i}": _summary(3, 3, identical=False) for i in range(10)}
    warnings = stats.compare(variant, baseline)["warnings"]
    assert [warning["code"] for warning in warnings] == ["identical_repetitions"]
    assert "the variant's (70.0% of its tasks)" in warnings[0]["detail"]


def test_tasks_needed_is_null_when_significant_and_kept_for_holm():
    variant, baseline = _runs(8, 300, 3, shift=0.2)
    result = stats.compare(variant, baseline)
    assert result["p_value"] < 0.05
    assert result["tasks_needed"] is None
    assert result["tasks_for_delta"] is not None and result["tasks_for_delta"] < 300


def test_a_non_significant_comparison_reports_what_it_could_detect():
    variant, baseline = _runs(9, 100, 3, shift=0.02)
    result = stats.compare(variant, baseline)
    assert result["p_value"] >= 0.05
    assert result["tasks_needed"] > 100
    assert 0 < result["mde_pp"] < 100
    assert result["mde_pp"] == pytest.approx(100 * stats.mde(100, k=3, var_d=result["var_d"]))


def test_without_common_tasks_there_is_no_comparison():
    result = stats.compare({"a": _summary(1, 1)}, {"b": _summary(0, 1)})
    assert result["common"] == 0
    assert result["p_value"] is None and result["delta_pp"] is None


def test_large_runs_fall_back_to_monte_carlo_with_at_least_10000_permutations():
    variant, baseline = _runs(10, 20_000, 5)
    result = stats.compare(variant, baseline)
    assert result["test"] == "sign_flip_monte_carlo"
    assert 0 < result["p_value"] <= 1


def test_compare_rejects_alpha_outside_zero_one():
    with pytest.raises(ValueError):
        comparison.compare({}, {}, alpha=0)
