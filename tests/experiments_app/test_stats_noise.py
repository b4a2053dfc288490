"""The control's noise floor: flip rate and the split-half A/A comparison."""

import pytest

from experiments_app import stats


def _summary(passed, n):
    return {"passed": passed, "n": n, "errored": 0, "identical": False}


def test_flip_rate_counts_majority_flips_over_common_tasks():
    control = {"a": _summary(3, 3), "b": _summary(1, 3), "c": _summary(2, 3), "x": _summary(0, 3)}
    baseline = {"a": _summary(2, 3), "b": _summary(2, 3), "c": _summary(0, 3)}
    assert stats.flip_rate(control, baseline) == pytest.approx(2 / 3)


def test_split_halves_use_equal_halves_in_repetition_order():
    first, second = stats.split_halves({"a": [True, False, True], "b": [True, True, False, False], "c": [True]})
    assert first == {"a": _summary(1, 1), "b": _summary(2, 2)}
    assert second == {"a": _summary(0, 1), "b": _summary(0, 2)}


def test_split_half_compares_the_baseline_with_itself():
    outcomes = {f"t{i}": [i % 3 == 0, i % 4 == 0] for i in range(60)}
    result = stats.split_half(outcomes)
    b = sum(1 for i in range(60) if i % 4 == 0 and i % 3 != 0)
    c = sum(1 for i in range(60) if i % 3 == 0 and i % 4 != 0)
    assert (result["b"], result["c"]) == (b, c)
    assert result["p_value"] == stats.mcnemar_exact(b, c)
    assert result["flip_rate"] == pytest.approx((b + c) / 60)


def test_noise_floor_without_repetitions_has_no_split_half():
    control = {"a": _summary(1, 1)}
    floor = stats.noise_floor(control, {"a": _summary(0, 1)}, {"a": [False]})
    assert floor == {"flip_rate": 1.0, "split_half": None}
