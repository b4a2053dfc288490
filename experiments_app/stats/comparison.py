"""`compare`: one variant run against the baseline run over their common tasks (SPEC §7).

Inputs are per-task summaries {task_id: {"passed", "n", "errored", "identical"}} (see
`repetitions`). d_i = v_i − b_i with v_i, b_i the tasks' pass fractions; the task is the
unit, never the repetition.

- Every task ran once on both sides (k = 1): Δ's interval is Newcombe's method 10, the
  p-value exact McNemar, improved/regressed are fail→pass / pass→fail.
- Otherwise (repetitions, or a mix of repetition counts): the p-value is the paired
  sign-flip permutation test on the d_i, the interval a t-interval on the d_i with n − 1
  degrees of freedom; below BOOTSTRAP_BELOW tasks, the hull of that t-interval and the
  expanded percentile bootstrap over tasks (never narrower than either: the simulations
  in STATISTICS.md show the bootstrap alone under-covers at 10-20 tasks, and the hull
  guards the t-interval against skew it cannot see). A task is improved (regressed) only when its own repetitions separate the
  two runs: d_i > 0 (< 0) and the one-sided Fisher exact test of its passes, variant vs
  baseline, gives p ≤ alpha. A task that ran once on both sides falls back to fail→pass.
"""

import math
from collections import Counter

from experiments_app.stats.intervals import bootstrap_interval, t_interval
from experiments_app.stats.permutation import sign_flip_test
from experiments_app.stats.power import mde, tasks_needed
from experiments_app.stats.proportions import fisher_one_sided, mcnemar_exact, newcombe_paired_interval
from experiments_app.stats.repetitions import run_pass_at_k, task_label, within_variance
from experiments_app.stats.validity import error_rate_mismatch, flip_rate, identical_repetitions, split_halves

# Below this many tasks the t-interval's normal approximation of a mean of bounded, often
# skewed d_i is least trustworthy, so the bootstrap's interval is joined to it (STATISTICS.md).
BOOTSTRAP_BELOW = 30


def _pp(value):
    return None if value is None else 100 * value


