"""Guardrails: one-sided non-inferiority at alpha, checked against scipy's paired t and the bootstrap's definition."""

import numpy
import pytest
from scipy import stats as scipy_stats

from experiments_app import stats
from experiments_app.stats import guardrails


def _latency(seed, n, shift):
    rng = numpy.random.default_rng(seed)
    base = rng.lognormal(6, 0.3, n)
    variant = {f"t{i}": list(base[i] * rng.lognormal(0, 0.1, 3) + shift) for i in range(n)}
    baseline = {f"t{i}": list(base[i] * rng.lognormal(0, 0.1, 3)) for i in range(n)}
    return {"metrics": {"latency_ms": variant}}, {"metrics": {"latency_ms": baseline}}


def test_mean_guardrail_is_the_paired_t_interval_on_task_means():
    variant, baseline = _latency(1, 60, 5.0)
    result = stats.evaluate_guardrail({"metric": "latency_ms", "statistic": "mean", "margin": 40}, variant, baseline, alpha=0.05)
    tasks = sorted(variant["metrics"]["latency_ms"])
    v = numpy.array([numpy.mean(variant["metrics"]["latency_ms"][t]) for t in tasks])
    b = numpy.array([numpy.mean(baseline["metrics"]["latency_ms"][t]) for t in tasks])
    reference = scipy_stats.ttest_rel(v, b).confidence_interval(0.90)  # two-sided 90% = one-sided 95% bounds
    assert result["name"] == "latency_ms mean"
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(reference.low, rel=1e-9), pytest.approx(reference.high, rel=1e-9))
    assert result["delta"] == pytest.approx((v - b).mean())
    assert result["non_inferior"] is bool(reference.high < 40)


def test_mean_guardrail_fails_when_the_variant_is_slower_than_the_margin():
    variant, baseline = _latency(2, 80, 200.0)
    result = stats.evaluate_guardrail({"name": "latency", "metric": "latency_ms", "margin": 50}, variant, baseline)
    assert result["name"] == "latency"
    assert result["ci_low"] > 50 and result["non_inferior"] is False


def test_higher_is_better_flips_the_side():
    variant, baseline = _latency(3, 80, -5.0)
    spec = {"metric": "latency_ms", "margin": 100, "higher_is_better": True}
    assert stats.evaluate_guardrail(spec, variant, baseline)["non_inferior"] is True
    assert stats.evaluate_guardrail({**spec, "margin": 0.0}, variant, baseline)["non_inferior"] is False


def test_p95_guardrail_bootstraps_tasks_and_reports_the_p95s():
    variant, baseline = _latency(4, 150, 10.0)
    result = stats.evaluate_guardrail({"metric": "latency_ms", "statistic": "p95", "margin": 100}, variant, baseline)
    all_v = [value for values in variant["metrics"]["latency_ms"].values() for value in values]
    all_b = [value for values in baseline["metrics"]["latency_ms"].values() for value in values]
    assert result["variant"] == pytest.approx(numpy.percentile(all_v, 95))
    assert result["baseline"] == pytest.approx(numpy.percentile(all_b, 95))
    assert result["ci_low"] < result["delta"] < result["ci_high"]
    assert result["non_inferior"] is bool(result["ci_high"] < 100)


def test_p95_guardrail_on_many_tasks_uses_a_scaled_subsample(monkeypatch):
    monkeypatch.setattr(guardrails, "P95_BOOTSTRAP_TASKS", 200)
    variant, baseline = _latency(5, 800, 0.0)
    scaled = stats.evaluate_guardrail({"metric": "latency_ms", "statistic": "p95", "margin": 100}, variant, baseline)
    monkeypatch.setattr(guardrails, "P95_BOOTSTRAP_TASKS", 10_000)
    full = stats.evaluate_guardrail({"metric": "latency_ms", "statistic": "p95", "margin": 100}, variant, baseline)
    # The subsample's scaled standard error is close to the full bootstrap's (within 35%: both are estimates).
    assert (scaled["ci_high"] - scaled["ci_low"]) == pytest.approx(full["ci_high"] - full["ci_low"], rel=0.35)


def test_evaluator_guardrail_uses_newcombe_at_one_repetition():
    variant = {"evaluators": {"tone": {f"t{i}": [int(i % 4 != 0), 1] for i in range(40)}}}
    baseline = {"evaluators": {"tone": {f"t{i}": [int(i % 5 != 0), 1] for i in range(40)}}}
    result = stats.evaluate_guardrail({"evaluator": "tone", "margin_pp": 10}, variant, baseline, alpha=0.05)
    rows = [(i % 4 != 0, i % 5 != 0) for i in range(40)]
    cells = [sum(1 for v, b in rows if v and b), sum(1 for v, b in rows if v and not b), sum(1 for v, b in rows if b and not v)]
    low, high = stats.newcombe_paired_interval(*cells, 40 - sum(cells), alpha=0.1)
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert result["baseline"] == pytest.approx(32 / 40) and result["variant"] == pytest.approx(30 / 40)
    assert result["non_inferior"] is bool(100 * low > -10)


def test_evaluator_guardrail_with_repetitions_uses_the_t_interval():
    rng = numpy.random.default_rng(6)
    v_passes, b_passes = rng.binomial(3, 0.8, 50), rng.binomial(3, 0.8, 50)
    variant = {"evaluators": {"tone": {f"t{i}": [int(p), 3] for i, p in enumerate(v_passes)}}}
    baseline = {"evaluators": {"tone": {f"t{i}": [int(p), 3] for i, p in enumerate(b_passes)}}}
    result = stats.evaluate_guardrail({"evaluator": "tone", "margin_pp": 5}, variant, baseline)
    reference = scipy_stats.ttest_rel(v_passes / 3, b_passes / 3).confidence_interval(0.9)
    assert result["ci_low"] == pytest.approx(100 * reference.low) and result["ci_high"] == pytest.approx(100 * reference.high)


def test_missing_data_is_not_non_inferior():
    result = stats.evaluate_guardrail({"metric": "cost", "margin": 1}, {"metrics": {}}, {"metrics": {}})
    assert result == {
        "name": "cost mean",
        "baseline": None,
        "variant": None,
        "delta": None,
        "ci_low": None,
        "ci_high": None,
        "non_inferior": False,
    }


def test_bad_guardrails_are_refused():
    with pytest.raises(ValueError):
        stats.evaluate_guardrail({"metric": "x", "statistic": "p99", "margin": 1}, {}, {})
    with pytest.raises(ValueError):
        stats.evaluate_guardrail({"margin": 1}, {}, {})
