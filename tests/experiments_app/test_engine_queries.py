"""The engine's statements per batch do not grow with the batch: what keeps a dispatcher near
the machine's limit (BENCHMARKS.md). Query counts only, never timings."""

import json
import re
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from experiments_app.models import DeliveryAttempt, Run, RunStatus, Test, TestStatus
from experiments_app.runs.claim import claim_tests
from experiments_app.runs.dispatch import record_outcomes
from experiments_app.runs.ingest import record_result
from experiments_app.runs.send import Job, Outcome
from experiments_app.runs.state import add_counts_apart
from tests.engine_fixtures import start_baseline

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_dispatcher(monkeypatch):
    """These tests drive the engine's functions themselves. The runs they start are not handed to
    a dispatcher: the session's Celery worker (started by other tests) would claim and send their
    tests meanwhile, and a test claimed there gets a lease these tests do not expect."""
    from experiments_app.runs import start

    monkeypatch.setattr(start, "current_app", SimpleNamespace(send_task=lambda *args, **kwargs: None))


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


STATEMENT_START = re.compile(r"; (?=(?:BEGIN|COMMIT|ROLLBACK|SET|SELECT|UPDATE|INSERT)\b)")


def statements_of(captured):
    """The statements a block sent, each query string split into its statements (the bodies
    these tests post hold no "; " followed by a keyword)."""
    return [part for query in captured.captured_queries for part in STATEMENT_START.split(query["sql"])]


def test_a_result_over_http_is_committed_before_its_run_counter_is_touched():
    """The test's transaction never locks the run's row (results of one run would otherwise be
    taken one flushed commit at a time); the count follows in its own short transaction, on
    PostgreSQL one that does not wait for the flush. There, the whole post is two query strings:
    `BEGIN; <lock>`, then `<test write>; COMMIT; <the counters' transaction>; <reads>`."""
    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=2)
    first, second = Test.objects.filter(run=run)
    with CaptureQueriesContext(connection) as captured:
        record_result(first.pk, {"output": "ok", "passed": True})
    statements = statements_of(captured)
    run_update, test_update = f'UPDATE "{Run._meta.db_table}"', f'UPDATE "{Test._meta.db_table}"'
    counted = next(index for index, sql in enumerate(statements) if run_update in sql)
    written = next(index for index, sql in enumerate(statements) if test_update in sql)
    committed = statements.index("COMMIT")
    assert written < committed < counted
    assert not any(run_update in sql for sql in statements[:committed])
    if connection.vendor == "postgresql":
        lock, rest = [query["sql"] for query in captured.captured_queries]
        assert lock.startswith("BEGIN; SELECT") and lock.endswith("FOR UPDATE OF t")
        write, _, rest = rest.partition("; COMMIT; ")
        assert write.startswith(test_update) and "COMMIT" not in write
        assert rest.startswith("BEGIN; SET LOCAL synchronous_commit TO OFF; UPDATE")
        # the open check and the answer's attempts follow the counters' commit in the same string
        counting, _, reads = rest.partition("; COMMIT; ")
        assert run_update in counting and reads.startswith("SELECT") and "COMMIT" not in reads
    assert Run.objects.get(pk=run.pk).passed == 1
    assert Test.objects.get(pk=first.pk).status == TestStatus.PASSED


def test_a_refused_result_leaves_nothing_written_and_no_transaction_open():
    """A result refused once the test is locked (by the sender's check, or as a conflict) rolls
    its transaction back: on PostgreSQL that transaction was opened by a query string, so the
    connection must not be left inside it for the next request."""
    from experiments_app.errors import Conflict

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=2)
    first, second = Test.objects.filter(run=run)

    def refuse(owner):
        assert owner["experiment_id"] == run.experiment_id
        raise PermissionError("not this sender")

    with pytest.raises(PermissionError):
        record_result(first.pk, None, accept=refuse)
    assert_idle()
    record_result(first.pk, {"output": "ok", "passed": True})
    with pytest.raises(Conflict):
        record_result(first.pk, {"output": "other", "passed": False})
    assert_idle()
    assert record_result(first.pk, {"output": "ok", "passed": True}).status == TestStatus.PASSED  # the same: no error
    assert_idle()
    assert Test.objects.get(pk=first.pk).output == "ok"
    assert Test.objects.get(pk=second.pk).status == TestStatus.PENDING
    assert Run.objects.get(pk=run.pk).passed == 1


