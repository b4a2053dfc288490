"""Judging one result row against the baseline: the verdict, the gate and `variant.regressed`.

`judge(row, ...)` is the one place that reads the statistics of a results row (SPEC §7/§8 R)
to decide. When the row carries the newer figures — `verdict`, `delta_ci_high`,
`p_value_adjusted` — they are used; a row without them (before the statistics of SPEC §7
land) is judged from its `p_value` and `delta_pp`, with the point estimate standing in
for the upper confidence bound. Nothing else in the code reads those fields to decide.
"""

from dataclasses import dataclass

DEFAULT_ALPHA = 0.05
VERDICT_CODES = ("better", "worse", "no_difference", "inconclusive", "pending")


@dataclass(frozen=True)
class Judgement:
    passed: bool  # the gate's answer
    reason: str  # one sentence
    verdict: dict  # {"code", "text"}

    @property
    def regressed(self):
        return self.verdict["code"] == "worse"


def pp(value):
    return f"{value:+.1f} pp"


def significance(row, alpha):
    """(p used, is significant) — the adjusted p-value when the row has one, else the raw one."""
    p_value = row.get("p_value_adjusted")
    if p_value is None:
        p_value = row.get("p_value")
    return p_value, p_value is not None and p_value < alpha


def verdict_of(row, alpha=None, *, default_alpha=DEFAULT_ALPHA):
    """The row's verdict {"code", "text"}: its own when it has one and no other alpha is asked
    for, otherwise decided here at `alpha` (else the experiment's `default_alpha`) from the
    (adjusted) p-value and the sign of delta_pp."""
    own = row.get("verdict")
    if isinstance(own, dict) and own.get("code") in VERDICT_CODES and alpha is None:
        return {"code": own["code"], "text": own.get("text") or own["code"]}
    alpha = default_alpha if alpha is None else alpha
    if row.get("run") is None or row.get("pass_rate") is None:
        return {"code": "pending", "text": "No result yet: the variant has no succeeded or failed run."}
    delta = row.get("delta_pp")
    p_value, significant = significance(row, alpha)
    if delta is None or p_value is None:
        return {"code": "pending", "text": "No comparison yet: the baseline has no result or no task in common."}
    if significant and delta > 0:
        return {"code": "better", "text": f"Better than the baseline by {pp(delta)} (p = {p_value:.3g} < {alpha:g})."}
    if significant and delta < 0:
        return {"code": "worse", "text": f"Worse than the baseline by {pp(delta)} (p = {p_value:.3g} < {alpha:g})."}
    return {
        "code": "no_difference",
        "text": f"No difference distinguishable from noise ({pp(delta)}, p = {p_value:.3g} ≥ {alpha:g}).",
    }


def upper_bound(row):
    """The upper confidence bound of delta_pp, or the point estimate when the row has no interval."""
    high = row.get("delta_ci_high")
    return high if high is not None else row.get("delta_pp")


def judge(row, *, alpha=None, default_alpha=DEFAULT_ALPHA, max_regression_pp=0.0):
    """The gate of SPEC §8 for one results row: fails when the variant has no result, is
        significantly worse than the baseline, or is worse by more than `max_regression_pp` at
        the upper confidence bound of its difference. `alpha` is asked for by the caller; without
    it the row's own verdict (made at the experiment's alpha) or `default_alpha` decides.
    Returns a Judgement."""
    verdict = verdict_of(row, alpha, default_alpha=default_alpha)
    name = row.get("name") or "The variant"
    if verdict["code"] == "pending":
        return Judgement(False, f"{name} has no result to judge: {verdict['text']}", verdict)
    if verdict["code"] == "worse":
        return Judgement(False, f"{name} regressed: {verdict['text']}", verdict)
    high = upper_bound(row)
    if high is not None and high < -max_regression_pp:
        bound = "upper confidence bound" if row.get("delta_ci_high") is not None else "difference"
        return Judgement(
            False,
            f"{name} is worse than the baseline by more than {max_regression_pp:g} pp: its {bound} is {pp(high)}.",
            verdict,
        )
    return Judgement(True, f"{name} passes: {verdict['text']}", verdict)


def experiment_alpha(experiment):
    """The experiment's significance level (SPEC §2 `alpha`; 0.05 where the field does not exist yet)."""
    return getattr(experiment, "alpha", None) or DEFAULT_ALPHA
