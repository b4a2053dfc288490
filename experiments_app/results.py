"""Results of SPEC §7: per-run aggregates, the experiment's results table and run comparison.

A run's tests are read once, by `summarize_run` when the run closes (`store_summary`):
metric and evaluator figures go to `run.aggregates`, the per-task summaries ({task id:
{passed, n, errored, identical}}, what every paired statistic needs) to `run.outcomes`, and
a variant's comparison with the baseline's run (`stats.compare`, plus its guardrails) to
`run.aggregates["vs_baseline"]`, keyed by the baseline run, alpha and guardrails it was
made with; that comparison's improved and regressed task ids to their own columns, as JSON text
(`keep_comparison`), read only by what shows them. The results table reads Run rows without their outcomes and judges the stored
comparisons together (Holm, verdicts, ship: `stats.assess_experiment`), so it costs the
same few queries however many tests there are; a comparison whose key no longer matches
(a newer baseline run, another alpha or guardrails) is made again once and stored.
"""

import functools
import hashlib
import io
import json
from array import array

import orjson
import psycopg
from django.db import connection, connections
from django.db.models import OuterRef, Subquery
from psycopg.types.json import Jsonb

from experiments_app import stats, step_detail
from experiments_app.evaluation import evaluator_names
from experiments_app.models import Run, RunStatus, Test, TestStatus, Variant
from experiments_app.rows import converted, converters
from experiments_app.stats.repetitions import run_pass_at_k

RESULT_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED)
# compare()'s per-task labels are derived from the outcomes when needed, never stored twice.
NOT_STORED = ("labels",)