def assert_idle():
    if connection.vendor == "postgresql":
        assert connection.connection.info.transaction_status == 0  # idle: no transaction open or failed
    assert not connection.in_atomic_block


def test_a_failed_write_in_the_commit_string_rolls_the_test_back():
    """When a statement before the test's COMMIT fails, the string's transaction is rolled
    back: nothing of the test is written, the run is not counted, the connection is idle."""
    if connection.vendor != "postgresql":
        pytest.skip("the test's transaction is sent as query strings on PostgreSQL only")
    from experiments_app.runs import state
    from experiments_app.runs.ingest import lock_test

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=1)
    (test,) = Test.objects.filter(run=run)
    strings = state.transaction_in_strings()
    with pytest.raises(Exception, match="nosuch"), strings:
        locked = lock_test(test.pk, begin=strings.begin)
        locked.status = TestStatus.PASSED
        writes = [*state.write_statements([locked], connection), ("UPDATE nosuch SET x = 1", [])]
        strings.commit_and_count(writes, run.pk, [TestStatus.PASSED])
    assert_idle()
    assert Test.objects.get(pk=test.pk).status == TestStatus.PENDING and Run.objects.get(pk=run.pk).passed == 0


@pytest.mark.parametrize("leased", [False, True])
def test_a_recorded_results_attempts_equal_a_separate_read_and_its_last_result_closes_the_run(leased):
    """record_result's read folded after the counters' commit (PostgreSQL) answers what a separate
    read answers after it: the attempts as logged in the test's transaction (a lease's attempt
    gets its answer there). The run is closed by its last result."""
    from experiments_app.runs.ingest import attempts_of

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=2)
    application = run.experiment.application
    first, second = Test.objects.filter(run=run).order_by("task_external_id")
    if leased:  # claimed and sent: an attempt in flight that the result answers
        claimed = claim_tests(application, 2)
        assert {test.pk for test in claimed} == {first.pk, second.pk}
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(test_id=test.pk, number=1, started_at=timezone.now()) for test in (first, second)
        )
    recorded = record_result(first.pk, {"output": "ok", "passed": True})
    fields = ("id", "number", "started_at", "status_code", "duration_ms", "error", "retry_at", "pulled")
    expected = [[getattr(attempt, name) for name in fields] for attempt in attempts_of(first.pk)]
    if connection.vendor == "postgresql":
        assert [[getattr(attempt, name) for name in fields] for attempt in recorded.recorded_attempts] == expected
    assert len(expected) == (1 if leased else 0)
    assert Run.objects.get(pk=run.pk).status == (RunStatus.RUNNING if leased else RunStatus.QUEUED)
    last = record_result(second.pk, {"output": "no", "passed": False})
    closed = Run.objects.get(pk=run.pk)
    assert closed.status == RunStatus.SUCCEEDED and (closed.passed, closed.failed) == (1, 1)
    if connection.vendor == "postgresql":
        assert len(last.recorded_attempts) == (1 if leased else 0)


def test_only_a_result_its_runs_counters_leave_nothing_open_after_looks_for_open_tests():
    """The counters' update returns how many tests it leaves open: while some are, a result post
    does not look through the run's tests (on PostgreSQL); the last one does, and closes the run."""
    from experiments_app.runs.complete import OPEN_TESTS_SQL

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=3)
    tests = list(Test.objects.filter(run=run))
    looked = []
    for test in tests:
        with CaptureQueriesContext(connection) as captured:
            record_result(test.pk, {"output": "ok", "passed": True})
        looked.append(any(OPEN_TESTS_SQL.split(" WHERE")[0] in query["sql"] for query in captured.captured_queries))
    assert looked == ([False, False, True] if connection.vendor == "postgresql" else [True, True, True])
    closed = Run.objects.get(pk=run.pk)
    assert closed.status == RunStatus.SUCCEEDED and closed.passed == 3


