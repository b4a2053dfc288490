"""Writing a run's tests at its start: one row per task × repetition with the task's snapshot and
every other field at its default, in claim order (PostgreSQL makes them inside the database with
INSERT … SELECT; SQLite through bulk_create: the same rows either way)."""

import pytest
from django.db import connection

from experiments_app import actions, runs
from experiments_app.models import Test, TestStatus
from experiments_app.runs.start import selected_tests_query
from tests.api_fixtures import finish_run, ready_experiment
from tests.factories import make_application

pytestmark = pytest.mark.django_db


def insertion_order(run):
    """(external id, repetition) of the run's tests in physical order, the order the claim reads
    them through the (run, status) index (equal keys are kept in heap order). On SQLite that is
    the order they were written; on PostgreSQL too while new pages are filled, but rows may land
    in space freed on earlier pages (here: by the baseline's updates)."""
    table = connection.ops.quote_name(Test._meta.db_table)
    order, run_id = ("ctid", run.pk) if connection.vendor == "postgresql" else ("rowid", run.pk.hex)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT task_external_id, repetition FROM {table} WHERE run_id = %s ORDER BY {order}", [run_id])
        return cursor.fetchall()


@pytest.fixture
def experiment(team):
    experiment = ready_experiment(make_application(team), n_tasks=40)
    actions.update_experiment(experiment, repetitions=2)
    experiment.refresh_from_db()
    return experiment


def test_each_test_snapshots_its_task_and_starts_pending_with_defaults(experiment):
    run = runs.start_baseline_run(experiment)
    assert run.total == 80 and Test.objects.filter(run=run).count() == 80
    tasks = {task.pk: task for task in experiment.tasks.all()}
    for test in Test.objects.filter(run=run):
        task = tasks[test.task_id]
        assert (test.task_external_id, test.task_input, test.task_expected) == (task.external_id, task.input, task.expected)
        assert (test.status, test.attempts, test.lost_attempts, test.output, test.has_output) == (TestStatus.PENDING, 0, 0, None, False)
        assert (test.metrics, test.evaluations, test.steps, test.error, test.trace_id) == ({}, [], {}, "", "")
        assert test.next_attempt_at is None and test.lease_until is None and test.created_at is not None
    assert sorted(Test.objects.filter(run=run).values_list("task_id", "repetition")) == sorted(
        (pk, repetition) for pk in tasks for repetition in (1, 2)
    )


def test_the_baseline_goes_out_by_task_and_a_variant_in_random_task_order_repetitions_together(experiment):
    baseline_order = insertion_order(finish_run(runs.start_baseline_run(experiment)))
    assert baseline_order == sorted(baseline_order)
    experiment.refresh_from_db()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    variant_order = insertion_order(runs.start_variant_run(variant))
    assert sorted(variant_order) == baseline_order
    assert variant_order != baseline_order  # 40 tasks in sorted order by chance: 1 in 40!
    if connection.vendor == "sqlite":  # written in order: a task's repetitions together
        assert all(variant_order[index][0] == variant_order[index + 1][0] for index in range(0, 80, 2))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite writes the tests through bulk_create")
@pytest.mark.parametrize("shuffle", [False, True])
def test_postgresql_writes_the_rows_by_task_or_shuffled_by_task_repetitions_together(experiment, shuffle):
    """The order of the INSERT's SELECT itself (physical order may differ: see insertion_order)."""
    run = runs.start_baseline_run(experiment)
    columns, select, params = selected_tests_query(run, experiment, 3, shuffle)
    with connection.cursor() as cursor:
        cursor.execute(select, params)
        named = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    order = [(row['"task_external_id"'], row['"repetition"']) for row in named]
    assert sorted(order) == sorted((task.external_id, k) for task in experiment.tasks.all() for k in (1, 2, 3))
    assert (order == sorted(order)) is not shuffle  # 40 tasks sorted by chance: 1 in 40!
    assert all(order[index][0] == order[index + 1][0] == order[index + 2][0] for index in range(0, 120, 3))
    assert [k for _, k in order] == [1, 2, 3] * 40
