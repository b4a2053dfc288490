import datetime

import pytest
from django.utils import timezone
from scipy.stats import binomtest

from experiments_app import results, stats
from experiments_app.models import Run, RunStatus, Test, Variant
from experiments_app.models import TestStatus as Status
from tests.factories import make_ready_experiment

pytestmark = pytest.mark.django_db

R_KEYS = {
    "variant",
    "name",
    "parent",
    "is_baseline",
    "change",
    "run",
    "status",
    "pass_rate",
    "pass_rate_vs_baseline",
    "delta_pp",
    "ci_low",
    "ci_high",
    "p_value",
    "total",
    "passed",
    "failed",
    "errored",
    "improved",
    "regressed",
    "completed_at",
    "metrics",
    "evaluators",
    # issue 13: what a result cost, and its per-step detail (SPEC §5 `steps`, aggregated per run)
    "cost_per_test",
    "cost_per_passed",
    "steps",
    # issue 9: SPEC §7 verdict fields, and the noise figures behind them
    "delta_ci_low",
    "delta_ci_high",
    "p_value_adjusted",
    "significant",
    "verdict",
    "mde_pp",
    "tasks_needed",
    "flaky",
    "pass_at_k",
    "pass_hat_k",
    "warnings",
    "guardrails",
    "ship",
    "stopped_early",
    "skipped",
    "is_control",
    "noise",
}

P, F, E = Status.PASSED, Status.FAILED, Status.ERRORED


def make_variant(experiment, parent=None, value=0.3, name=None):
    parent = parent or experiment.baseline
    step = experiment.inference_steps.get()
    return Variant.objects.create(
        experiment=experiment, parent=parent, name=name or f"temp {value}", inference_step=step, parameter="temperature", value=value
    )


def make_run(variant, statuses, *, status=RunStatus.SUCCEEDED, metrics=None, evaluations=None, summarize=True, created_at=None):
    """A closed run whose tests have the given statuses: {task: [status per repetition]}."""
    run = Run.objects.create(experiment=variant.experiment, variant=variant, status=status, completed_at=timezone.now())
    if created_at:
        Run.objects.filter(pk=run.pk).update(created_at=created_at)
    tests = []
    for task, repetitions in statuses.items():
        for number, test_status in enumerate(repetitions, start=1):
            tests.append(
                Test(
                    run=run,
                    task=task,
                    repetition=number,
                    task_external_id=task.external_id,
                    status=test_status,
                    has_output=test_status != E,
                    metrics=(metrics or {}).get((task.external_id, number), {}),
                    evaluations=(evaluations or {}).get((task.external_id, number), []),
                )
            )
    Test.objects.bulk_create(tests)
    Run.objects.filter(pk=run.pk).update(**run.count_tests())
    run.refresh_from_db()
    if summarize:
        results.store_summary(run)
    return run


@pytest.fixture
def experiment():
    return make_ready_experiment(n_tasks=4)


@pytest.fixture
def tasks(experiment):
    return list(experiment.tasks.order_by("external_id"))


def test_summarize_run_summarizes_each_numeric_metric(experiment, tasks):
    metrics = {
        (tasks[0].external_id, 1): {"latency_ms": 100, "cost_usd": 0.5, "note": "slow", "flag": True},
        (tasks[1].external_id, 1): {"latency_ms": 300},
    }
    run = make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [F]}, metrics=metrics)
    assert run.aggregates["metrics"] == {
        "cost_usd": stats.summarize([0.5]),
        "latency_ms": stats.summarize([100, 300]),
    }


def test_summarize_run_counts_each_evaluator(experiment, tasks):
    evaluations = {
        (tasks[0].external_id, 1): [{"name": "exact", "passed": True}, {"name": "fast", "passed": False}],
        (tasks[1].external_id, 1): [{"name": "exact", "passed": False}, {"name": "fast", "passed": False}],
        (tasks[2].external_id, 1): [{"name": "exact", "passed": True}, {"name": "fast", "passed": True}],
    }
    run = make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [F], tasks[2]: [F]}, evaluations=evaluations)
    assert run.aggregates["evaluators"] == {
        "exact": {"passed": 2, "failed": 1, "pass_rate": pytest.approx(2 / 3)},
        "fast": {"passed": 1, "failed": 2, "pass_rate": pytest.approx(1 / 3)},
    }


