"""Validity warnings (SPEC §7) and the noise floor of the control variant.

Warnings are {"code", "detail"} dicts:
- `error_rate_mismatch`: the errored share differs between the variant and the baseline
  beyond chance: the paired sign-flip test on each common task's errored fraction
  (exactly McNemar's test on errored/not errored at one repetition), flagged at p < 0.001
  (GrowthBook's sample-ratio-mismatch threshold). Makes the verdict inconclusive.
- `identical_repetitions`: on either side, more than half of the tasks that ran at least two
  repetitions returned byte-identical output every time: the repetitions are probably
  cached, so they add no information about noise. Informational: the task-level test
  stays valid (the task is the unit), only the within-task variance is meaningless.
- `baseline_drift`: the control (the baseline configuration run again) differs
  significantly from the baseline (Holm-adjusted p < alpha): the runs are not comparable
  over time. Makes every verdict of the experiment inconclusive.
"""

from experiments_app.stats.descriptive import majority_passed
from experiments_app.stats.permutation import sign_flip_test

ERROR_RATE_THRESHOLD = 0.001
IDENTICAL_SHARE = 0.5


def _percent(value):
    return f"{100 * value:.1f}%"


def error_rate_mismatch(magnitudes, observed, variant_rate, baseline_rate):
    """The warning, or None, from the errored-fraction differences of the common tasks on an
    integer lattice ({|e_i|: count}, Σ e_i) and the two errored shares of tests."""
    p_value = sign_flip_test(magnitudes, observed)["p_value"]
    if p_value >= ERROR_RATE_THRESHOLD:
        return None
    return {
        "code": "error_rate_mismatch",
        "detail": (
            f"errored tests differ beyond chance: {_percent(variant_rate)} of the variant's vs "
            f"{_percent(baseline_rate)} of the baseline's (p = {p_value:.1g}); the difference may come from failures, not quality"
        ),
    }


def identical_share(summaries):
    """Share of the tasks with at least two repetitions whose repetitions were byte-identical; None without such a task."""
    repeated = [summary for summary in summaries.values() if summary["n"] >= 2]
    if not repeated:
        return None
    return sum(1 for summary in repeated if summary.get("identical")) / len(repeated)


def identical_repetitions(variant, baseline):
    """The warning, or None, when most tasks of either run repeated byte-identical output."""
    sides = [(name, identical_share(summaries)) for name, summaries in (("variant", variant), ("baseline", baseline))]
    flagged = [(name, share) for name, share in sides if share is not None and share > IDENTICAL_SHARE]
    if not flagged:
        return None
    which = " and ".join(f"the {name}'s ({_percent(share)} of its tasks)" for name, share in flagged)
    return {
        "code": "identical_repetitions",
        "detail": f"repetitions returned byte-identical output for most tasks of {which}: they are likely cached, not independent",
    }


def baseline_drift(control, alpha=0.05):
    """The warning, or None, from the control's comparison with the baseline (a `compare`
    result, with `p_value_adjusted` once Holm has been applied, else its raw `p_value`)."""
    if control is None:
        return None
    p_value = control.get("p_value_adjusted", control.get("p_value"))
    if p_value is None or p_value >= alpha:
        return None
    return {
        "code": "baseline_drift",
        "detail": (
            f"the control (the baseline configuration run again) differs from the baseline by {control['delta_pp']:+.1f} pp "
            f"(adjusted p = {p_value:.3g}): results are not comparable over time; re-run the baseline"
        ),
    }


def flip_rate(variant, baseline):
    """Share of the common tasks whose majority outcome differs between the two runs; None without a common task."""
    common = [task for task in variant.keys() & baseline.keys() if variant[task]["n"] and baseline[task]["n"]]
    if not common:
        return None
    flips = sum(1 for task in common if _majority(variant[task]) != _majority(baseline[task]))
    return flips / len(common)


def _majority(summary):
    return majority_passed([True] * summary["passed"] + [False] * (summary["n"] - summary["passed"]))


def split_halves(outcomes):
    """Two summaries {task_id: summary} from per-repetition outcomes {task_id: [passed of repetition 1, 2, …]}:
    the first ⌊k/2⌋ repetitions against the next ⌊k/2⌋ (an odd last one is left out so both halves
    have equal size and the A/A differences are symmetric). Tasks with fewer than 2 repetitions are left out."""
    first, second = {}, {}
    for task, passes in outcomes.items():
        half = len(passes) // 2
        if half < 1:
            continue
        first[task] = {"passed": sum(passes[:half]), "n": half, "errored": 0, "identical": False}
        second[task] = {"passed": sum(passes[half : 2 * half]), "n": half, "errored": 0, "identical": False}
    return first, second
