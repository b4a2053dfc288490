"""Statistics of SPEC §7 as pure functions over plain numbers: no Django, no numpy.

One module per concept, re-exported here so callers import from `experiments_app.stats`.
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