def test_summarize_run_keeps_each_tasks_passes_over_its_repetitions(experiment, tasks):
    run = make_run(experiment.baseline, {tasks[0]: [P, P, F], tasks[1]: [P, F], tasks[2]: [E, F, P], tasks[3]: [P, E, P]})
    counts = {task: (summary["passed"], summary["n"], summary["errored"]) for task, summary in run.outcomes.items()}
    assert counts == {str(tasks[0].pk): (2, 3, 0), str(tasks[1].pk): (1, 2, 0), str(tasks[2].pk): (1, 3, 1), str(tasks[3].pk): (2, 3, 1)}
    stored = Run.objects.get(pk=run.pk)
    assert "outcomes" not in stored.aggregates  # kept apart from what the results table reads
    assert stored.outcomes == run.outcomes == results.summarize_run(run)["outcomes"]  # written by orjson, read back the same


def test_a_variant_stores_its_pairing_with_the_baseline_when_it_closes(experiment, tasks):
    baseline = make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [F], tasks[2]: [P]})
    run = make_run(make_variant(experiment), {tasks[0]: [F], tasks[1]: [P], tasks[2]: [P]})
    stored_run = Run.objects.get(pk=run.pk)
    stored = stored_run.aggregates["vs_baseline"]
    assert (stored["run"], stored["alpha"], stored["guardrail_specs"]) == (str(baseline.pk), 0.05, [])
    comparison = stored["comparison"]
    assert comparison["p_value"] == stats.mcnemar_exact(1, 1) == 1.0
    # the task id lists are kept apart from the aggregates, as JSON text
    assert "improved" not in comparison and "regressed" not in comparison
    assert (stored_run.comparison_improved, stored_run.comparison_regressed) == (f'["{tasks[1].pk}"]', f'["{tasks[0].pk}"]')
    assert results.stored_task_lists(stored_run) == {"improved": [str(tasks[1].pk)], "regressed": [str(tasks[0].pk)]}
    assert "vs_baseline" not in Run.objects.get(pk=baseline.pk).aggregates


def test_a_stored_pairing_with_an_older_baseline_run_is_not_used(experiment, tasks):
    make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [P]}, created_at=timezone.now() - datetime.timedelta(hours=1))
    run = make_run(make_variant(experiment), {tasks[0]: [F], tasks[1]: [P]})
    newer = make_run(experiment.baseline, {tasks[0]: [F], tasks[1]: [F]})
    row = results.experiment_results(experiment)["variants"][0]
    assert run.aggregates["vs_baseline"]["run"] != str(newer.pk)
    assert (row["improved"], row["regressed"]) == ([str(tasks[1].pk)], [])  # paired with the newer baseline run


def test_results_pair_runs_closed_before_their_baseline_from_stored_outcomes(experiment, tasks, django_assert_max_num_queries):
    variant_run = make_run(make_variant(experiment), {tasks[0]: [P], tasks[1]: [F]})  # no baseline result yet
    assert "vs_baseline" not in variant_run.aggregates
    make_run(experiment.baseline, {tasks[0]: [F], tasks[1]: [F]})
    # variants, runs, both runs' outcomes in one query, and storing the comparison made
    with django_assert_max_num_queries(4):
        row = results.experiment_results(experiment)["variants"][0]
    assert (row["improved"], row["regressed"]) == ([str(tasks[0].pk)], [])
    with django_assert_max_num_queries(2):  # stored: the next read makes nothing again
        assert results.experiment_results(experiment)["variants"][0]["improved"] == [str(tasks[0].pk)]


