"""Guardrails (SPEC §7): one-sided non-inferiority at a margin, alpha not adjusted.

A variant is non-inferior on a guardrail when, with confidence 1 − alpha (one-sided), it is
worse than the baseline by less than the margin. The reported interval is the two-sided
(1 − 2·alpha) interval, whose relevant end is that one-sided bound. Only the tasks both
runs have data for are compared (the task is the unit).

Inputs, per run: {"metrics": {metric: {task_id: [values of the task's tests]}},
"evaluators": {evaluator: {task_id: [passed, n]}}}.

- metric, statistic "mean": baseline/variant are the mean over tasks of each task's metric
  mean; the interval is the paired t-interval on the per-task differences (n − 1 df).
  Units are the metric's; margin is absolute, in the metric's units.
- metric, statistic "p95": baseline/variant are the p95 over all tests of the common tasks;
  the interval is a task-cluster bootstrap (tasks resampled with both runs' tests kept
  together, P95_RESAMPLES resamples, fixed seed, percentile interval). Above
  P95_BOOTSTRAP_TASKS tasks the bootstrap runs on a fixed-seed subsample of that many
  tasks and its standard deviation is scaled by √(subsample/n) (a quantile's standard
  error shrinks as 1/√n), giving a normal interval: the full bootstrap would cost minutes.
- evaluator: baseline/variant are pass rates (fractions); delta, ci_low, ci_high and
  margin_pp are percentage points. The interval is Newcombe's method 10 when every task
  ran once, else the t-interval on the per-task pass-fraction differences.
"""

import math
import random

from experiments_app.stats.descriptive import percentile
from experiments_app.stats.distributions import normal_ppf
from experiments_app.stats.intervals import mean_and_variance, t_interval
from experiments_app.stats.proportions import newcombe_paired_interval

P95_RESAMPLES = 1_000
P95_BOOTSTRAP_TASKS = 2_000
SEED = 20_240_901


def guardrail_name(spec):
    if spec.get("name"):
        return spec["name"]
    if "evaluator" in spec:
        return spec["evaluator"]
    return f"{spec['metric']} {spec.get('statistic', 'mean')}"


def evaluate_guardrails(specs, variant, baseline, *, alpha=0.05):
    """[{name, baseline, variant, delta, ci_low, ci_high, non_inferior}] for each guardrail spec."""
    return [evaluate_guardrail(spec, variant, baseline, alpha=alpha) for spec in specs]


def evaluate_guardrail(spec, variant, baseline, *, alpha=0.05):
    if "evaluator" in spec:
        result = _evaluator(
            spec, variant.get("evaluators", {}).get(spec["evaluator"], {}), baseline.get("evaluators", {}).get(spec["evaluator"], {}), alpha
        )
    elif "metric" in spec:
        statistic = spec.get("statistic", "mean")
        if statistic not in ("mean", "p95"):
            raise ValueError(f"a metric guardrail's statistic is mean or p95, got {statistic!r}")
        values = (variant.get("metrics", {}).get(spec["metric"], {}), baseline.get("metrics", {}).get(spec["metric"], {}))
        result = _metric_mean(*values, alpha) if statistic == "mean" else _metric_p95(*values, alpha)
        if result["ci_low"] is not None:
            margin = spec["margin"]
            if spec.get("higher_is_better", False):
                result["non_inferior"] = result["ci_low"] > -margin
            else:
                result["non_inferior"] = result["ci_high"] < margin
    else:
        raise ValueError("a guardrail names a metric or an evaluator")
    return {"name": guardrail_name(spec), **result}


def _empty():
    return {"baseline": None, "variant": None, "delta": None, "ci_low": None, "ci_high": None, "non_inferior": False}


def _metric_mean(variant, baseline, alpha):
    common = sorted(task for task in variant.keys() & baseline.keys() if variant[task] and baseline[task])
    if not common:
        return _empty()
    means_v = [math.fsum(variant[task]) / len(variant[task]) for task in common]
    means_b = [math.fsum(baseline[task]) / len(baseline[task]) for task in common]
    n, delta, variance = mean_and_variance([v - b for v, b in zip(means_v, means_b, strict=True)])
    low, high = t_interval(delta, variance, n, 2 * alpha)
    return {
        **_empty(),
        "baseline": math.fsum(means_b) / n,
        "variant": math.fsum(means_v) / n,
        "delta": delta,
        "ci_low": low,
        "ci_high": high,
    }


def _p95(groups):
    return percentile(sorted(value for group in groups for value in group), 95)


def _metric_p95(variant, baseline, alpha):
    common = sorted(task for task in variant.keys() & baseline.keys() if variant[task] and baseline[task])
    if not common:
        return _empty()
    pairs = [(variant[task], baseline[task]) for task in common]
    p95_v, p95_b = _p95(pair[0] for pair in pairs), _p95(pair[1] for pair in pairs)
    delta = p95_v - p95_b
    result = {**_empty(), "baseline": p95_b, "variant": p95_v, "delta": delta}
    if len(pairs) < 2:
        return result
    rng = random.Random(SEED)
    sample = pairs if len(pairs) <= P95_BOOTSTRAP_TASKS else rng.sample(pairs, P95_BOOTSTRAP_TASKS)
    size = len(sample)
    deltas = []
    for _ in range(P95_RESAMPLES):
        drawn = rng.choices(sample, k=size)
        deltas.append(_p95(pair[0] for pair in drawn) - _p95(pair[1] for pair in drawn))
    if size == len(pairs):
        deltas.sort()
        low, high = percentile(deltas, 100 * alpha), percentile(deltas, 100 * (1 - alpha))
    else:
        _, _, variance = mean_and_variance(deltas)
        half = normal_ppf(1 - alpha) * math.sqrt(variance * size / len(pairs))
        low, high = delta - half, delta + half
    return {**result, "ci_low": low, "ci_high": high}


def _evaluator(spec, variant, baseline, alpha):
    common = sorted(task for task in variant.keys() & baseline.keys() if variant[task][1] and baseline[task][1])
    if not common:
        return _empty()
    rates_v = [variant[task][0] / variant[task][1] for task in common]
    rates_b = [baseline[task][0] / baseline[task][1] for task in common]
    n = len(common)
    delta = math.fsum(rates_v) / n - math.fsum(rates_b) / n
    if all(variant[task][1] == 1 and baseline[task][1] == 1 for task in common):
        both = sum(1 for v, b in zip(rates_v, rates_b, strict=True) if v and b)
        first = sum(1 for v, b in zip(rates_v, rates_b, strict=True) if v and not b)
        second = sum(1 for v, b in zip(rates_v, rates_b, strict=True) if b and not v)
        low, high = newcombe_paired_interval(both, first, second, n - both - first - second, 2 * alpha)
    else:
        _, mean, variance = mean_and_variance([v - b for v, b in zip(rates_v, rates_b, strict=True)])
        low, high = t_interval(mean, variance, n, 2 * alpha)
    result = {**_empty(), "baseline": math.fsum(rates_b) / n, "variant": math.fsum(rates_v) / n, "delta": 100 * delta}
    if low is None:
        return result
    return {**result, "ci_low": 100 * low, "ci_high": 100 * high, "non_inferior": 100 * low > -spec["margin_pp"]}
