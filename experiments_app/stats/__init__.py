"""Statistics of SPEC §7 as pure functions over plain numbers: no Django, no numpy.

One module per concept, re-exported here so callers import from `experiments_app.stats`.
STATISTICS.md gives each method's reason, assumptions and simulated behaviour.

Inputs
------
A task summary is {"passed": int, "n": int, "errored": int, "identical": bool}: n
repetitions ran (skipped ones never count), errored ones count as not passed, identical =
every repetition returned byte-identical output (n ≥ 2). A run is {task_id: summary}.
`summarize_tasks(rows)` builds them from (task_id, repetition, passed, errored,
output_digest) rows and also returns {task_id: [passed of repetition 1, 2, …]}.

The contract
------------
compare(variant, baseline, *, alpha=0.05, k=None) -> dict, over the common tasks:
    common, new_only, old_only (task counts); k (repetitions, default the variant's max n);
    delta_pp, delta_ci_low, delta_ci_high (pp, (1 − alpha) interval), ci_method
    ("newcombe" | "t" | "t+bootstrap"); p_value, test ("mcnemar_exact" |
    "sign_flip_exact" | "sign_flip_monte_carlo"); improved, regressed (sorted task ids);
    b, c (tasks with d_i > 0 / < 0); mde_pp; tasks_needed (None when p_value < alpha or
    Δ = 0); tasks_for_delta (the same number whatever the significance: what
    assess_experiment uses once Holm has spoken); discordance (k = 1) / var_d (sample
    variance of the d_i); between_var, within_var, se, se_floor; flaky, pass_at_k,
    pass_hat_k (None at k = 1), labels {task_id: "stable_pass" | "stable_fail" | "flaky"}
    for every task of the variant; alpha; warnings [{"code", "detail"}]
    (error_rate_mismatch, identical_repetitions). No common task: the figures are None.
holm(p_values: list[float | None]) -> list[float | None]
assess_experiment(comparisons: {variant_id: compare() | None}, *, alpha=0.05,
    control=None (the control's variant_id), guardrails=None ({variant_id:
    evaluate_guardrails(...)}, None when the experiment has none))
    -> {variant_id: {"p_value_adjusted", "significant", "tasks_needed", "warnings",
    "verdict": {"code", "text"}, "ship"}}: Holm over all variants (control included),
    baseline_drift from the control, verdicts with the adjusted p-value, ship.
verdict(comparison | None, *, alpha=0.05, p_value_adjusted=None) -> {"code", "text"};
    ship(verdict, guardrails | None) -> bool | None.
mde(n, *, k, discordance=None, var_d=None, alpha=0.05, power=0.8) -> fraction | None;
    tasks_needed(delta, *, k, discordance=None, var_d=None, alpha=0.05, power=0.8) -> int | None;
    plan(expected_pass_rate, min_difference_pp, alpha=0.05, power=0.8, k=1, measured=None)
    -> {"tasks_needed", "tests_needed", "var_d", "noise": "assumed" | "measured"}, measured
    = {"within_var": baseline_noise(baseline)["within_var"], "effect_var"?: ω²}.
live_start(total, *, alpha=0.05, method="betting" | "mixture") -> state (JSON-able dict);
    live_update(state, d_i) -> new state; live_summary(state) -> {"done", "total",
    "delta_pp", "ci_low", "ci_high", "decided": "better" | "worse" | None}.
evaluate_guardrails(specs, variant_data, baseline_data, *, alpha=0.05) -> [{"name",
    "baseline", "variant", "delta", "ci_low", "ci_high", "non_inferior"}], data =
    {"metrics": {metric: {task_id: [values]}}, "evaluators": {name: {task_id: [passed, n]}}}.
baseline_drift(control_comparison, alpha) -> warning | None; flip_rate(control, baseline);
    split_half(baseline_outcomes, *, alpha); noise_floor(control, baseline,
    baseline_outcomes=None, *, alpha) -> {"flip_rate", "split_half"}.
"""

from experiments_app.stats.comparison import BOOTSTRAP_BELOW, compare, noise_floor, split_half
from experiments_app.stats.descriptive import is_number, majority_passed, percentile, summarize
from experiments_app.stats.distributions import normal_ppf, t_ppf
from experiments_app.stats.guardrails import evaluate_guardrail, evaluate_guardrails
from experiments_app.stats.intervals import bootstrap_interval, t_interval
from experiments_app.stats.multiplicity import holm
from experiments_app.stats.permutation import sign_flip_p_value, sign_flip_test
from experiments_app.stats.power import mde, plan, tasks_needed
from experiments_app.stats.proportions import (
    EXACT_INTEGER_LIMIT,
    Z_95,
    fisher_one_sided,
    mcnemar_exact,
    newcombe_paired_interval,
    paired_outcomes,
    wilson_interval,
)
from experiments_app.stats.repetitions import baseline_noise, pass_at_k, pass_hat_k, summarize_tasks, task_label, task_summary
from experiments_app.stats.sequential import discordant_log_e_value, live_start, live_summary, live_update
from experiments_app.stats.validity import baseline_drift, error_rate_mismatch, flip_rate, identical_repetitions, split_halves
from experiments_app.stats.verdicts import assess_experiment, ship, verdict

__all__ = [
    "BOOTSTRAP_BELOW",
    "EXACT_INTEGER_LIMIT",
    "Z_95",
    "assess_experiment",
    "baseline_drift",
    "baseline_noise",
    "bootstrap_interval",
    "compare",
    "discordant_log_e_value",
    "error_rate_mismatch",
    "evaluate_guardrail",
    "evaluate_guardrails",
    "fisher_one_sided",
    "flip_rate",
    "holm",
    "identical_repetitions",
    "is_number",
    "live_start",
    "live_summary",
    "live_update",
    "majority_passed",
    "mcnemar_exact",
    "mde",
    "newcombe_paired_interval",
    "noise_floor",
    "normal_ppf",
    "paired_outcomes",
    "pass_at_k",
    "pass_hat_k",
    "percentile",
    "plan",
    "ship",
    "sign_flip_p_value",
    "sign_flip_test",
    "split_half",
    "split_halves",
    "summarize",
    "summarize_tasks",
    "t_interval",
    "t_ppf",
    "task_label",
    "task_summary",
    "tasks_needed",
    "verdict",
    "wilson_interval",
]