def test_results_without_task_ids_are_the_same_rows_with_empty_task_lists(experiment, tasks):
    """The experiment page reads the results without the comparison's task id lists (cut out by the
    database); everything else is what the API answers."""
    make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [F], tasks[2]: [P], tasks[3]: [F]})
    make_run(make_variant(experiment), {tasks[0]: [F], tasks[1]: [P], tasks[2]: [P], tasks[3]: [P]})
    full = results.experiment_results(experiment)
    light = results.experiment_results(experiment, task_ids="none")
    row = full["variants"][0]
    assert (row["improved"], row["regressed"]) == (sorted([str(tasks[1].pk), str(tasks[3].pk)]), [str(tasks[0].pk)])
    assert (light["variants"][0]["improved"], light["variants"][0]["regressed"]) == ([], [])
    for answer in (full, light):
        answer["variants"][0].update(improved=None, regressed=None)
    assert light == full


def test_results_without_task_ids_rejudged_keep_the_stored_task_lists(experiment, tasks):
    """A comparison made again on a read without task ids (here: a newer baseline run) is stored
    whole, task lists included, for the API's next read."""
    make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [P]}, created_at=timezone.now() - datetime.timedelta(hours=1))
    run = make_run(make_variant(experiment), {tasks[0]: [F], tasks[1]: [P]})
    newer = make_run(experiment.baseline, {tasks[0]: [F], tasks[1]: [F]})
    results.experiment_results(experiment, task_ids="none")
    stored_run = Run.objects.get(pk=run.pk)
    stored = stored_run.aggregates
    assert stored["vs_baseline"]["run"] == str(newer.pk)
    assert results.stored_task_lists(stored_run) == {"improved": [str(tasks[1].pk)], "regressed": []}
    assert results.experiment_results(experiment, task_ids="json")["variants"][0]["improved"].text == f'["{tasks[1].pk}"]'
    assert {key: value for key, value in stored.items() if key != "vs_baseline"} == {
        key: value for key, value in run.aggregates.items() if key != "vs_baseline"
    }
    row = results.experiment_results(experiment)["variants"][0]
    assert (row["improved"], row["regressed"]) == ([str(tasks[1].pk)], [])


def test_summarize_run_reads_only_its_own_tests(experiment, tasks):
    make_run(experiment.baseline, {task: [P] for task in tasks}, metrics={(tasks[0].external_id, 1): {"latency_ms": 9}})
    run = make_run(make_variant(experiment), {tasks[0]: [F]})
    assert list(run.outcomes) == [str(tasks[0].pk)]
    assert (run.outcomes[str(tasks[0].pk)]["passed"], run.outcomes[str(tasks[0].pk)]["n"]) == (0, 1)
    assert run.aggregates["metrics"] == {}


def test_summarize_run_skips_tests_whose_task_was_deleted(experiment, tasks):
    run = make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [P]}, summarize=False)
    Test.objects.filter(run=run, task=tasks[1]).update(task=None)
    assert set(results.summarize_run(run)["outcomes"]) == {str(tasks[0].pk)}


def test_summarize_run_reads_tests_in_one_query(experiment, tasks, django_assert_num_queries):
    run = make_run(experiment.baseline, {task: [P, F] for task in tasks}, summarize=False)
    with django_assert_num_queries(1):
        results.summarize_run(run)


def test_summary_rows_are_what_the_orm_reads_big_integers_and_unicode_included(experiment, tasks):
    """summarize_run's fixed statement decodes the figures with orjson and the output as the ORM
    does (an integer beyond 64 bits stays exact: the output's digest tells identical repetitions)."""
    run = make_run(experiment.baseline, {task: [P, F] for task in tasks}, summarize=False)
    first, second = Test.objects.filter(run=run).order_by("task_id", "repetition")[:2]
    Test.objects.filter(pk=first.pk).update(
        output={"n": 123456789012345678901234567890, "é": ["✓", None, 2.5]}, has_output=True, metrics={"cost_usd": 1e-9}
    )
    Test.objects.filter(pk=second.pk).update(output=None, has_output=False, evaluations=[{"name": "x", "passed": True}], steps={"s": {}})
    Test.objects.filter(run=run, pk__in=[first.pk]).update(task=None)  # a deleted task: NULL, ordered as the ORM orders it
    expected = list(
        Test.objects.filter(run_id=run.pk)
        .exclude(status=Status.SKIPPED)
        .order_by("task_id", "repetition")
        .values_list("task_id", "repetition", "status", "metrics", "evaluations", "steps", "has_output", "output")
    )
    got = list(results.summary_rows(run.pk))
    assert got == [tuple(row) for row in expected]
    assert any(row[7] == {"n": 123456789012345678901234567890, "é": ["✓", None, 2.5]} for row in got)


