"""Results of SPEC §7: per-run aggregates, the experiment's results table and run comparison.

A run's tests are read once, by `summarize_run` when the run closes (`store_summary`):
metric and evaluator figures go to `run.aggregates`, the per-task outcomes (one entry per
task, kept for comparing any two runs) to `run.outcomes`, and the pairing with the
baseline's run to `run.aggregates["vs_baseline"]`. The results table reads Run rows
without their outcomes, so it costs the same few queries and about the same time however
many tests or variants there are.
"""

from django.db.models import OuterRef, Subquery

from experiments_app import stats, step_detail
from experiments_app.evaluation import evaluator_names
from experiments_app.models import Run, RunStatus, Test, TestStatus, Variant

RESULT_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED)


def summarize_run(run):
    """Aggregates of one run's tests: {"metrics": {name: summary}, "evaluators":
    {name: {passed, failed, pass_rate}}, "outcomes": {task_id: passed by majority}}.
    Reads the tests in one query."""
    metric_values, evaluator_counts, repetitions = {}, {}, {}
    per_step = step_detail.StepAggregator()
    rows = Test.objects.filter(run_id=run.pk).values_list("task_id", "status", "metrics", "evaluations", "steps")
    for task_id, status, metrics, evaluations, steps in rows.iterator(chunk_size=2000):
        per_step.add(metrics, steps)
        for name, value in metrics.items() if isinstance(metrics, dict) else ():
            if stats.is_number(value):
                metric_values.setdefault(name, []).append(value)
        for evaluation in evaluations or ():
            if isinstance(evaluation, dict) and isinstance(evaluation.get("name"), str):
                counts = evaluator_counts.setdefault(evaluation["name"], [0, 0])
                counts[0 if evaluation.get("passed") else 1] += 1
        # A test whose task was deleted since cannot be paired with another run's.
        if task_id is not None:
            repetitions.setdefault(str(task_id), []).append(status == TestStatus.PASSED)
    return {
        "metrics": {name: stats.summarize(values) for name, values in sorted(metric_values.items())},
        "evaluators": {
            name: {"passed": passed, "failed": failed, "pass_rate": rate(passed, passed + failed)}
            for name, (passed, failed) in evaluator_counts.items()
        },
        "outcomes": {task: stats.majority_passed(passes) for task, passes in repetitions.items()},
        **per_step.summary(),  # {"steps": per-step detail, "cost": per-test cost}
    }


def baseline_result_runs(experiment_id):
    """The baseline's succeeded-or-failed runs in an experiment, latest first."""
    return (
        Run.objects.real()
        .filter(experiment_id=experiment_id, variant__parent__isnull=True, status__in=RESULT_STATUSES)
        .order_by("-created_at", "-completed_at")
    )


def store_summary(run):
    """Summarize a closed run once and store it: aggregates, per-task outcomes and, for a
    variant, its pairing with the baseline's latest result run (what the results table shows)."""
    summary = summarize_run(run)
    run.outcomes = summary.pop("outcomes")
    if not run.variant.is_baseline:
        baseline_run = baseline_result_runs(run.experiment_id).first()
        if baseline_run is not None:
            paired = stats.paired_outcomes(run.outcomes, run_outcomes(baseline_run))
            summary["vs_baseline"] = {"run": str(baseline_run.pk), **paired}
    run.aggregates = summary
    run.save(update_fields=["aggregates", "outcomes"])
    return run


def rate(part, whole):
    return part / whole if whole else None


def significant(p_value, alpha=0.05):
    """Whether a p-value is below the significance level (None is never significant)."""
    return p_value is not None and p_value < alpha


def is_summarized(run):
    return "metrics" in (run.aggregates or {})


def run_aggregates(run):
    """The run's stored aggregates, computed on the spot when it has none yet (still running)."""
    return run.aggregates if is_summarized(run) else summarize_run(run)


def run_outcomes(run):
    """The run's per-task outcomes {task_id: passed}: stored at close, else computed now."""
    return (run.outcomes or {}) if is_summarized(run) else summarize_run(run)["outcomes"]


def stored_pairing(run, other):
    """The pairing of `run` with `other` stored at close, if `other` is the run it was made with."""
    cached = (run.aggregates or {}).get("vs_baseline") if is_summarized(run) else None
    return cached if cached and cached.get("run") == str(other.pk) else None


def paired_runs(run, other):
    return stored_pairing(run, other) or stats.paired_outcomes(run_outcomes(run), run_outcomes(other))


