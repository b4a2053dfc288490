"""The engine's statements per batch do not grow with the batch: what keeps a dispatcher near
the machine's limit (BENCHMARKS.md). Query counts only, never timings."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from experiments_app.models import DeliveryAttempt, Run, Test, TestStatus
from experiments_app.runs.claim import claim_tests
from experiments_app.runs.dispatch import record_outcomes
from experiments_app.runs.send import Job, Outcome
from tests.engine_fixtures import start_baseline

pytestmark = pytest.mark.django_db(transaction=True)


def answered(tests, application):
    """A 200 with a passing result for each claimed test, as the sender reports it."""
    body = json.dumps({"output": "ok", "passed": True, "metrics": {"latency_ms": 12}}).encode()
    return [
        Outcome(
            job=Job(
                test_id=test.pk,
                run_id=test.run_id,
                attempt=test.attempts,
                url=application.webhook_url,
                secret="",
                msg_id=test.webhook_id,
                payload={},
                timeout=30.0,
            ),
            started_at=timezone.now(),
            duration_ms=3.0,
            status_code=200,
            body=body,
        )
        for test in tests
    ]


def queries_to_record(n_tests):
    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=n_tests)
    application = run.experiment.application
    tests = claim_tests(application, n_tests)
    outcomes = answered(tests, application)
    with CaptureQueriesContext(connection) as captured:
        record_outcomes(outcomes, application, {run.pk: []}, 5)
    assert set(Test.objects.filter(run=run).values_list("status", flat=True)) == {TestStatus.PASSED}
    assert DeliveryAttempt.objects.filter(test__run=run).count() == n_tests
    assert Run.objects.get(pk=run.pk).passed == n_tests
    return len(captured.captured_queries)


def test_recording_a_batch_of_outcomes_takes_the_same_statements_for_5_or_60_tests():
    assert queries_to_record(5) == queries_to_record(60)
