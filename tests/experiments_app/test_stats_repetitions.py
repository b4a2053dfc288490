"""Repetitions: labels, pass@k / pass^k against the definition by brute force, the noise of one run."""

import itertools

import numpy
import pytest

from experiments_app.stats import repetitions


def _brute_force(passed, n, k):
    """Chen et al. (2021), "Evaluating large language models trained on code", §2.1: pass@k is the
    chance that a random k-subset of the n samples holds a pass; pass^k that all of it passes."""
    samples = [True] * passed + [False] * (n - passed)
    subsets = list(itertools.combinations(range(n), k))
    at = sum(1 for subset in subsets if any(samples[i] for i in subset)) / len(subsets)
    hat = sum(1 for subset in subsets if all(samples[i] for i in subset)) / len(subsets)
    return at, hat


@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 2), (3, 2), (5, 3), (5, 5), (8, 4), (10, 1)])
def test_pass_at_k_and_pass_hat_k_match_the_definition(n, k):
    for passed in range(n + 1):
        at, hat = _brute_force(passed, n, k)
        assert repetitions.pass_at_k(passed, n, k) == pytest.approx(at, abs=1e-12)
        assert repetitions.pass_hat_k(passed, n, k) == pytest.approx(hat, abs=1e-12)


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError):
        repetitions.pass_at_k(1, 2, 3)


def test_run_pass_at_k_averages_tasks_with_enough_repetitions():
    summaries = [
        repetitions.task_summary(3, 3),
        repetitions.task_summary(0, 3),
        repetitions.task_summary(1, 3),
        repetitions.task_summary(1, 1),
    ]
    at, hat = repetitions.run_pass_at_k(summaries, 3)
    assert at == pytest.approx((1 + 0 + 1) / 3)
    assert hat == pytest.approx((1 + 0 + 0) / 3)


def test_run_pass_at_k_is_none_without_repetitions():
    assert repetitions.run_pass_at_k([repetitions.task_summary(1, 1)], 1) == (None, None)


@pytest.mark.parametrize(
    ("passed", "n", "label"),
    [(3, 3, "stable_pass"), (0, 3, "stable_fail"), (1, 3, "flaky"), (1, 1, "stable_pass"), (0, 1, "stable_fail"), (0, 0, None)],
)
def test_task_label(passed, n, label):
    assert repetitions.task_label({"passed": passed, "n": n, "errored": 0, "identical": False}) == label


def test_summarize_tasks_orders_repetitions_and_spots_identical_output():
    rows = [
        ("a", 2, False, False, "x"),
        ("a", 1, True, False, "x"),
        ("b", 1, True, False, "y"),
        ("b", 2, True, False, "z"),
        ("c", 1, False, True, None),
        ("c", 2, False, True, None),
        ("d", 1, True, False, "w"),
    ]
    summaries, outcomes = repetitions.summarize_tasks(rows)
    assert summaries == {
        "a": {"passed": 1, "n": 2, "errored": 0, "identical": True},
        "b": {"passed": 2, "n": 2, "errored": 0, "identical": False},
        "c": {"passed": 0, "n": 2, "errored": 2, "identical": False},
        "d": {"passed": 1, "n": 1, "errored": 0, "identical": False},
    }
    assert outcomes == {"a": [True, False], "b": [True, True], "c": [False, False]}  # d has one repetition: nothing to split


def test_summarize_tasks_a_task_at_a_time_gives_the_same_and_shares_equal_summaries():
    # What a run's close does: its tests ordered by task, summarized without collecting them.
    rows = [
        ("a", 1, True, False, "x"),
        ("a", 2, False, False, "x"),
        ("b", 2, True, False, "z"),
        ("b", 1, True, False, "y"),
        ("c", 1, False, True, None),
        ("d", 1, True, False, "w"),
        ("e", 1, True, False, "v"),
    ]
    summaries, outcomes = repetitions.summarize_tasks(iter(rows), grouped=True)
    assert (summaries, outcomes) == repetitions.summarize_tasks(list(reversed(rows)))
    assert outcomes["b"] == [True, True]  # repetitions in order even when the rows are not
    assert summaries["d"] is summaries["e"] and "d" not in outcomes
    assert summaries["a"] is not summaries["d"]


def test_summarize_tasks_refuses_a_task_split_when_told_they_are_grouped():
    rows = [("a", 1, True, False, None), ("b", 1, True, False, None), ("a", 2, True, False, None)]
    with pytest.raises(ValueError, match="task a"):
        repetitions.summarize_tasks(rows, grouped=True)


def test_task_summary_rejects_impossible_counts():
    with pytest.raises(ValueError):
        repetitions.task_summary(3, 2)
    with pytest.raises(ValueError):
        repetitions.task_summary(2, 3, errored=2)


def test_baseline_noise_recovers_simulated_between_and_within_variance():
    rng = numpy.random.default_rng(5)
    rates = rng.beta(2, 2, 20_000)
    passes = rng.binomial(5, rates)
    summaries = {i: repetitions.task_summary(int(p), 5) for i, p in enumerate(passes)}
    noise = repetitions.baseline_noise(summaries)
    # Beta(2, 2): variance 1/20 between tasks; E[p(1 − p)] = 1/4 − 1/20 − ... = 0.2 within.
    assert noise["between_var"] == pytest.approx(1 / 20, abs=0.004)
    assert noise["within_var"] == pytest.approx(0.2, abs=0.004)
    assert noise["k"] == 5 and noise["tasks"] == 20_000