def test_results_rows_have_exactly_the_spec_keys(experiment, tasks):
    make_run(experiment.baseline, {task: [P] for task in tasks})
    make_variant(experiment)
    answer = results.experiment_results(experiment)
    assert set(answer) == {"baseline", "variants"}
    assert set(answer["baseline"]) == R_KEYS
    assert all(set(row) == R_KEYS for row in answer["variants"])


def test_baseline_row_compares_with_itself_as_zero_change(experiment, tasks):
    run = make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [P], tasks[2]: [F], tasks[3]: [E]})
    row = results.experiment_results(experiment)["baseline"]
    assert row["variant"] == str(experiment.baseline.pk)
    assert row["is_baseline"] is True and row["parent"] is None and row["change"] is None
    assert row["run"] == str(run.pk) and row["status"] == "succeeded"
    assert (row["total"], row["passed"], row["failed"], row["errored"]) == (4, 2, 1, 1)
    assert row["pass_rate"] == 0.5
    assert (row["ci_low"], row["ci_high"]) == stats.wilson_interval(2, 4)
    assert row["pass_rate_vs_baseline"] == 0.0 and row["delta_pp"] == 0.0
    assert row["p_value"] is None and row["improved"] == [] and row["regressed"] == []
    assert isinstance(row["completed_at"], datetime.datetime)


def test_variant_row_compares_with_the_baseline(experiment, tasks):
    make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [F], tasks[2]: [F], tasks[3]: [P]})
    variant = make_variant(experiment)
    make_run(variant, {tasks[0]: [P], tasks[1]: [P], tasks[2]: [P], tasks[3]: [F]})
    row = results.experiment_results(experiment)["variants"][0]
    assert row["variant"] == str(variant.pk)
    assert row["parent"] == str(experiment.baseline.pk)
    assert row["change"] == {"step": "main", "parameter": "temperature", "value": 0.3}
    assert row["pass_rate"] == 0.75
    assert row["pass_rate_vs_baseline"] == pytest.approx(0.5)  # (0.75 - 0.5) / 0.5
    assert row["delta_pp"] == pytest.approx(25.0)
    assert row["improved"] == sorted([str(tasks[1].pk), str(tasks[2].pk)])
    assert row["regressed"] == [str(tasks[3].pk)]
    assert row["p_value"] == pytest.approx(binomtest(1, 3, 0.5).pvalue)


def test_variant_p_value_with_repetitions_is_the_sign_flip_test_on_task_differences(experiment, tasks):
    make_run(experiment.baseline, {task: [F, F, P] for task in tasks})
    variant = make_variant(experiment)
    make_run(variant, {task: [P, P, F] for task in tasks})
    row = results.experiment_results(experiment)["variants"][0]
    # Every task's d_i = 2/3 − 1/3 > 0: the exact two-sided sign-flip p is 2 / 2^4 (SPEC §7).
    assert row["p_value"] == pytest.approx(0.125)
    # 2 of 3 against 1 of 3 is within a task's own repetition noise (Fisher p > alpha): not improved.
    assert row["improved"] == [] and row["regressed"] == []


def test_variant_without_a_result_has_null_figures(experiment, tasks):
    make_run(experiment.baseline, {task: [P] for task in tasks})
    make_variant(experiment)
    row = results.experiment_results(experiment)["variants"][0]
    for key in (
        "run",
        "status",
        "pass_rate",
        "pass_rate_vs_baseline",
        "delta_pp",
        "ci_low",
        "ci_high",
        "p_value",
        "total",
        "passed",
        "failed",
        "errored",
        "completed_at",
    ):
        assert row[key] is None, key
    assert (row["improved"], row["regressed"], row["metrics"], row["evaluators"]) == ([], [], {}, {})


def test_cancelled_and_active_runs_are_not_results(experiment, tasks):
    variant = make_variant(experiment)
    make_run(variant, {tasks[0]: [P]}, status=RunStatus.CANCELLED)
    make_run(variant, {tasks[0]: [P]}, status=RunStatus.RUNNING)
    assert results.experiment_results(experiment)["variants"][0]["run"] is None


