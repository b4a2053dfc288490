"""Dispatch against a real HTTP receiver in the test process (the engine runs inline)."""

import socket
import time

import pytest

from experiments_app import actions, runs
from experiments_app.models import Application, DeliveryAttempt, Run, RunStatus, Test
from experiments_app.models import TestStatus as Status
from experiments_app.states import State
from tests.engine_fixtures import Reply, start_baseline
from tests.factories import make_application, make_ready_experiment

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_engine")]


def dispatch(run):
    return runs.dispatch_application(Run.objects.get(pk=run.pk).experiment.application_id)


def answer_expected(received, count):
    """Answer each factory task (`q<n>` → `a<n>`) correctly, as a good application would."""
    question = received.json["data"]["task"]["input"]["question"]
    return Reply(200, {"output": "a" + question[1:], "metrics": {"latency_ms": 12.5}})


def test_payload_follows_spec_and_verifies_with_standardwebhooks(receiver):
    run = start_baseline(receiver.url, n_tasks=1)
    dispatch(run)
    [request] = receiver.requests
    body = request.verify(run.experiment.application.webhook_secret)
    test = run.tests.get()
    assert body["type"] == "experiment.test"
    assert body["timestamp"].endswith("Z")
    data = body["data"]
    assert data["testId"] == str(test.pk)
    assert data["repetition"] == 1
    assert data["callbackUrl"] == f"https://dashboard.example/api/v1/tests/{test.pk}/result/"
    assert data["task"] == {"id": str(test.task_id), "externalId": test.task_external_id, "input": test.task_input}
    variant = data["experiment"]["variant"]
    assert variant == {"id": str(run.variant_id), "name": "Baseline", "isBaseline": True, "parentId": None, "change": None}
    assert data["experiment"]["overrides"] == {"main": {"model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 500}}
    assert request.headers["webhook-id"] == test.webhook_id


def test_sync_answers_are_evaluated_and_the_baseline_completes(receiver):
    receiver.handler = answer_expected
    run = start_baseline(receiver.url, n_tasks=3)
    dispatch(run)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert (run.total, run.passed, run.failed, run.errored) == (3, 3, 0, 0)
    assert run.aggregates["metrics"]["latency_ms"]["mean"] == 12.5
    assert run.experiment.status == State.BASELINE_COMPLETE
    test = run.tests.first()
    assert test.evaluations[0]["type"] == "exact_match" and test.evaluations[0]["passed"]
    assert test.delivery_attempts.get().status_code == 200


def test_wrong_outputs_fail_tests_without_erroring_them(receiver):
    receiver.handler = lambda received, count: Reply(200, {"output": "wrong"})
    run = start_baseline(receiver.url, n_tasks=2)
    dispatch(run)
    run.refresh_from_db()
    assert (run.status, run.passed, run.failed, run.errored) == (RunStatus.SUCCEEDED, 0, 2, 0)


def test_503_then_200_is_retried_with_the_same_webhook_id(receiver):
    receiver.handler = lambda received, count: Reply(503) if count == 1 else Reply(200, {"output": "ok", "passed": True})
    run = start_baseline(receiver.url, n_tasks=1)
    dispatch(run)
    test = run.tests.get()
    assert test.status == Status.PASSED
    assert test.attempts == 2
    first, second = receiver.for_test(test.pk)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == test.webhook_id
    attempts = list(test.delivery_attempts.all())
    assert [(a.number, a.status_code) for a in attempts] == [(1, 503), (2, 200)]
    assert attempts[0].retry_at is not None and "503" in attempts[0].error


def test_429_waits_for_retry_after(receiver):
    receiver.handler = lambda received, count: Reply(429, headers={"Retry-After": "1"}) if count == 1 else Reply(200, {"output": 1})
    run = start_baseline(receiver.url, n_tasks=1)
    dispatch(run)
    test = run.tests.get()
    first, second = receiver.for_test(test.pk)
    assert second.at - first.at >= 0.95
    assert test.status != Status.ERRORED and test.attempts == 2


def test_retry_after_is_capped(receiver, settings):
    settings.WEBHOOK_RETRY_AFTER_MAX_SECONDS = 0.3
    receiver.handler = lambda received, count: Reply(429, headers={"Retry-After": "3600"}) if count == 1 else Reply(200, {"output": 1})
    run = start_baseline(receiver.url, n_tasks=1)
    started = time.monotonic()
    dispatch(run)
    assert time.monotonic() - started < 5
    assert run.tests.get().attempts == 2


def test_timeouts_are_retried_then_error_the_test(receiver):
    receiver.handler = lambda received, count: Reply(200, {"output": "late"}, delay=1.5)
    run = start_baseline(receiver.url, n_tasks=1, timeout_seconds=1, max_error_rate=1)
    dispatch(run)
    test = run.tests.get()
    assert test.status == Status.ERRORED
    assert test.attempts == 4
    assert "Timed out" in test.error and "4 attempts" in test.error
    assert list(test.delivery_attempts.values_list("status_code", flat=True)) == [None] * 4


def test_404_is_not_retried(receiver):
    receiver.handler = lambda received, count: Reply(404, {"detail": "nope"})
    run = start_baseline(receiver.url, n_tasks=1, max_error_rate=1)
    dispatch(run)
    test = run.tests.get()
    assert test.status == Status.ERRORED
    assert test.attempts == 1 and len(receiver.requests) == 1
    assert "404" in test.error


def test_redirects_are_not_followed(receiver):
    receiver.handler = lambda received, count: Reply(302, headers={"Location": "http://127.0.0.1:1/elsewhere"})
    run = start_baseline(receiver.url, n_tasks=1, max_error_rate=1)
    dispatch(run)
    test = run.tests.get()
    assert test.status == Status.ERRORED and "302" in test.error
    assert len(receiver.requests) == 1


def unused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_retried_then_errored(receiver):
    run = start_baseline(f"http://127.0.0.1:{unused_port()}/hook", n_tasks=1, max_error_rate=1)
    dispatch(run)
    test = run.tests.get()
    assert test.status == Status.ERRORED
    assert test.delivery_attempts.count() == 4
    assert "ConnectError" in test.error


def test_a_200_with_an_invalid_result_errors_the_test(receiver):
    receiver.handler = lambda received, count: Reply(200, {"output": 1, "metrics": {"latency_ms": "fast"}})
    run = start_baseline(receiver.url, n_tasks=1, max_error_rate=1)
    dispatch(run)
    test = run.tests.get()
    assert test.status == Status.ERRORED
    assert "metrics.latency_ms" in test.error


def test_private_addresses_are_refused_at_connect_time(receiver, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    run = start_baseline(receiver.url, n_tasks=1, max_error_rate=1)
    dispatch(run)
    test = run.tests.get()
    assert test.status == Status.ERRORED
    assert "private, loopback or link-local" in test.error
    assert receiver.requests == []


def test_run_over_the_error_threshold_fails_the_baseline(receiver):
    failing = set()

    def handler(received, count):
        if received.test_id in failing or len(failing) < 2:
            failing.add(received.test_id)
            return Reply(400)
        return Reply(200, {"output": "x"})

    receiver.handler = handler
    run = start_baseline(receiver.url, n_tasks=5, max_error_rate=0.2)
    dispatch(run)
    run.refresh_from_db()
    assert (run.errored, run.total) == (2, 5)
    assert run.status == RunStatus.FAILED
    assert run.experiment.status == State.BASELINE_FAILED


def test_errors_up_to_the_threshold_still_succeed(receiver):
    first = []

    def handler(received, count):
        if not first or first[0] == received.test_id:
            first.append(received.test_id)
            return Reply(400)
        return Reply(200, {"output": "x"})

    receiver.handler = handler
    run = start_baseline(receiver.url, n_tasks=5, max_error_rate=0.2)
    dispatch(run)
    run.refresh_from_db()
    assert (run.errored, run.status) == (1, RunStatus.SUCCEEDED)


def test_concurrency_cap_is_never_exceeded(receiver):
    receiver.handler = lambda received, count: Reply(200, {"output": "x"}, delay=0.1)
    run = start_baseline(receiver.url, n_tasks=30, max_concurrency=4)
    dispatch(run)
    assert len(receiver.requests) == 30
    assert receiver.max_in_flight == 4


def test_many_requests_are_in_flight_at_once(receiver):
    receiver.handler = lambda received, count: Reply(200, {"output": "x"}, delay=0.3)
    run = start_baseline(receiver.url, n_tasks=40, max_concurrency=40)
    dispatch(run)
    assert receiver.max_in_flight >= 20
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED


def test_repetitions_make_one_test_each(receiver):
    run = start_baseline(receiver.url, n_tasks=2, repetitions=3)
    dispatch(run)
    repetitions = sorted(request.json["data"]["repetition"] for request in receiver.requests)
    assert repetitions == [1, 1, 2, 2, 3, 3]
    assert len({request.headers["webhook-id"] for request in receiver.requests}) == 6


def test_a_held_lease_keeps_a_second_dispatcher_out(receiver):
    run = start_baseline(receiver.url, n_tasks=1)
    application = Application.objects.get(pk=run.experiment.application_id)
    from experiments_app.runs.claim import acquire_lease

    assert acquire_lease(application.pk) is not None
    assert runs.dispatch_application(application.pk) == 0
    assert receiver.requests == []


def test_an_expired_lease_is_taken_over(receiver):
    from django.utils import timezone

    run = start_baseline(receiver.url, n_tasks=1)
    Application.objects.filter(pk=run.experiment.application_id).update(dispatch_lease_until=timezone.now())
    assert runs.dispatch_application(run.experiment.application_id) == 1
    assert Application.objects.get(pk=run.experiment.application_id).dispatch_lease_until is None


def test_a_variant_chain_sends_its_effective_config(receiver):
    receiver.handler = lambda received, count: Reply(200, {"output": "x"})
    run = start_baseline(receiver.url, n_tasks=1)
    dispatch(run)
    experiment = run.experiment
    experiment.refresh_from_db()
    baseline = experiment.baseline
    a = actions.create_variant(experiment, parent=baseline, inference_step="main", parameter="temperature", value=0.3)
    b = actions.create_variant(experiment, parent=a, inference_step="main", parameter="model", value="gpt-4o")
    variant_run = runs.start_variant_run(b)
    receiver.requests.clear()
    dispatch(variant_run)
    [request] = receiver.requests
    body = request.verify(experiment.application.webhook_secret)["data"]["experiment"]
    assert body["overrides"] == {"main": {"model": "gpt-4o", "temperature": 0.3, "max_tokens": 500}}
    assert body["variant"]["change"] == {"step": "main", "parameter": "model", "value": "gpt-4o"}
    assert body["variant"]["parentId"] == str(a.pk) and body["variant"]["isBaseline"] is False
    experiment.refresh_from_db()
    assert experiment.status == State.IDLE
    assert Run.objects.get(pk=variant_run.pk).status == RunStatus.SUCCEEDED


def test_cancelled_runs_get_no_deliveries(receiver):
    run = start_baseline(receiver.url, n_tasks=3)
    runs.cancel_run(run)
    dispatch(run)
    assert receiver.requests == []
    assert DeliveryAttempt.objects.count() == 0


def test_a_run_with_waiting_retries_is_not_closed(receiver, settings):
    settings.DISPATCH_IDLE_SECONDS = 0
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    settings.WEBHOOK_RETRY_MAX_SECONDS = 30
    receiver.handler = lambda received, count: Reply(500)
    run = start_baseline(receiver.url, n_tasks=1)
    dispatch(run)
    test = Test.objects.get(run=run)
    assert test.status == Status.PENDING and test.next_attempt_at is not None
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_dispatching_an_application_without_due_tests_sends_nothing(receiver):
    application = make_application(webhook_url=receiver.url)
    make_ready_experiment(n_tasks=2, application=application)
    assert runs.dispatch_application(application.pk) == 1
    assert receiver.requests == []


def test_a_variant_run_that_stops_when_decided_sends_no_more_tests(receiver, settings):
    """Baseline fails every task, the variant passes every one: the live sequence settles
    `better` early; the dispatcher stops sending and the unsent tests are skipped (SPEC §3)."""
    settings.LIVE_LOOK_SECONDS = 0
    receiver.handler = lambda received, count: Reply(200, {"output": "wrong"})
    baseline_run = start_baseline(receiver.url, n_tasks=80, max_concurrency=2)
    dispatch(baseline_run)
    experiment = Run.objects.get(pk=baseline_run.pk).experiment
    assert experiment.status == State.BASELINE_COMPLETE
    receiver.handler = answer_expected
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    run = runs.start_variant_run(variant, stop_when_decided=True)
    sent_before = len(receiver.requests)
    dispatch(run)
    run.refresh_from_db()
    sent = len(receiver.requests) - sent_before
    assert run.status == RunStatus.SUCCEEDED and run.stopped_early
    assert run.skipped == 80 - sent and sent < 40, (sent, run.skipped)
    assert run.total == run.passed == sent
    assert Test.objects.filter(run=run, status=Status.SKIPPED).count() == run.skipped
    assert run.live["state"]["done"] <= sent
