"""Verdicts (SPEC §7): one sentence per variant from its Holm-adjusted p-value, and `ship`.

Codes, in order of precedence:
- pending: no result yet;
- inconclusive: a warning makes the comparison unsafe (error_rate_mismatch, baseline_drift)
  or no task is common with the baseline;
- better / worse: Holm-adjusted p < alpha, in the direction of Δ;
- no_difference: otherwise, saying how large a difference could have been missed (mde_pp)
  and how many more tasks would detect the observed Δ.
"""

from experiments_app.stats.multiplicity import holm
from experiments_app.stats.validity import baseline_drift

UNSAFE = {
    "error_rate_mismatch": "inconclusive: error rates differ",
    "baseline_drift": "inconclusive: the baseline has drifted (the control differs from it); re-run the baseline",
}


def _confidence(alpha):
    return f"{100 * (1 - alpha):.10g}%"


def _p_text(p_value):
    return "< 0.001" if p_value < 0.001 else f"= {p_value:.3f}"


def _rounded_pp(value):
    """A whole number of pp at 1 pp and above, one decimal below (so 0.4 pp does not read 0)."""
    return f"{abs(value):.0f}" if abs(value) >= 1 else f"{abs(value):.1f}"


def _about(count):
    """~240, ~1,200: two significant figures."""
    digits = max(len(str(count)) - 2, 0)
    return f"~{round(count, -digits):,}"


def verdict(comparison, *, alpha=0.05, p_value_adjusted=None):
    """{"code", "text"} for a `compare` result (None: no result yet); `p_value_adjusted` defaults to the raw p-value."""
    if comparison is None:
        return {"code": "pending", "text": "pending: no result yet"}
    for warning in comparison.get("warnings", []):
        if warning["code"] in UNSAFE:
            return {"code": "inconclusive", "text": UNSAFE[warning["code"]]}
    if comparison["p_value"] is None:
        return {"code": "inconclusive", "text": "inconclusive: no task in common with the baseline"}
    p_value = comparison["p_value"] if p_value_adjusted is None else p_value_adjusted
    delta = comparison["delta_pp"]
    if p_value < alpha and delta != 0:
        code = "better" if delta > 0 else "worse"
        interval = f"{_confidence(alpha)} CI {comparison['delta_ci_low']:+.1f} to {comparison['delta_ci_high']:+.1f}"
        return {"code": code, "text": f"{code}: {delta:+.1f} pp ({interval}), adjusted p {_p_text(p_value)}"}
    text = "no detectable difference"
    if comparison.get("mde_pp") is not None:
        text += f": could miss up to ±{_rounded_pp(comparison['mde_pp'])} pp"
    needed = comparison.get("tasks_for_delta")
    more = needed - comparison["common"] if needed is not None and delta else 0
    if more > 0:
        sign = "+" if delta > 0 else "-"
        text += f"; {_about(more)} more tasks would detect {sign}{_rounded_pp(delta)} pp"
    return {"code": "no_difference", "text": text}


def ship(verdict_value, guardrails):
    """True when the verdict is better and every guardrail is non-inferior; None without guardrails."""
    if not guardrails:
        return None
    return verdict_value["code"] == "better" and all(guardrail["non_inferior"] for guardrail in guardrails)


def assess_experiment(comparisons, *, alpha=0.05, control=None, guardrails=None):
    """Holm over every variant's p-value (control included), then verdict and ship per variant.

    comparisons: {variant_id: `compare` result, or None when the variant has no result};
    control: the control variant's id, if any; guardrails: {variant_id: evaluate_guardrails
    result}, or None when the experiment has none. Returns {variant_id: {"p_value_adjusted",
    "significant", "tasks_needed", "warnings", "verdict", "ship"}}, the fields to set on each
    variant's row (the comparison itself is not changed).
    """
    ids = list(comparisons)
    adjusted = dict(zip(ids, holm([None if comparisons[i] is None else comparisons[i]["p_value"] for i in ids]), strict=True))
    drift = None
    if control is not None and comparisons.get(control) is not None and adjusted[control] is not None:
        drift = baseline_drift({**comparisons[control], "p_value_adjusted": adjusted[control]}, alpha)
    assessed = {}
    for variant_id in ids:
        comparison = comparisons[variant_id]
        if comparison is None:
            assessed[variant_id] = {
                "p_value_adjusted": None,
                "significant": False,
                "tasks_needed": None,
                "warnings": [],
                "verdict": verdict(None),
                "ship": None if not guardrails else False,
            }
            continue
        p_adjusted = adjusted[variant_id]
        significant = p_adjusted is not None and p_adjusted < alpha
        warnings = list(comparison.get("warnings", [])) + ([drift] if drift else [])
        tasks = None if significant or not comparison.get("delta_pp") else comparison.get("tasks_for_delta")
        decided = verdict({**comparison, "warnings": warnings}, alpha=alpha, p_value_adjusted=p_adjusted)
        assessed[variant_id] = {
            "p_value_adjusted": p_adjusted,
            "significant": significant,
            "tasks_needed": tasks,
            "warnings": warnings,
            "verdict": decided,
            "ship": ship(decided, (guardrails or {}).get(variant_id)) if guardrails is not None else None,
        }
    return assessed