def output_digest(has_output, output):
    """A short digest of a test's output, to tell byte-identical repetitions (None without output)."""
    if not has_output:
        return None
    encoded = json.dumps(output, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.blake2b(encoded, digest_size=12).hexdigest()


def summarize_run(run, alpha=0.05):
    """Aggregates of one run's tests: {"metrics": {name: summary}, "evaluators":
    {name: {passed, failed, pass_rate}}, "outcomes": per-task summaries, "repetitions":
    {k, flaky, pass_at_k, pass_hat_k, noise…}, "split_half": the run against itself when it
    has repetitions}. Reads the tests in one query; skipped tests are left out."""
    metric_values, evaluator_counts = {}, {}
    per_step = step_detail.StepAggregator()

    def task_rows():
        for task_id, repetition, status, metrics, evaluations, steps, has_output, output in summary_rows(run.pk):
            per_step.add(metrics, steps)
            for name, value in metrics.items() if isinstance(metrics, dict) else ():
                if stats.is_number(value):
                    metric_values.setdefault(name, array("d")).append(value)  # 8 bytes a value, not 32
            for evaluation in evaluations or ():
                if isinstance(evaluation, dict) and isinstance(evaluation.get("name"), str):
                    counts = evaluator_counts.setdefault(evaluation["name"], [0, 0])
                    counts[0 if evaluation.get("passed") else 1] += 1
            # A test whose task was deleted since cannot be paired with another run's.
            if task_id is not None:
                passed = status == TestStatus.PASSED
                yield (str(task_id), repetition, passed, status == TestStatus.ERRORED, output_digest(has_output, output))

    summaries, per_repetition = stats.summarize_tasks(task_rows(), grouped=True)
    return {
        "metrics": {name: stats.summarize(values) for name, values in sorted(metric_values.items())},
        "evaluators": {
            name: {"passed": passed, "failed": failed, "pass_rate": rate(passed, passed + failed)}
            for name, (passed, failed) in evaluator_counts.items()
        },
        "outcomes": summaries,
        "repetitions": repetition_figures(summaries),
        "split_half": stats.split_half(per_repetition, alpha=alpha),
        **per_step.summary(),  # {"steps": per-step detail, "cost": per-test cost}
    }


# What summarize_run reads of each test, JSON columns last.
SUMMARY_FIELDS = tuple(
    Test._meta.get_field(name) for name in ("task", "repetition", "status", "has_output", "metrics", "evaluations", "steps", "output")
)
PLAIN_FIELDS, JSON_COUNT = SUMMARY_FIELDS[:4], 4


@functools.cache
def summary_sql(vendor):
    quote = connection.ops.quote_name  # the same for every connection of a vendor
    column = {field.name: quote(field.column) for field in Test._meta.concrete_fields}
    return (
        f"SELECT {', '.join(quote(field.column) for field in SUMMARY_FIELDS)} FROM {quote(Test._meta.db_table)}"
        f" WHERE {column['run']} = %s AND {column['status']} <> %s"
        f" ORDER BY {column['task']}, {column['repetition']}"  # a task's tests together: summarized a task at a time
    )


def decode_figures(text):
    """A JSON column of figures (metrics, evaluations, steps) as JSONField.from_db_value gives it,
    but decoded by orjson (json.loads was a third of a close's CPU at 100,000 tests). orjson reads
    an integer beyond 64 bits as a float: these columns' numbers become floats all the same."""
    return None if text is None else orjson.loads(text)


def decode_output(text):
    """The output column, exactly as the ORM decodes it: its digest tells identical repetitions."""
    return None if text is None else json.loads(text)


def summary_rows(run_id):
    """(task_id, repetition, status, metrics, evaluations, steps, has_output, output) of a run's
    tests but the skipped ones, by task and repetition, streamed (a server-side cursor on
    PostgreSQL, as the ORM's iterator): one fixed statement, the figures decoded by orjson."""
    wrapper = connections[connection.alias]  # the connection itself: converters are cached by it
    chunked = wrapper.features.can_use_chunked_reads and not wrapper.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    convert = bool(converters(PLAIN_FIELDS, wrapper))  # on PostgreSQL none: psycopg gives UUIDs and booleans
    with wrapper.chunked_cursor() if chunked else wrapper.cursor() as cursor:
        cursor.execute(summary_sql(wrapper.vendor), [Run._meta.pk.get_db_prep_value(run_id, wrapper), TestStatus.SKIPPED.value])
        while rows := cursor.fetchmany(2000):
            for row in rows:
                task_id, repetition, status, has_output = (
                    converted(PLAIN_FIELDS, row[:JSON_COUNT], wrapper) if convert else row[:JSON_COUNT]
                )
                metrics, evaluations, steps = (decode_figures(value) for value in row[JSON_COUNT:-1])
                output = decode_output(row[-1])
                yield task_id, repetition, status, metrics, evaluations, steps, has_output, output


def repetition_figures(summaries):
    """{k, flaky, pass_at_k, pass_hat_k, between_var, within_var} of one run's task summaries."""
    noise = stats.baseline_noise(summaries)
    k = noise["k"] or 1
    tasks = [summary for summary in summaries.values() if summary["n"] > 0]
    pass_at, pass_hat = run_pass_at_k(tasks, k)
    labels = [stats.task_label(summary) for summary in tasks]
    return {
        "k": k,
        "flaky": labels.count("flaky") if k > 1 else None,
        "pass_at_k": pass_at,
        "pass_hat_k": pass_hat,
        "between_var": noise["between_var"],
        "within_var": noise["within_var"],
    }


def task_summaries(outcomes):
    """Stored per-task summaries; outcomes stored before repetitions counted ({task: passed}) read as one repetition each."""
    return {task: stats.task_summary(int(value), 1) if isinstance(value, bool) else value for task, value in (outcomes or {}).items()}


def guardrail_data(run):
    """What guardrails compare, per task (stats.guardrails): {"metrics": {metric: {task: [values]}},
    "evaluators": {name: {task: [passed, n]}}}, read from the run's tests in one query."""
    metrics, evaluators = {}, {}
    tests = Test.objects.filter(run_id=run.pk, task_id__isnull=False).exclude(status=TestStatus.SKIPPED)
    for task_id, values, evaluations in tests.values_list("task_id", "metrics", "evaluations").iterator(chunk_size=2000):
        task = str(task_id)
        for name, value in values.items() if isinstance(values, dict) else ():
            if stats.is_number(value):
                metrics.setdefault(name, {}).setdefault(task, []).append(value)
        for evaluation in evaluations or ():
            if isinstance(evaluation, dict) and isinstance(evaluation.get("name"), str):
                counts = evaluators.setdefault(evaluation["name"], {}).setdefault(task, [0, 0])
                counts[0] += 1 if evaluation.get("passed") else 0
                counts[1] += 1
    return {"metrics": metrics, "evaluators": evaluators}


def baseline_result_runs(experiment_id):
    """The baseline's succeeded-or-failed runs in an experiment, latest first."""
    return (
        Run.objects.real()
        .filter(experiment_id=experiment_id, variant__parent__isnull=True, status__in=RESULT_STATUSES)
        .order_by("-created_at", "-completed_at")
    )


def comparison_key(baseline_run, experiment):
    return {"run": str(baseline_run.pk), "alpha": experiment.alpha, "guardrail_specs": experiment.guardrails or []}


def make_comparison(run, baseline_run, experiment, outcomes=None, baseline_outcomes=None):
    """The variant run against the baseline run: compare() without its labels, and the
    experiment's guardrails evaluated (None without guardrails), with the key it was made with."""
    outcomes = task_summaries(run.outcomes) if outcomes is None else outcomes
    baseline_outcomes = task_summaries(run_outcomes(baseline_run)) if baseline_outcomes is None else baseline_outcomes
    comparison = stats.compare(outcomes, baseline_outcomes, alpha=experiment.alpha)
    for field in NOT_STORED:
        comparison.pop(field, None)
    guardrails = None
    if experiment.guardrails:
        guardrails = stats.evaluate_guardrails(
            experiment.guardrails, guardrail_data(run), guardrail_data(baseline_run), alpha=experiment.alpha
        )
    return {**comparison_key(baseline_run, experiment), "comparison": comparison, "guardrails": guardrails}


def store_summary(run):
    """Summarize a closed run once and store it: aggregates, per-task summaries and, for a
    variant, its comparison with the baseline's latest result run (what the results table shows)."""
    summary = summarize_run(run, alpha=run.experiment.alpha)
    run.outcomes = summary.pop("outcomes")
    run.aggregates = summary
    fields = {"aggregates": summary, **dict.fromkeys(TASK_LISTS.values())}
    if not run.variant.is_baseline:
        baseline_run = baseline_result_runs(run.experiment_id).first()
        if baseline_run is not None:
            made = make_comparison(run, baseline_run, run.experiment, outcomes=task_summaries(run.outcomes))
            fields = keep_comparison(run, made)
    if connection.vendor == "postgresql":
        Run.objects.filter(pk=run.pk).update(**fields)
        write_outcomes(run.pk, run.outcomes)
    else:  # SQLite binds the document as it is
        Run.objects.filter(pk=run.pk).update(outcomes=run.outcomes, **fields)
    for name, value in fields.items():
        setattr(run, name, value)
    return run


def write_outcomes(run_id, outcomes):
    """Store a run's per-task summaries on PostgreSQL, the document sent as a bound parameter.
    Django's cursors bind on the client, so the document (8.8 MB at 100,000 tasks) was escaped
    into the statement's text: the close's peak held 5 copies of it (42 MB, traced)."""
    raw = psycopg.Cursor(connection.connection)  # server-side binding: the parameter goes apart
    cursor = connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
    table, pk = connection.ops.quote_name(Run._meta.db_table), connection.ops.quote_name(Run._meta.pk.column)
    column = connection.ops.quote_name(Run._meta.get_field("outcomes").column)
    with cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s", [Jsonb(outcomes, dumps=encode_outcomes), run_id])


def encode_outcomes(outcomes):
    """The JSON of {task id: summary}, written a task at a time into one buffer that grows: orjson
    encoding the whole 8.8 MB document at once peaked at 33 MB (traced), this at 9.2 MB. Equal
    summaries are one shared dict (stats.summarize_tasks), so each is encoded once."""
    out, encoded = io.BytesIO(), {}
    out.write(b"{")
    for position, (task, summary) in enumerate(outcomes.items()):
        value = encoded.get(id(summary))
        if value is None:
            value = encoded[id(summary)] = orjson.dumps(summary)
        if position:
            out.write(b",")
        out.write(orjson.dumps(task))
        out.write(b":")
        out.write(value)
    out.write(b"}")
    return out.getvalue()


# A stored comparison's task id lists and the Run columns that hold them as JSON text.
TASK_LISTS = {"improved": "comparison_improved", "regressed": "comparison_regressed"}


def keep_comparison(run, made):
    """{field: value} that store `made` (make_comparison) as `run`'s comparison with the baseline:
    aggregates["vs_baseline"] without the task id lists, which go to their own columns as JSON
    text (the page never reads them; the API writes them as they are)."""
    comparison = {key: value for key, value in made["comparison"].items() if key not in TASK_LISTS}
    return {
        "aggregates": {**run.aggregates, "vs_baseline": {**made, "comparison": comparison}},
        **{column: orjson.dumps(made["comparison"].get(name, [])).decode() for name, column in TASK_LISTS.items()},
    }


def stored_task_lists(run):
    """{"improved": [task id, …], "regressed": […]} of `run`'s stored comparison."""
    return {name: orjson.loads(getattr(run, column) or "[]") for name, column in TASK_LISTS.items()}


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


def stored_comparison(run, baseline_run, experiment):
    """The comparison with `baseline_run` stored at close, if it was made with today's key
    (its task id lists only where result_runs put them back: `stored_task_lists`)."""
    cached = (run.aggregates or {}).get("vs_baseline") if is_summarized(run) else None
    if not cached or "comparison" not in cached:
        return None
    return (
        cached
        if {key: cached.get(key) for key in ("run", "alpha", "guardrail_specs")} == comparison_key(baseline_run, experiment)
        else None
    )


def ordered_evaluators(evaluators, names):
    """Evaluator figures in the experiment's configured order (JSONB does not keep key order), others after."""
    order = {name: index for index, name in enumerate(names)}
    return dict(sorted(evaluators.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


class RawJSON:
    """JSON text read from the database, written into an answer as it is (FastJSONRenderer):
    a results answer's task id lists are never parsed only to be encoded again."""

    def __init__(self, text):
        self.text = text


def result_runs(run_ids, *, task_ids):
    """{id: run} without the per-task outcomes (the comparison with the baseline was stored at
    close); the comparison's task id lists put back as parsed lists (task_ids "lists"), left
    unread ("none") or as RawJSON ("json")."""
    runs = Run.objects.defer("outcomes", *TASK_LISTS.values()) if task_ids == "none" else Run.objects.defer("outcomes")
    runs = runs.in_bulk(run_ids)
    for run in runs.values() if task_ids != "none" else ():
        comparison = (run.aggregates or {}).get("vs_baseline", {}).get("comparison")
        for name, column in TASK_LISTS.items() if comparison is not None else ():
            text = getattr(run, column) or "[]"
            comparison[name] = RawJSON(text) if task_ids == "json" else orjson.loads(text)
    return runs


def experiment_results(experiment, *, task_ids="lists"):
    """{"baseline": R, "variants": [R, …]} of SPEC §8, one R per variant from its latest
    succeeded-or-failed run, judged together (Holm over the variants, verdicts, guardrails).
    Two queries when every comparison is stored, whatever the number of variants or tests.
    `task_ids` says how each R's improved and regressed come: "lists" of ids, "none" (empty, never
    read: pages that show no task list) or "json" (RawJSON, for an API answer)."""
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
    runs = result_runs([variant.result_run_id for variant in variants if variant.result_run_id], task_ids=task_ids)
    names = evaluator_names(experiment.evaluators)

    baseline_variant = next((variant for variant in variants if variant.is_baseline), None)
    baseline_run = runs.get(baseline_variant.result_run_id) if baseline_variant else None
    others = [variant for variant in variants if not variant.is_baseline]
    comparisons = compare_with_baseline([runs[v.result_run_id] for v in others if v.result_run_id], baseline_run, experiment)
    baseline = result_row(baseline_variant, baseline_run, names, baseline_run, None) if baseline_variant else None
    rows = [
        result_row(variant, runs.get(variant.result_run_id), names, baseline_run, comparisons.get(variant.result_run_id))
        for variant in others
    ]
    judge_rows(rows, experiment)
    for row in rows:
        row["steps"] = step_detail.with_deltas(row["steps"], baseline["steps"] if baseline else None)
    return {"baseline": baseline, "variants": rows}


def compare_with_baseline(runs, baseline_run, experiment):
    """{run id: comparison with baseline_run} for the given variant runs: the stored one, or
    (a run closed before this baseline run, with another alpha or guardrails, or never
    summarized) made again, stored for next time, the outcomes read in one query."""
    if baseline_run is None:
        return {}
    comparisons = {run.pk: stored_comparison(run, baseline_run, experiment) for run in runs}
    missing = [run for run in runs if comparisons[run.pk] is None]
    if missing:
        wanted = [run for run in [baseline_run, *missing] if is_summarized(run)]
        stored = dict(Run.objects.filter(pk__in=[run.pk for run in wanted]).values_list("pk", "outcomes"))

        def outcomes(run):
            return task_summaries(stored.get(run.pk) if is_summarized(run) else summarize_run(run)["outcomes"])

        base = outcomes(baseline_run)
        for run in missing:
            comparisons[run.pk] = made = make_comparison(run, baseline_run, experiment, outcomes(run), base)
            if is_summarized(run):  # keep it: the next read costs nothing
                Run.objects.filter(pk=run.pk).update(**keep_comparison(run, made))
    return comparisons


VERDICT_FIELDS = ("p_value_adjusted", "significant", "tasks_needed", "warnings", "verdict", "ship")


def judge_rows(rows, experiment):
    """Holm over every variant with a comparison (the control included), then each row's
    verdict, warnings (baseline_drift from the control) and ship (stats.assess_experiment)."""
    judged = [row for row in rows if not row["is_baseline"]]
    comparisons = {row["variant"]: row.pop("_comparison", None) for row in judged}
    control = next((row["variant"] for row in judged if row["is_control"]), None)
    guardrails = {row["variant"]: row["guardrails"] for row in judged} if experiment.guardrails else None
    assessed = stats.assess_experiment(comparisons, alpha=experiment.alpha, control=control, guardrails=guardrails)
    for row in judged:
        row.update({field: assessed[row["variant"]][field] for field in VERDICT_FIELDS})
        if comparisons[row["variant"]] is None and row["run"] is not None:
            row["verdict"] = {"code": "pending", "text": "pending: no comparison yet (the baseline has no result)"}


def result_row(variant, run, names, baseline_run, vs_baseline):
    """One R of SPEC §8 (the verdict fields are filled by `judge_rows`). Without a result every
    figure is None and the collections are empty."""
    row = {
        "variant": str(variant.pk),
        "name": variant.name,
        "parent": str(variant.parent_id) if variant.parent_id else None,
        "is_baseline": variant.is_baseline,
        "is_control": variant.is_control,
        "change": variant.change(),
        "run": None,
        "status": None,
        "pass_rate": None,
        "pass_rate_vs_baseline": None,
        "delta_pp": None,
        "delta_ci_low": None,
        "delta_ci_high": None,
        "ci_low": None,
        "ci_high": None,
        "p_value": None,
        "p_value_adjusted": None,
        "significant": False,
        "verdict": None if variant.is_baseline else {"code": "pending", "text": "pending: no result yet"},
        "mde_pp": None,
        "tasks_needed": None,
        "total": None,
        "passed": None,
        "failed": None,
        "errored": None,
        "skipped": None,
        "stopped_early": None,
        "flaky": None,
        "pass_at_k": None,
        "pass_hat_k": None,
        "warnings": [],
        "guardrails": [],
        "ship": None,
        "improved": [],
        "regressed": [],
        "completed_at": None,
        "metrics": {},
        "evaluators": {},
        "cost_per_test": None,
        "cost_per_passed": None,
        "steps": {},
        "noise": None,
    }
    if run is None:
        return row
    aggregates = run_aggregates(run)
    pass_rate = rate(run.passed, run.total)
    ci_low, ci_high = stats.wilson_interval(run.passed, run.total)
    repetitions = aggregates.get("repetitions") or {}
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
        skipped=run.skipped,
        stopped_early=run.stopped_early,
        flaky=repetitions.get("flaky"),
        pass_at_k=repetitions.get("pass_at_k"),
        pass_hat_k=repetitions.get("pass_hat_k"),
        completed_at=run.completed_at,
        metrics=dict(sorted(aggregates.get("metrics", {}).items())),
        evaluators=ordered_evaluators(aggregates.get("evaluators", {}), names),
        steps=aggregates.get("steps", {}),
        noise={
            "k": repetitions.get("k", 1),
            "between_var": repetitions.get("between_var"),
            "within_var": repetitions.get("within_var"),
            "se": None,
            "se_floor": None,
            "split_half": aggregates.get("split_half"),
            "flip_rate": None,
        },
        **step_detail.cost_figures(aggregates, run.passed),
    )
    if baseline_run is None:
        return row
    base_rate = rate(baseline_run.passed, baseline_run.total)
    if pass_rate is not None and base_rate is not None:
        row["delta_pp"] = (pass_rate - base_rate) * 100
        row["pass_rate_vs_baseline"] = (pass_rate - base_rate) / base_rate if base_rate else None
    if vs_baseline is None:
        # The baseline compared with itself: delta 0 and change 0 (as its own figures say),
        # but no p-value and no improved/regressed tasks, since there is nothing to test.
        return row
    comparison = vs_baseline["comparison"]
    if comparison["delta_pp"] is not None:
        row["delta_pp"] = comparison["delta_pp"]  # paired, over the common tasks
    row.update(
        {field: comparison[field] for field in ("delta_ci_low", "delta_ci_high", "p_value", "mde_pp")},
        improved=comparison.get("improved", []),  # absent when read without task ids (experiment_results)
        regressed=comparison.get("regressed", []),
        guardrails=vs_baseline["guardrails"] or [],
        _comparison=comparison,
    )
    row["noise"].update(se=comparison.get("se"), se_floor=comparison.get("se_floor"), test=comparison.get("test"))
    row["noise"].update(ci_method=comparison.get("ci_method"), common=comparison.get("common"))
    if variant.is_control:
        row["noise"]["flip_rate"] = comparison_flip_rate(comparison)
    return row


def comparison_flip_rate(comparison):
    """Share of common tasks whose outcome differs between the two runs (k = 1: the discordance)."""
    if comparison.get("discordance") is not None:
        return comparison["discordance"]
    common = comparison.get("common") or 0
    return (comparison.get("b", 0) + comparison.get("c", 0)) / common if common else None


def run_labels(run):
    """{task id: stable_pass | stable_fail | flaky} of one run's tasks."""
    return {task: stats.task_label(summary) for task, summary in task_summaries(run_outcomes(run)).items() if summary["n"] > 0}


def compare_runs(new_run, old_run):
    """SPEC §7's comparison of two runs: {new_run, old_run, common, new_only, old_only
    (task counts), improved, regressed (task ids), p_value, delta_pp, delta_ci_low,
    delta_ci_high, metrics: {name: {old, new, delta}}}, at the experiment's alpha."""
    new, old = run_aggregates(new_run), run_aggregates(old_run)
    experiment = new_run.experiment
    cached = stored_comparison(new_run, old_run, experiment)
    if cached is not None:
        paired = {**cached["comparison"], **stored_task_lists(new_run)}
    else:
        paired = stats.compare(task_summaries(run_outcomes(new_run)), task_summaries(run_outcomes(old_run)), alpha=experiment.alpha)
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
        "delta_pp": paired["delta_pp"],
        "delta_ci_low": paired["delta_ci_low"],
        "delta_ci_high": paired["delta_ci_high"],
        "metrics": metrics,
    }


def tasks_labelled(run, label):
    """The task ids of the run with `label` (api ?label=): stable_pass, stable_fail and flaky
    from the run's own repetitions; improved and regressed against the baseline's latest result."""
    if label in ("improved", "regressed"):
        baseline_run = baseline_result_runs(run.experiment_id).first()
        if baseline_run is None or baseline_run.pk == run.pk:
            return []
        if stored_comparison(run, baseline_run, run.experiment) is not None:
            return stored_task_lists(run)[label]
        return make_comparison(run, baseline_run, run.experiment, task_summaries(run_outcomes(run)))["comparison"][label]
    return [task for task, task_label in run_labels(run).items() if task_label == label]