def compare(variant, baseline, *, alpha=0.05, k=None):
    """Compare two runs' per-task summaries; returns the dict described in the package docstring."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")
    common = sorted(task for task in variant.keys() & baseline.keys() if variant[task]["n"] > 0 and baseline[task]["n"] > 0)
    variant_tasks = [summary for summary in variant.values() if summary["n"] > 0]
    k = k or max((summary["n"] for summary in variant_tasks), default=1)
    pass_at, pass_hat = run_pass_at_k(variant_tasks, k)
    labels = {task: task_label(summary) for task, summary in variant.items() if summary["n"] > 0}
    result = {
        "common": len(common),
        "new_only": len(variant.keys() - baseline.keys()),
        "old_only": len(baseline.keys() - variant.keys()),
        "k": k,
        "alpha": alpha,
        "flaky": sum(1 for label in labels.values() if label == "flaky"),
        "pass_at_k": pass_at,
        "pass_hat_k": pass_hat,
        "labels": labels,
    }
    warning = identical_repetitions(variant, baseline)
    result["warnings"] = [warning] if warning else []
    if not common:
        return {**result, **_empty()}
    counts = {variant[task]["n"] for task in common} | {baseline[task]["n"] for task in common}
    return {**result, **_paired(variant, baseline, common, counts, alpha, k, result["warnings"])}


def _empty():
    return {
        "delta_pp": None,
        "delta_ci_low": None,
        "delta_ci_high": None,
        "ci_method": None,
        "p_value": None,
        "test": None,
        "improved": [],
        "regressed": [],
        "b": 0,
        "c": 0,
        "mde_pp": None,
        "tasks_needed": None,
        "tasks_for_delta": None,
        "discordance": None,
        "var_d": None,
        "between_var": None,
        "within_var": None,
        "se": None,
        "se_floor": None,
    }


def _paired(variant, baseline, common, counts, alpha, k, warnings):
    n = len(common)
    single = counts == {1}
    lattice = math.lcm(*counts)
    magnitudes, error_magnitudes = Counter(), Counter()
    total = squares = errors = 0
    improved, regressed = [], []
    within_sum = within_per_repetition = 0.0
    within_tasks = 0
    both = neither = discordant_up = discordant_down = 0
    variant_errored = variant_tests = baseline_errored = baseline_tests = 0
    scales = {count: lattice // count for count in counts}
    for task in common:
        v, b = variant[task], baseline[task]
        pv, nv, pb, nb = v["passed"], v["n"], b["passed"], b["n"]
        d = pv * scales[nv] - pb * scales[nb]
        total += d
        squares += d * d
        if d:
            magnitudes[abs(d)] += 1
            if d > 0:
                discordant_up += 1
            else:
                discordant_down += 1
            if nv == 1 and nb == 1 or fisher_one_sided(pv, nv, pb, nb, d > 0) <= alpha:
                (improved if d > 0 else regressed).append(task)
        elif single:
            if pv:
                both += 1
            else:
                neither += 1
        e = v["errored"] * scales[nv] - b["errored"] * scales[nb]
        if e:
            error_magnitudes[abs(e)] += 1
            errors += e
        variant_errored += v["errored"]
        variant_tests += nv
        baseline_errored += b["errored"]
        baseline_tests += nb
        if nv >= 2 and nb >= 2:
            wv, wb = within_variance(pv, nv), within_variance(pb, nb)
            within_sum += wv / nv + wb / nb
            within_per_repetition += wv + wb
            within_tasks += 1
    delta = total / lattice / n
    # Sample variance of the d_i from integer sums: exact, no cancellation.
    var_d = (squares - total * total / n) / (n - 1) / lattice**2 if n > 1 else None
    out = {"b": discordant_up, "c": discordant_down, "improved": improved, "regressed": regressed, "delta_pp": 100 * delta}
    if single:
        low, high = newcombe_paired_interval(both, discordant_up, discordant_down, neither, alpha)
        p_value, test, ci_method = mcnemar_exact(discordant_up, discordant_down), "mcnemar_exact", "newcombe"
        discordance = (discordant_up + discordant_down) / n
        out["mde_pp"] = _pp(mde(n, k=1, discordance=discordance, alpha=alpha))
        tasks_for_delta = tasks_needed(delta, k=1, discordance=discordance, alpha=alpha)
    else:
        permutation = sign_flip_test(magnitudes, total)
        p_value, test = permutation["p_value"], f"sign_flip_{permutation['method']}"
        if n >= BOOTSTRAP_BELOW:
            low, high = t_interval(delta, var_d, n, alpha)
            ci_method = "t"
        else:
            values = [
                (variant[task]["passed"] * scales[variant[task]["n"]] - baseline[task]["passed"] * scales[baseline[task]["n"]]) / lattice
                for task in common
            ]
            t_low, t_high = t_interval(delta, var_d, n, alpha)
            boot_low, boot_high = bootstrap_interval(values, alpha)
            if t_low is None:
                low, high = boot_low, boot_high
            else:
                low, high = min(t_low, boot_low), max(t_high, boot_high)
            ci_method = "t+bootstrap"
        discordance = None
        out["mde_pp"] = _pp(mde(n, k=k, var_d=var_d, alpha=alpha)) if var_d is not None else None
        tasks_for_delta = tasks_needed(delta, k=k, var_d=var_d, alpha=alpha) if var_d is not None else None
    within_contribution = within_sum / within_tasks if within_tasks else None
    between = max(0.0, var_d - within_contribution) if var_d is not None and within_contribution is not None else None
    out.update(
        delta_ci_low=_pp(low),
        delta_ci_high=_pp(high),
        ci_method=ci_method,
        p_value=p_value,
        test=test,
        tasks_for_delta=tasks_for_delta,
        tasks_needed=None if p_value < alpha or not total else tasks_for_delta,
        discordance=discordance,
        var_d=var_d,
        between_var=between,
        within_var=within_per_repetition / within_tasks if within_tasks else None,
        se=math.sqrt(var_d / n) if var_d is not None else None,
        se_floor=math.sqrt(between / n) if between is not None else None,
    )
    mismatch = error_rate_mismatch(error_magnitudes, errors, variant_errored / variant_tests, baseline_errored / baseline_tests)
    if mismatch:
        warnings.append(mismatch)
    return out


SPLIT_HALF_FIELDS = ("common", "delta_pp", "delta_ci_low", "delta_ci_high", "p_value", "test", "b", "c")


def split_half(outcomes, *, alpha=0.05):
    """The baseline against itself, for free: repetitions 1..⌊k/2⌋ against the next ⌊k/2⌋
    (see `validity.split_halves`), from per-repetition outcomes {task_id: [passed of repetition
    1, 2, …]}. An A/A comparison: its p-value is uniform and its Δ near 0 when the
    repetitions are independent. None below two repetitions."""
    first, second = split_halves(outcomes)
    if not first:
        return None
    result = compare(second, first, alpha=alpha)
    return {**{field: result[field] for field in SPLIT_HALF_FIELDS}, "flip_rate": flip_rate(second, first)}


def noise_floor(control, baseline, baseline_outcomes=None, *, alpha=0.05):
    """The control variant's noise floor: {"flip_rate" (share of common tasks whose majority
    outcome differs between the control and the baseline), "split_half" (see `split_half`, or
    None without per-repetition outcomes or repetitions)}. The control's Δ and p-value come
    from `compare(control, baseline)` like any variant's."""
    return {
        "flip_rate": flip_rate(control, baseline),
        "split_half": split_half(baseline_outcomes, alpha=alpha) if baseline_outcomes else None,
    }
