"""Result ingestion (SPEC §5), the sweeper and exactly-once completion."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from experiments_app import runs
from experiments_app.errors import Conflict, NotFound, ValidationFailed
from experiments_app.models import Experiment, Role, Run, RunStatus, Test, Transition
from experiments_app.models import TestStatus as Status
from experiments_app.runs import claim, complete, dispatch, state
from experiments_app.runs.send import Sender
from experiments_app.states import State
from tests.api_fixtures import client_for
from tests.engine_fixtures import Reply, start_baseline
from tests.factories import make_token


def invalid_fields(data):
    with pytest.raises(ValidationFailed) as caught:
        runs.parse_result(data)
    return set(caught.value.errors)


def test_parse_accepts_a_full_result():
    parsed = runs.parse_result(
        {"output": {"a": 1}, "passed": True, "metrics": {"latency_ms": 3, "cost_usd": 0.1}, "error": "x", "traceId": "t"}
    )
    assert parsed == {
        "output": {"a": 1},
        "passed": True,
        "metrics": {"latency_ms": 3, "cost_usd": 0.1},
        "error": "x",
        "trace_id": "t",
        "steps": {},
    }


def test_parse_accepts_a_null_output():
    assert runs.parse_result({"output": None})["output"] is None


def test_parse_requires_output():
    assert invalid_fields({"passed": True}) == {"output"}


def test_parse_names_a_non_numeric_metric():
    assert invalid_fields({"output": 1, "metrics": {"latency_ms": "fast", "ok": 1}}) == {"metrics.latency_ms"}


def test_parse_refuses_booleans_and_infinities_as_metrics():
    assert invalid_fields({"output": 1, "metrics": {"a": True, "b": float("inf")}}) == {"metrics.a", "metrics.b"}


def test_parse_names_each_bad_field():
    assert invalid_fields({"output": 1, "passed": "yes", "metrics": [], "error": 3, "traceId": 4}) == {
        "passed",
        "metrics",
        "error",
        "traceId",
    }


def test_parse_refuses_a_non_object():
    assert invalid_fields([1, 2]) == {"non_field_errors"}


pytestmark_db = pytest.mark.django_db


def dispatched_run(receiver, n_tasks=2, **fields):
    """A baseline whose tests all answered 202 (awaiting callbacks)."""
    receiver.handler = lambda received, count: Reply(202)
    run = start_baseline(receiver.url, n_tasks=n_tasks, **fields)
    runs.dispatch_application(run.experiment.application_id)
    return run


@pytestmark_db
def test_a_202_waits_for_the_callback(receiver, fast_engine):
    run = dispatched_run(receiver, result_timeout_seconds=60)
    test = Test.objects.filter(run=run).first()
    assert test.status == Status.DISPATCHED and test.lease_until is None
    assert timedelta(seconds=55) < test.result_due_at - timezone.now() <= timedelta(seconds=60)
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


@pytestmark_db
def test_callback_results_complete_the_run(receiver, fast_engine):
    run = dispatched_run(receiver)
    for test in Test.objects.filter(run=run):
        runs.record_result(test.pk, {"output": test.task_expected, "metrics": {"latency_ms": 5}})
    run.refresh_from_db()
    assert (run.status, run.passed) == (RunStatus.SUCCEEDED, 2)
    assert Experiment.objects.get(pk=run.experiment_id).status == State.BASELINE_COMPLETE


@pytestmark_db
def test_the_same_result_twice_changes_nothing(receiver, fast_engine):
    run = dispatched_run(receiver, n_tasks=1)
    test = Test.objects.get(run=run)
    first = runs.record_result(test.pk, {"output": "x", "metrics": {"m": 1}})
    again = runs.record_result(test.pk, {"output": "x", "metrics": {"m": 1.0}})
    assert again.completed_at == first.completed_at
    assert Run.objects.get(pk=run.pk).failed == 1


@pytestmark_db
def test_a_different_result_for_a_finished_test_conflicts(receiver, fast_engine):
    run = dispatched_run(receiver, n_tasks=1)
    test = Test.objects.get(run=run)
    runs.record_result(test.pk, {"output": "x"})
    with pytest.raises(Conflict):
        runs.record_result(test.pk, {"output": "y"})
    assert Test.objects.get(pk=test.pk).output == "x"


@pytestmark_db
def test_an_unknown_test_is_not_found():
    with pytest.raises(NotFound):
        runs.record_result("6f1c0000-0000-4000-8000-000000000000", {"output": 1})
    with pytest.raises(NotFound):
        runs.record_result("not-a-uuid", {"output": 1})


@pytestmark_db
def test_a_malformed_body_is_refused_before_lookup():
    with pytest.raises(ValidationFailed):
        runs.record_result("not-a-uuid", {"metrics": 1})


@pytestmark_db
def test_a_result_for_a_cancelled_run_conflicts(receiver, fast_engine):
    run = dispatched_run(receiver, n_tasks=1)
    runs.cancel_run(run)
    test = Test.objects.get(run=run)
    with pytest.raises(Conflict):
        runs.record_result(test.pk, {"output": "x"})
    assert Test.objects.get(pk=test.pk).output is None


@pytestmark_db
def test_in_flight_answers_of_a_cancelled_run_are_ignored(receiver, fast_engine):
    cancelled = threading.Event()

    def handler(received, count):
        cancelled.wait(5)
        return Reply(200, {"output": "late"})

    receiver.handler = handler
    run = start_baseline(receiver.url, n_tasks=1)
    application = run.experiment.application
    claimed = claim.claim_tests(application, 5)
    assert len(claimed) == 1
    runs.cancel_run(run)
    dispatcher = dispatch.Dispatcher(application, token=None)
    sender = Sender(2, max_body_bytes=1000).start()
    sender.submit(dispatcher.job(claimed[0]))
    cancelled.set()
    outcomes = dispatcher.wait(sender, 5)
    sender.close()
    dispatch.record_outcomes(outcomes, application, {}, 4)
    test = Test.objects.get(run=run)
    assert (test.status, test.output, test.error) == (Status.ERRORED, None, "Run cancelled.")
    assert test.delivery_attempts.get().status_code == 200


@pytestmark_db
def test_sweep_errors_silent_tests_after_the_result_timeout(receiver, fast_engine):
    run = dispatched_run(receiver, n_tasks=2, max_error_rate=1)
    Test.objects.filter(run=run).update(result_due_at=timezone.now() - timedelta(seconds=1))
    summary = runs.sweep_tests(wake=lambda application_id: None)
    assert summary["closed"] == [str(run.pk)]
    assert set(Test.objects.filter(run=run).values_list("status", flat=True)) == {Status.ERRORED}
    assert "result_timeout_seconds" in Test.objects.filter(run=run).first().error
    assert Run.objects.get(pk=run.pk).errored == 2


@pytestmark_db
def test_a_silent_test_says_when_it_was_accepted_and_where_callbacks_go(receiver, fast_engine):
    run = dispatched_run(receiver, n_tasks=1, max_error_rate=1)
    test = Test.objects.get(run=run)
    assert test.accepted_at is not None
    Test.objects.filter(run=run).update(result_due_at=timezone.now() - timedelta(seconds=1))
    runs.sweep_tests(wake=lambda application_id: None)
    test.refresh_from_db()
    assert test.error == (
        f"The application accepted it (202) at {test.accepted_at:%Y-%m-%d %H:%M:%S} UTC; "
        "no result arrived within result_timeout_seconds; "
        f"callbacks go to https://dashboard.example/api/v1/tests/{test.pk}/result/"
    )
    body = client_for(make_token(run.experiment.team, Role.VIEWER)).get(f"/api/v1/tests/{test.pk}/").json()
    assert body["error"] == test.error and body["status"] == "errored"
    assert body["accepted_at"] is not None and body["callback_url"].endswith(f"/tests/{test.pk}/result/")


@pytestmark_db
def test_sweep_leaves_tests_whose_result_is_not_due(receiver, fast_engine):
    run = dispatched_run(receiver, n_tasks=1, result_timeout_seconds=300)
    assert runs.sweep_tests(wake=lambda application_id: None)["errored"] == []
    assert Test.objects.get(run=run).status == Status.DISPATCHED


@pytestmark_db
def test_sweep_wakes_applications_with_due_tests(receiver, fast_engine):
    run = start_baseline(receiver.url, n_tasks=1)
    woken = []
    runs.sweep_tests(wake=woken.append)
    assert woken == [run.experiment.application_id]


@pytestmark_db
def test_sweep_does_not_wake_an_application_with_a_live_dispatcher(receiver, fast_engine):
    run = start_baseline(receiver.url, n_tasks=1)
    from experiments_app.runs.claim import acquire_lease

    acquire_lease(run.experiment.application_id)
    woken = []
    runs.sweep_tests(wake=woken.append)
    assert woken == []


@pytestmark_db
def test_sweep_wakes_for_tests_whose_lease_expired(receiver, fast_engine):
    run = start_baseline(receiver.url, n_tasks=1)
    Test.objects.filter(run=run).update(status=Status.DISPATCHED, lease_until=timezone.now() - timedelta(seconds=1), attempts=1)
    woken = []
    runs.sweep_tests(wake=woken.append)
    assert woken == [run.experiment.application_id]
    runs.dispatch_application(run.experiment.application_id)
    test = Test.objects.get(run=run)
    assert (test.status, test.attempts) == (Status.FAILED, 2)


@pytestmark_db
def test_sweep_errors_tests_whose_last_attempt_was_lost(receiver, fast_engine):
    run = start_baseline(receiver.url, n_tasks=1)
    Test.objects.filter(run=run).update(status=Status.DISPATCHED, lease_until=timezone.now() - timedelta(seconds=1), attempts=4)
    runs.sweep_tests(wake=lambda application_id: None)
    assert Test.objects.get(run=run).status == Status.ERRORED
    assert Run.objects.get(pk=run.pk).status == RunStatus.FAILED


@pytestmark_db
def test_a_reclaimed_test_logs_the_attempt_its_dead_worker_lost(receiver, fast_engine):
    run = start_baseline(receiver.url, n_tasks=1)
    Test.objects.filter(run=run).update(status=Status.DISPATCHED, lease_until=timezone.now() - timedelta(seconds=1), attempts=1)
    runs.dispatch_application(run.experiment.application_id)
    attempts = list(Test.objects.get(run=run).delivery_attempts.values_list("number", "status_code", "error"))
    assert [number for number, _, _ in attempts] == [1, 2]
    assert attempts[0][1] is None and attempts[0][2] == state.LOST_ATTEMPT_ERROR
    assert attempts[1][1] == 200


@pytestmark_db
def test_erroring_an_exhausted_test_logs_its_lost_last_attempt(receiver, fast_engine):
    run = start_baseline(receiver.url, n_tasks=1)
    Test.objects.filter(run=run).update(status=Status.DISPATCHED, lease_until=timezone.now() - timedelta(seconds=1), attempts=4)
    runs.sweep_tests(wake=lambda application_id: None)
    assert list(Test.objects.get(run=run).delivery_attempts.values_list("number", flat=True)) == [4]


@pytestmark_db
def test_sweep_closes_a_run_left_open_with_all_tests_terminal(receiver, fast_engine):
    run = dispatched_run(receiver, n_tasks=1)
    Test.objects.filter(run=run).update(status=Status.PASSED, completed_at=timezone.now())
    summary = runs.sweep_tests(wake=lambda application_id: None)
    assert summary["closed"] == [str(run.pk)]
    run.refresh_from_db()
    assert (run.status, run.passed) == (RunStatus.SUCCEEDED, 1)


@pytestmark_db
def test_completing_twice_closes_the_run_once(receiver, fast_engine):
    run = dispatched_run(receiver, n_tasks=1)
    Test.objects.filter(run=run).update(status=Status.PASSED, completed_at=timezone.now())
    assert complete.complete_run(run.pk) is True
    assert complete.complete_run(run.pk) is False
    assert Transition.objects.filter(experiment_id=run.experiment_id, verb="pass_baseline").count() == 1


@pytest.mark.django_db(transaction=True)
def test_racing_last_results_close_the_run_exactly_once(receiver, fast_engine):
    run = dispatched_run(receiver, n_tasks=2)
    tests = list(Test.objects.filter(run=run))
    barrier = threading.Barrier(2)
    errors = []

    def post(test):
        from django.db import connections

        try:
            barrier.wait(5)
            runs.record_result(test.pk, {"output": test.task_expected})
        except Exception as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(test,)) for test in tests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    run.refresh_from_db()
    assert (run.status, run.passed) == (RunStatus.SUCCEEDED, 2)
    assert Transition.objects.filter(experiment_id=run.experiment_id, verb="pass_baseline").count() == 1