def test_a_run_whose_counters_fell_short_is_closed_by_the_sweeper():
    """Counters can only fall short (an increment lost to a crash between a result's commit and
    its count): the last result then leaves the run open, and the sweeper's look for active runs
    without open tests closes it with a recount."""
    from experiments_app.runs import sweep

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=2)
    first, second = Test.objects.filter(run=run)
    record_result(first.pk, {"output": "ok", "passed": True})
    Run.objects.filter(pk=run.pk).update(passed=0)  # the first result's increment, lost
    record_result(second.pk, {"output": "no", "passed": False})
    if connection.vendor == "postgresql":  # the counters say one test is still open
        assert Run.objects.get(pk=run.pk).status in (RunStatus.QUEUED, RunStatus.RUNNING)
        assert [str(pk) for pk in sweep.sweep_tests(wake=lambda application_id: None)["closed"]] == [str(run.pk)]
    closed = Run.objects.get(pk=run.pk)
    assert closed.status == RunStatus.SUCCEEDED and (closed.passed, closed.failed) == (1, 1)


def test_a_failed_count_statement_leaves_the_connection_usable():
    """The one-string transaction rolls back when its UPDATE fails, so the connection is not left
    inside an aborted transaction for the next request."""
    if connection.vendor != "postgresql":
        pytest.skip("the one-string transaction is PostgreSQL's")
    from experiments_app.runs.state import run_apart

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=1)
    with pytest.raises(Exception, match="nosuch"):
        run_apart(connection, run.pk, {"nosuch": 1})
    assert connection.connection.info.transaction_status == 0  # idle, not in a failed transaction
    assert Run.objects.get(pk=run.pk).passed == 0


def test_a_count_arriving_after_the_run_closed_leaves_the_recount_alone():
    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=1)
    (test,) = Test.objects.filter(run=run)
    record_result(test.pk, {"output": "ok", "passed": True})
    closed = Run.objects.get(pk=run.pk)
    assert closed.status == RunStatus.SUCCEEDED and closed.passed == 1
    add_counts_apart(run.pk, [TestStatus.PASSED])  # a late increment, as a slow request would make
    assert Run.objects.get(pk=run.pk).passed == 1


def test_write_tests_stores_every_state_field_as_the_orm_reads_it_back():
    """write_tests' batch statement (JSON rows on PostgreSQL, VALUES on SQLite) against awkward
    values: nested JSON nulls, quotes, backslashes, non-ASCII, big and float numbers, a JSON
    `null` output beside an absent one (SQL NULL), microsecond times, and fields set back to None."""
    from experiments_app.runs.state import STATE_FIELDS, write_tests

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=3)
    first, second, third = Test.objects.filter(run=run).order_by("task_external_id")
    now = timezone.now().replace(microsecond=123456)
    first.status, first.output, first.has_output = TestStatus.PASSED, {"a": [1, None, 2.5], 'q"\\': "é ✓ \n"}, True
    first.metrics, first.evaluations = {"latency_ms": 12.75, "big": 2**62}, [{"name": "e", "passed": True, "score": None}]
    first.steps, first.trace_id, first.error, first.reported_passed = {"s1": {"output": "x"}}, "t-1", "", True
    first.completed_at, first.lease_until = now, None
    second.status, second.output, second.has_output, second.reported_passed = TestStatus.FAILED, None, True, False
    second.error, second.accepted_at, second.result_due_at = 'it\'s \\ "wrong"', now, now
    third.lease_until, third.next_attempt_at = now, now
    write_tests([first, second, third])
    for written in (first, second, third):
        stored = Test.objects.get(pk=written.pk)
        for name in STATE_FIELDS:
            assert getattr(stored, name) == getattr(written, name), name
    assert Test.objects.filter(pk=second.pk, output__isnull=True).exists()  # None is SQL NULL, as the ORM writes it