def ordered_evaluators(evaluators, names):
    """Evaluator figures in the experiment's configured order (JSONB does not keep key order), others after."""
    order = {name: index for index, name in enumerate(names)}
    return dict(sorted(evaluators.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def experiment_results(experiment):
    """{"baseline": R, "variants": [R, …]} of SPEC §8, one R per variant from its latest
    succeeded-or-failed run. Two queries, whatever the number of variants or tests."""
    latest = (
        Run.objects.real()
        .filter(variant=OuterRef("pk"), status__in=RESULT_STATUSES)
        .order_by("-created_at", "-completed_at")
        .values("pk")[:1]
    )
    variants = list(
        Variant.objects.filter(experiment=experiment)
        .select_related("inference_step")
        .annotate(result_run_id=Subquery(latest))
        .order_by("created_at", "pk")
    )
    # Without the per-task outcomes: the pairing with the baseline was stored at close.
    runs = Run.objects.defer("outcomes").in_bulk([variant.result_run_id for variant in variants if variant.result_run_id])
    names = evaluator_names(experiment.evaluators)

    baseline_variant = next((variant for variant in variants if variant.is_baseline), None)
    baseline_run = runs.get(baseline_variant.result_run_id) if baseline_variant else None
    pairings = pair_with_baseline(runs.values(), baseline_run)
    baseline = result_row(baseline_variant, baseline_run, names, baseline_run, pairings) if baseline_variant else None
    rows = [
        result_row(variant, runs.get(variant.result_run_id), names, baseline_run, pairings)
        for variant in variants
        if not variant.is_baseline
    ]
    for row in rows:
        row["steps"] = step_detail.with_deltas(row["steps"], baseline["steps"] if baseline else None)
    return {"baseline": baseline, "variants": rows}


def pair_with_baseline(runs, baseline_run):
    """{run id: pairing with baseline_run} for every run but the baseline's: the stored one,
    or (a run closed before this baseline run, or never summarized) computed from the
    outcomes, which are then read in one query for all such runs."""
    if baseline_run is None:
        return {}
    others = [run for run in runs if run.pk != baseline_run.pk]
    pairings = {run.pk: stored_pairing(run, baseline_run) for run in others}
    missing = [run for run in others if pairings[run.pk] is None]
    if missing:
        wanted = [run for run in [baseline_run, *missing] if is_summarized(run)]
        stored = dict(Run.objects.filter(pk__in=[run.pk for run in wanted]).values_list("pk", "outcomes"))

        def outcomes(run):
            return (stored.get(run.pk) or {}) if is_summarized(run) else summarize_run(run)["outcomes"]

        base = outcomes(baseline_run)
        for run in missing:
            pairings[run.pk] = stats.paired_outcomes(outcomes(run), base)
    return pairings


def result_row(variant, run, names, baseline_run, pairings):
    """One R of SPEC §8. Without a result every figure is None and the collections are empty."""
    row = {
        "variant": str(variant.pk),
        "name": variant.name,
        "parent": str(variant.parent_id) if variant.parent_id else None,
        "is_baseline": variant.is_baseline,
        "change": variant.change(),
        "run": None,
        "status": None,
        "pass_rate": None,
        "pass_rate_vs_baseline": None,
        "delta_pp": None,
        "ci_low": None,
        "ci_high": None,
        "p_value": None,
        "total": None,
        "passed": None,
        "failed": None,
        "errored": None,
        "improved": [],
        "regressed": [],
        "completed_at": None,
        "metrics": {},
        "evaluators": {},
        "cost_per_test": None,
        "cost_per_passed": None,
        "steps": {},
    }
    if run is None:
        return row
    aggregates = run_aggregates(run)
    pass_rate = rate(run.passed, run.total)
    ci_low, ci_high = stats.wilson_interval(run.passed, run.total)
    row.update(
        run=str(run.pk),
        status=run.status,
        pass_rate=pass_rate,
        ci_low=ci_low,
        ci_high=ci_high,
        total=run.total,
        passed=run.passed,
        failed=run.failed,
        errored=run.errored,
        completed_at=run.completed_at,
        metrics=dict(sorted(aggregates.get("metrics", {}).items())),
        evaluators=ordered_evaluators(aggregates.get("evaluators", {}), names),
        steps=aggregates.get("steps", {}),
        **step_detail.cost_figures(aggregates, run.passed),
    )
    if baseline_run is None:
        return row
    base_rate = rate(baseline_run.passed, baseline_run.total)
    if pass_rate is not None and base_rate is not None:
        row["delta_pp"] = (pass_rate - base_rate) * 100
        row["pass_rate_vs_baseline"] = (pass_rate - base_rate) / base_rate if base_rate else None
    # The baseline compared with itself: delta 0 and change 0 (as its own figures say),
    # but no p-value and no improved/regressed tasks, since there is nothing to test.
    if run is not baseline_run:
        paired = pairings[run.pk]
        row.update(p_value=paired["p_value"], improved=paired["improved"], regressed=paired["regressed"])
    return row


def compare_runs(new_run, old_run):
    """SPEC §7's comparison of two runs: {new_run, old_run, common, new_only, old_only
    (task counts), improved, regressed (task ids), p_value, metrics: {name: {old, new, delta}}}."""
    new, old = run_aggregates(new_run), run_aggregates(old_run)
    paired = paired_runs(new_run, old_run)
    new_metrics, old_metrics = new.get("metrics", {}), old.get("metrics", {})
    metrics = {}
    for name in sorted(new_metrics.keys() | old_metrics.keys()):
        new_mean = new_metrics.get(name, {}).get("mean")
        old_mean = old_metrics.get(name, {}).get("mean")
        delta = new_mean - old_mean if new_mean is not None and old_mean is not None else None
        metrics[name] = {"old": old_mean, "new": new_mean, "delta": delta}
    return {
        "new_run": str(new_run.pk),
        "old_run": str(old_run.pk),
        "common": paired["common"],
        "new_only": paired["new_only"],
        "old_only": paired["old_only"],
        "improved": paired["improved"],
        "regressed": paired["regressed"],
        "p_value": paired["p_value"],
        "metrics": metrics,
    }
