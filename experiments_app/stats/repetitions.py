"""Per-task summaries of repeated tests: labels, pass@k and pass^k, the noise of one run.

A task summary is a plain dict {"passed": int, "n": int, "errored": int, "identical": bool}:
n repetitions ran (skipped ones are left out), `passed` of them passed, `errored` of them
errored (errored counts as not passed), and `identical` says every repetition returned
byte-identical output (only meaningful for n ≥ 2).
"""

import itertools
import math
import operator

STABLE_PASS, STABLE_FAIL, FLAKY = "stable_pass", "stable_fail", "flaky"


def task_summary(passed, n, errored=0, identical=False):
    if not 0 <= passed <= n or not 0 <= errored <= n - passed:
        raise ValueError(f"a task cannot have {passed} passed and {errored} errored of {n} repetitions")
    return {"passed": passed, "n": n, "errored": errored, "identical": bool(identical) and n >= 2}


def summarize_tasks(rows, *, grouped=False):
    """Per-task summaries and per-repetition outcomes from one run's tests.

    rows: iterable of (task_id, repetition, status_passed: bool, errored: bool, output_digest or None),
    one per test that ran (not skipped). Returns (summaries {task_id: summary},
    outcomes {task_id: [passed of repetition 1, 2, …]} of the tasks with two or more
    repetitions), the second being what the split-half A/A comparison reads (it leaves out a task
    of one repetition: a run without repetitions keeps no such dict of all its tasks).

    With `grouped`, the rows come with each task's tests together (ordered by task): they are
    summarized a task at a time, never collected, so a run of any size is read in one pass.
    Either way equal summaries (and equal outcome lists) are one shared object: a run's
    100,000 tasks take a handful of them, not 100,000 dicts. They are never changed in place.
    """
    if grouped:
        groups = itertools.groupby(rows, key=operator.itemgetter(0))
    else:
        collected = {}
        for row in rows:
            collected.setdefault(row[0], []).append(row)
        groups = collected.items()
    shared, summaries, outcomes = {}, {}, {}
    for task_id, tests in groups:
        if task_id in summaries:
            raise ValueError(f"the rows of task {task_id} are not together (grouped=True needs them ordered by task)")
        tests = sorted(tests, key=operator.itemgetter(1))
        digests = {test[4] for test in tests}
        identical = len(tests) >= 2 and len(digests) == 1 and None not in digests
        passes = tuple(bool(test[2]) for test in tests)
        errored = sum(1 for test in tests if test[3] and not test[2])
        key = (sum(passes), len(tests), errored, identical)
        if key not in shared:
            shared[key] = task_summary(*key)
        if passes not in shared:
            shared[passes] = list(passes)
        summaries[task_id] = shared[key]
        if len(passes) >= 2:
            outcomes[task_id] = shared[passes]
    return summaries, outcomes


def task_label(summary):
    """stable_pass (every repetition passed), stable_fail (none did) or flaky (some did); None without a test."""
    passed, n = summary["passed"], summary["n"]
    if n == 0:
        return None
    return STABLE_PASS if passed == n else STABLE_FAIL if passed == 0 else FLAKY


def pass_at_k(passed, n, k):
    """Unbiased estimate of P(at least one of k repetitions passes) from `passed` of n (Chen et al. 2021)."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 ≤ k ≤ n, got k={k}, n={n}")
    return 1.0 - math.comb(n - passed, k) / math.comb(n, k)


def pass_hat_k(passed, n, k):
    """Unbiased estimate of P(all k repetitions pass) from `passed` of n: C(passed, k) / C(n, k)."""
    if not 1 <= k <= n:
        raise ValueError(f"pass^k needs 1 ≤ k ≤ n, got k={k}, n={n}")
    return math.comb(passed, k) / math.comb(n, k)


def run_pass_at_k(summaries, k):
    """(pass@k, pass^k) averaged over the tasks with at least k repetitions; (None, None) at k < 2 or without such a task."""
    if k < 2:
        return (None, None)
    cache, at_sum, hat_sum, count = {}, 0.0, 0.0, 0
    for summary in summaries:
        passed, n = summary["passed"], summary["n"]
        if n < k:
            continue
        key = (passed, n)
        if key not in cache:
            cache[key] = (pass_at_k(passed, n, k), pass_hat_k(passed, n, k))
        at, hat = cache[key]
        at_sum += at
        hat_sum += hat
        count += 1
    return (at_sum / count, hat_sum / count) if count else (None, None)


def within_variance(passed, n):
    """Unbiased per-repetition variance of a task's outcomes: p̂(1 − p̂) · n/(n − 1); None below n = 2."""
    if n < 2:
        return None
    return passed * (n - passed) / (n * (n - 1))


def baseline_noise(summaries):
    """The noise of one run with repetitions, for the planner: {"tasks", "k", "pass_rate",
    "between_var" (spread of the tasks' true pass rates, method of moments), "within_var"
    (mean per-repetition variance within a task)}; the variances are None without repetitions."""
    summaries = [summary for summary in summaries.values() if summary["n"] > 0]
    if not summaries:
        return {"tasks": 0, "k": None, "pass_rate": None, "between_var": None, "within_var": None}
    rates = [summary["passed"] / summary["n"] for summary in summaries]
    tasks = len(summaries)
    mean_rate = math.fsum(rates) / tasks
    k = max(summary["n"] for summary in summaries)
    repeated = [summary for summary in summaries if summary["n"] >= 2]
    result = {"tasks": tasks, "k": k, "pass_rate": mean_rate, "between_var": None, "within_var": None}
    if not repeated or tasks < 2:
        return result
    within = math.fsum(within_variance(summary["passed"], summary["n"]) for summary in repeated) / len(repeated)
    spread = math.fsum((rate - mean_rate) ** 2 for rate in rates) / (tasks - 1)
    noise_of_rates = math.fsum(within_variance(s["passed"], s["n"]) / s["n"] for s in repeated) / len(repeated)
    result.update(between_var=max(0.0, spread - noise_of_rates), within_var=within)
    return result