def test_insert_attempts_stores_every_field_as_the_orm_reads_it_back():
    """insert_attempts' one statement (JSON rows on PostgreSQL, bulk_create elsewhere) against
    awkward values: quotes, backslashes, non-ASCII, microsecond times, nulls beside values."""
    from experiments_app.runs.state import insert_attempts

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=2)
    first, second = Test.objects.filter(run=run).order_by("task_external_id")
    now = timezone.now().replace(microsecond=654321)
    made = [
        DeliveryAttempt(
            test_id=first.pk, number=1, started_at=now, status_code=503, duration_ms=12.25, error='it\'s \\ "busy" é ✓\n', retry_at=now
        ),
        DeliveryAttempt(test_id=first.pk, number=2, started_at=now, status_code=None, duration_ms=None, error=""),
        DeliveryAttempt(test_id=second.pk, number=1, started_at=now, status_code=200, duration_ms=0.1, pulled=True),
    ]
    insert_attempts(made)
    fields = [field.attname for field in DeliveryAttempt._meta.concrete_fields if not field.primary_key]
    stored = [
        {name: getattr(row, name) for name in fields}
        for row in DeliveryAttempt.objects.filter(test__run=run).order_by("test__task_external_id", "number")
    ]
    assert stored == [{name: getattr(row, name) for name in fields} for row in made]


def test_active_runs_leaves_out_cancelled_stopped_and_finished_runs():
    """The check made right before each refill of the free slots (one fixed statement): run ids
    come back as the UUIDs the claimed tests carry, on either database."""
    from experiments_app.runs.claim import active_runs

    active, cancelled, stopped, finished = (start_baseline("http://127.0.0.1:9/hook", n_tasks=1) for _ in range(4))
    Run.objects.filter(pk=cancelled.pk).update(status=RunStatus.CANCELLED)
    Run.objects.filter(pk=stopped.pk).update(stopped_early=True)
    Run.objects.filter(pk=finished.pk).update(status=RunStatus.SUCCEEDED)
    (test,) = Test.objects.filter(run=active)
    everything = {active.pk, cancelled.pk, stopped.pk, finished.pk}
    assert active_runs(everything) == {active.pk} == {test.run_id}
    assert active_runs({str(active.pk)}) == {active.pk}
    assert active_runs(set()) == set()


def test_lock_test_loads_the_test_its_run_and_experiment_as_the_orm_does():
    """record_result's locking select is one fixed statement: every loaded field equals what
    `select_related("run__experiment")` gives, on either database (JSON decoded, microsecond
    times, UUIDs), the run's size-growing columns left unread; None for an unknown test."""
    import uuid

    from experiments_app.runs.ingest import UNREAD_RUN_FIELDS, lock_test

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=2)
    test = Test.objects.filter(run=run).first()
    now = timezone.now().replace(microsecond=123456)
    Test.objects.filter(pk=test.pk).update(
        output={"a": [1, None, 2.5], 'q"\\': "é ✓"}, has_output=True, metrics={"x": 1.5}, lease_until=now, status=TestStatus.DISPATCHED
    )
    Run.objects.filter(pk=run.pk).update(outcomes={"t": {"passed": 1}}, config={"steps": ["main"], "model": "m"})
    with transaction.atomic():
        loaded = lock_test(test.pk)
    expected = Test.objects.select_related("run__experiment").get(pk=test.pk)
    for model_name, got, want in (
        ("test", loaded, expected),
        ("run", loaded.run, expected.run),
        ("experiment", loaded.run.experiment, expected.run.experiment),
    ):
        for field in type(want)._meta.concrete_fields:
            if model_name == "run" and field.name in UNREAD_RUN_FIELDS:
                assert field.attname in got.get_deferred_fields()
                continue
            assert getattr(got, field.attname) == getattr(want, field.attname), f"{model_name}.{field.name}"
    assert loaded.run_id == run.pk and isinstance(loaded.run_id, uuid.UUID)
    assert loaded.run.config == {"steps": ["main"], "model": "m"}
    with transaction.atomic():
        assert lock_test(uuid.uuid4()) is None