def test_latest_succeeded_or_failed_run_is_the_result(experiment, tasks):
    variant = make_variant(experiment)
    earlier = timezone.now() - datetime.timedelta(hours=2)
    make_run(variant, {tasks[0]: [P]}, created_at=earlier)
    latest = make_run(variant, {tasks[0]: [E]}, status=RunStatus.FAILED, created_at=earlier + datetime.timedelta(hours=1))
    make_run(variant, {tasks[0]: [P]}, status=RunStatus.CANCELLED)
    row = results.experiment_results(experiment)["variants"][0]
    assert row["run"] == str(latest.pk)
    assert row["status"] == "failed"
    assert row["errored"] == 1


def test_change_vs_baseline_is_null_when_the_baseline_never_passed(experiment, tasks):
    make_run(experiment.baseline, {task: [F] for task in tasks})
    make_run(make_variant(experiment), {task: [P] for task in tasks})
    answer = results.experiment_results(experiment)
    assert answer["baseline"]["pass_rate_vs_baseline"] is None
    assert answer["variants"][0]["pass_rate_vs_baseline"] is None
    assert answer["variants"][0]["delta_pp"] == pytest.approx(100.0)


def test_without_a_baseline_result_variants_have_no_comparison(experiment, tasks):
    make_run(make_variant(experiment), {task: [P] for task in tasks})
    answer = results.experiment_results(experiment)
    assert answer["baseline"]["run"] is None
    row = answer["variants"][0]
    assert row["pass_rate"] == 1.0
    assert (row["pass_rate_vs_baseline"], row["delta_pp"], row["p_value"]) == (None, None, None)


def test_results_come_from_stored_aggregates_not_from_tests(experiment, tasks):
    run = make_run(experiment.baseline, {task: [P] for task in tasks})
    run.aggregates = {**run.aggregates, "metrics": {"latency_ms": stats.summarize([42])}}
    run.save(update_fields=["aggregates"])
    Test.objects.filter(run=run).delete()
    assert results.experiment_results(experiment)["baseline"]["metrics"] == {"latency_ms": stats.summarize([42])}


def test_results_list_evaluators_in_configured_order(experiment, tasks):
    experiment.evaluators = [{"type": "regex", "pattern": "x", "name": "zeta"}, {"type": "contains", "value": "a", "name": "alpha"}]
    experiment.save(update_fields=["evaluators"])
    evaluations = {(tasks[0].external_id, 1): [{"name": "alpha", "passed": True}, {"name": "zeta", "passed": False}]}
    make_run(experiment.baseline, {tasks[0]: [F]}, evaluations=evaluations)
    assert list(results.experiment_results(experiment)["baseline"]["evaluators"]) == ["zeta", "alpha"]


def test_results_variants_are_listed_in_creation_order_without_the_baseline(experiment, tasks):
    first = make_variant(experiment, value=0.1)
    second = make_variant(experiment, parent=first, value=0.2)
    answer = results.experiment_results(experiment)
    assert [row["variant"] for row in answer["variants"]] == [str(first.pk), str(second.pk)]
    assert answer["variants"][1]["parent"] == str(first.pk)


@pytest.mark.parametrize("n_variants", [1, 8])
def test_results_use_a_bounded_number_of_queries(experiment, tasks, n_variants, django_assert_max_num_queries):
    make_run(experiment.baseline, {task: [P, F] for task in tasks})
    for index in range(n_variants):
        make_run(make_variant(experiment, value=index / 10 + 0.05), {task: [P, P] for task in tasks})
    with django_assert_max_num_queries(2):
        answer = results.experiment_results(experiment)
    assert len(answer["variants"]) == n_variants
    assert all(row["total"] == 8 for row in answer["variants"])


def test_results_of_a_run_without_aggregates_are_computed_on_the_spot(experiment, tasks):
    make_run(experiment.baseline, {tasks[0]: [P]}, metrics={(tasks[0].external_id, 1): {"latency_ms": 5}}, summarize=False)
    assert results.experiment_results(experiment)["baseline"]["metrics"]["latency_ms"]["mean"] == 5.0


