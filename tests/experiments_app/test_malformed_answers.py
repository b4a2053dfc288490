"""Issue 14, defect 1: one application answer that cannot be stored errors its own test only.

The dispatcher runs inline against a real HTTP receiver; the receiver answers some tests
with bodies Python's json module would happily turn into NaN, inf, a 401-digit integer or
a RecursionError.
"""

import pytest

from experiments_app import runs
from experiments_app.models import Run, RunStatus, Test
from experiments_app.models import TestStatus as Status
from tests.engine_fixtures import Reply, start_baseline

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_engine")]

DEEP = b'{"output": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
MALFORMED = {
    "nan": (b'{"output": NaN}', "the answer is not valid JSON: NaN"),
    "inf": (b'{"output": 1e999}', "the answer is not valid JSON: the number 1e999 is out of range"),
    "metric": (b'{"output": "ok", "metrics": {"latency_ms": 1' + b"0" * 400 + b"}}", "metrics.latency_ms"),
    "deep": (DEEP, "output: Cannot be stored: nested deeper than 64 levels"),
    "not-json": (b'{"output": "unterminated', "the answer is not valid JSON: Unterminated string"),
}


def answer_by_question(bad):
    """Questions q<n> of the first len(bad) tasks get a malformed answer each; the rest answer well."""

    def handler(received, count):
        external_id = received.json["data"]["task"]["externalId"]
        if external_id in bad:
            return Reply(200, MALFORMED[bad[external_id]][0])
        return Reply(200, {"output": "fine", "passed": True})

    return handler


def test_each_malformed_answer_errors_its_own_test_and_the_neighbours_are_recorded_once(receiver):
    run = start_baseline(receiver.url, n_tasks=10, max_error_rate=1.0)
    external_ids = list(Test.objects.filter(run=run).order_by("task_external_id").values_list("task_external_id", flat=True))
    bad = dict(zip(external_ids, MALFORMED, strict=False))
    receiver.handler = answer_by_question(bad)

    runs.dispatch_application(run.experiment.application_id)

    run = Run.objects.get(pk=run.pk)
    assert (run.status, run.total, run.passed, run.errored) == (RunStatus.SUCCEEDED, 10, 5, 5)
    assert run.count_tests() == {"total": 10, "passed": 5, "failed": 0, "errored": 5, "skipped": 0}
    for test in Test.objects.filter(run=run):
        assert len(receiver.for_test(test.pk)) == 1, "every test is delivered exactly once"
        assert test.attempts == 1 and test.delivery_attempts.count() == 1
        if test.task_external_id in bad:
            assert test.status == Status.ERRORED
            assert MALFORMED[bad[test.task_external_id]][1] in test.error
            assert test.output is None and test.metrics == {}
        else:
            assert (test.status, test.output) == (Status.PASSED, "fine")


def test_the_dispatcher_survives_a_write_that_fails_for_one_test(receiver, monkeypatch):
    """Even when the database refuses one test's outcome, the others of the batch are kept."""
    from experiments_app.runs import state

    run = start_baseline(receiver.url, n_tasks=4, max_error_rate=1.0)
    doomed = Test.objects.filter(run=run).order_by("task_external_id").first()
    receiver.handler = lambda received, count: Reply(200, {"output": "fine", "passed": True})
    original = state.write_tests

    def refuse_one(tests):
        if any(test.pk == doomed.pk and test.status == Status.PASSED for test in tests):
            raise ValueError("simulated: the database refused this row")
        return original(tests)

    monkeypatch.setattr(state, "write_tests", refuse_one)
    runs.dispatch_application(run.experiment.application_id)

    run = Run.objects.get(pk=run.pk)
    assert (run.status, run.passed, run.errored) == (RunStatus.SUCCEEDED, 3, 1)
    doomed.refresh_from_db()
    assert doomed.status == Status.ERRORED
    assert "could not be stored" in doomed.error and "simulated" in doomed.error
    assert len(receiver.requests) == 4