def test_the_owner_read_with_the_lock_is_what_the_orm_reads_with_the_secrets_decrypted():
    import uuid

    from experiments_app.api.runs import SECRET_FIELDS
    from experiments_app.runs.ingest import lock_test, owner

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=1)
    application = run.experiment.application
    application.rotate_secret()  # a previous secret and its expiry: both read back
    expires = timezone.now().replace(microsecond=654321)
    type(application).objects.filter(pk=application.pk).update(previous_secret_expires_at=expires)
    application.refresh_from_db()
    (test,) = Test.objects.filter(run=run)
    with transaction.atomic():
        plain = owner(lock_test(test.pk))
        with_secrets = owner(lock_test(test.pk, SECRET_FIELDS))
        assert lock_test(uuid.uuid4(), SECRET_FIELDS) is None
    assert plain == {"experiment_id": run.experiment_id, "team_id": run.experiment.team_id, "application_id": application.pk}
    assert with_secrets == {**plain, **{name: getattr(application, name) for name in SECRET_FIELDS}}
    assert with_secrets["previous_secret_expires_at"] == expires and with_secrets["previous_webhook_secret"].startswith("whsec_")


def claimed_rows(application, limit):
    with CaptureQueriesContext(connection) as captured:
        claimed = claim_tests(application, limit)
    statements = [query["sql"] for query in captured.captured_queries if query["sql"] not in ("BEGIN", "COMMIT")]
    return claimed, len(statements)


def test_a_claim_takes_the_same_statements_for_5_or_60_tests_and_loads_them_as_the_orm_does():
    """On PostgreSQL a run's claim is one fixed statement (lock, update, return, run marked
    running); on either database the claimed tests are what a fresh query loads, in Test's order."""
    counts = []
    for n in (5, 60):
        run = start_baseline("http://127.0.0.1:9/hook", n_tasks=n, repetitions=2)
        claimed, statements = claimed_rows(run.experiment.application, 2 * n)
        counts.append(statements)
        assert len(claimed) == 2 * n
        fresh = list(Test.objects.filter(run=run))  # Meta ordering: task, repetition
        assert [test.pk for test in claimed] == [test.pk for test in fresh]
        for got, want in zip(claimed, fresh, strict=True):
            for field in Test._meta.concrete_fields:
                assert getattr(got, field.attname) == getattr(want, field.attname), field.name
        assert {(test.status, test.attempts, test.lost_attempts) for test in fresh} == {(TestStatus.DISPATCHED, 1, 0)}
        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
        assert claim_tests(run.experiment.application, 10) == []  # nothing due: every test is claimed
    assert counts[0] == counts[1]
    if connection.vendor == "postgresql":
        assert counts[0] == 2  # the active runs, then the run's claim (in one transaction)


def test_a_claim_takes_lost_tests_first_counts_and_logs_their_lost_attempt_and_skips_poisonous_ones():
    from django.conf import settings

    from experiments_app.runs.state import LOST_ATTEMPT_ERROR

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=6)
    application = run.experiment.application
    first = claim_tests(application, 3)
    past = timezone.now() - timezone.timedelta(seconds=5)
    lost, poisonous, in_flight = first
    Test.objects.filter(pk__in=[lost.pk, poisonous.pk]).update(lease_until=past)
    Test.objects.filter(pk=poisonous.pk).update(lost_attempts=settings.DISPATCH_MAX_LOST_ATTEMPTS - 1)
    again = claim_tests(application, 2)
    assert len(again) == 2 and poisonous.pk not in {test.pk for test in again} and in_flight.pk not in {test.pk for test in again}
    retaken = Test.objects.get(pk=lost.pk)
    assert (retaken.status, retaken.attempts, retaken.lost_attempts) == (TestStatus.DISPATCHED, 2, 1)
    assert next(test for test in again if test.pk == lost.pk).lost_attempts == 1
    logged = DeliveryAttempt.objects.get(test=lost)
    assert (logged.number, logged.error, logged.started_at) == (1, LOST_ATTEMPT_ERROR, lost.dispatched_at)
    other = next(test for test in again if test.pk != lost.pk)
    assert other.pk not in {test.pk for test in first} and other.attempts == 1 and other.lost_attempts == 0
    assert not DeliveryAttempt.objects.filter(test=poisonous).exists()