def test_compare_runs_answers_the_spec_shape(experiment, tasks):
    old = make_run(
        experiment.baseline,
        {tasks[0]: [P], tasks[1]: [P], tasks[2]: [F]},
        metrics={(tasks[0].external_id, 1): {"latency_ms": 100, "tokens": 10}, (tasks[1].external_id, 1): {"latency_ms": 200}},
    )
    new = make_run(
        make_variant(experiment),
        {tasks[1]: [F], tasks[2]: [P], tasks[3]: [P]},
        metrics={(tasks[1].external_id, 1): {"latency_ms": 120, "cost_usd": 0.1}},
    )
    comparison = results.compare_runs(new, old)
    assert comparison == {
        "new_run": str(new.pk),
        "old_run": str(old.pk),
        "common": 2,
        "new_only": 1,
        "old_only": 1,
        "improved": [str(tasks[2].pk)],
        "regressed": [str(tasks[1].pk)],
        "p_value": 1.0,
        # one task each way: Δ = 0 with Newcombe's paired interval (both=0, b=1, c=1, neither=0)
        "delta_pp": 0.0,
        "delta_ci_low": pytest.approx(100 * stats.newcombe_paired_interval(0, 1, 1, 0)[0]),
        "delta_ci_high": pytest.approx(100 * stats.newcombe_paired_interval(0, 1, 1, 0)[1]),
        "metrics": {
            "cost_usd": {"old": None, "new": 0.1, "delta": None},
            "latency_ms": {"old": 150.0, "new": 120.0, "delta": -30.0},
            "tokens": {"old": 10.0, "new": None, "delta": None},
        },
    }


def test_compare_runs_summarizes_a_run_that_is_still_running(experiment, tasks):
    old = make_run(experiment.baseline, {task: [F] for task in tasks})
    new = make_run(make_variant(experiment), {task: [P] for task in tasks}, status=RunStatus.RUNNING, summarize=False)
    comparison = results.compare_runs(new, old)
    assert len(comparison["improved"]) == 4
    assert comparison["p_value"] == 0.125


def test_significant_only_below_alpha():
    assert results.significant(0.01) is True
    assert results.significant(0.05) is False
    assert results.significant(None) is False
    assert results.significant(0.07, alpha=0.1) is True


@pytest.mark.django_db(transaction=True)
def test_migration_0012_moves_stored_task_lists_out_of_the_aggregates_and_back(experiment, tasks):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [F], tasks[2]: [P]})
    run = make_run(make_variant(experiment), {tasks[0]: [F], tasks[1]: [P], tasks[2]: [P]})
    lists = {"improved": [str(tasks[1].pk)], "regressed": [str(tasks[0].pk)]}
    before, after = (
        [("experiments_app", "0011_verdicts_alpha_guardrails_control_live")],
        [("experiments_app", "0012_run_comparison_task_lists")],
    )

    def migrate(target):
        executor = MigrationExecutor(connection)
        executor.migrate(target)
        return executor.loader.project_state(target).apps.get_model("experiments_app", "Run")

    try:
        old_run = migrate(before).objects.get(pk=run.pk)  # back: the lists return into the aggregates
        assert {name: old_run.aggregates["vs_baseline"]["comparison"][name] for name in lists} == lists
        new_run = migrate(after).objects.get(pk=run.pk)  # forward: out again, as JSON text
        assert not lists.keys() & new_run.aggregates["vs_baseline"]["comparison"].keys()
        assert results.stored_task_lists(new_run) == lists
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert results.experiment_results(experiment)["variants"][0]["improved"] == lists["improved"]


def test_encode_outcomes_is_the_json_of_the_summaries_whatever_the_keys():
    import orjson

    shared = {"passed": 1, "n": 2, "errored": 0, "identical": True}
    outcomes = {'a"b\\c': shared, "é ✓\n": shared, "plain": {"passed": 0, "n": 1, "errored": 1, "identical": False}}
    assert orjson.loads(results.encode_outcomes(outcomes)) == outcomes
    assert results.encode_outcomes({}) == b"{}"