def test_lock_dispatched_loads_the_tests_still_dispatched_as_the_orm_does():
    from experiments_app.runs.dispatch import UNUSED_BY_OUTCOMES, lock_dispatched

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=4)
    claimed = claim_tests(run.experiment.application, 4)
    finished = claimed[1]
    Test.objects.filter(pk=finished.pk).update(status=TestStatus.PASSED)
    Test.objects.filter(pk=claimed[2].pk).update(output={"a": [1, None]}, has_output=True, metrics={"x": 0.5}, steps={"s": {"output": 1}})
    with transaction.atomic():
        loaded = lock_dispatched([test.pk for test in reversed(claimed)])
        assert lock_dispatched([]) == []
    expected = list(Test.objects.filter(pk__in=[test.pk for test in claimed], status=TestStatus.DISPATCHED).defer(*UNUSED_BY_OUTCOMES))
    assert [test.pk for test in loaded] == [test.pk for test in expected] and finished.pk not in {test.pk for test in loaded}
    for got, want in zip(loaded, expected, strict=True):
        assert (
            got.get_deferred_fields() == want.get_deferred_fields() == {Test._meta.get_field(name).attname for name in UNUSED_BY_OUTCOMES}
        )
        for field in Test._meta.concrete_fields:
            if field.name not in UNUSED_BY_OUTCOMES:
                assert getattr(got, field.attname) == getattr(want, field.attname), field.name


@pytest.mark.parametrize("signed", [True, False])
def test_a_result_posts_owner_is_read_with_the_tests_lock(signed):
    """The sender's check needs the test's owner (its team; the application's secrets for a
    signature): read by the locking select itself, so a post's only SELECT before its commit is
    that one, and on PostgreSQL everything after the commit is one round trip."""
    from experiments_app import webhooks
    from experiments_app.models import Application, Role
    from tests.api_fixtures import client_for
    from tests.factories import make_token

    run = start_baseline("http://127.0.0.1:9/hook", n_tasks=2)
    application = run.experiment.application
    test = Test.objects.filter(run=run).first()
    body = json.dumps({"output": "ok", "passed": True}).encode()
    path = f"/api/v1/tests/{test.pk}/result/"
    if signed:
        headers = webhooks.signed_headers(application.webhook_secret, test.webhook_id, body)
        extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items() if name.startswith("webhook-")}
    else:
        extra = {"HTTP_AUTHORIZATION": f"Bearer {make_token(run.experiment.team, Role.EDITOR)}"}
    client = client_for()
    with CaptureQueriesContext(connection) as captured:
        response = client.post(path, body, content_type="application/json", **extra)
    assert response.status_code == 200, response.content
    statements = statements_of(captured)
    committed = statements.index("COMMIT")
    reads = [sql for sql in statements[:committed] if sql.lstrip().startswith("SELECT")]
    if not signed:  # the token's own lookup comes first, before the test is locked
        reads = [sql for sql in reads if "FOR UPDATE" in sql or Test._meta.db_table in sql]
    assert len(reads) == 1
    assert Test._meta.db_table in reads[0] and (Application._meta.db_table in reads[0]) == signed
    if connection.vendor == "postgresql":
        # the lock with the BEGIN; last, the test's write, its COMMIT, the counters and their reads
        strings = [query["sql"] for query in captured.captured_queries]
        lock = next(sql for sql in strings if sql.startswith("BEGIN; SELECT"))
        assert "FOR UPDATE" in lock and reads[0] in lock
        assert "; COMMIT; BEGIN; SET LOCAL synchronous_commit TO OFF; UPDATE" in strings[-1]
    assert Test.objects.get(pk=test.pk).status == TestStatus.PASSED
