"""The one writer of a test's state.

Dispatch, callback ingestion, the sweeper and cancel all end a test, send it back to
wait for a retry or mark it as awaiting its callback through these functions, so the
fields that go with each state (the retry due time, the lease, the result deadline) and
the run's live counts never disagree. The mutators change a Test in memory and return
its new status; `save_tests` writes a batch and adds the terminal ones to their runs'
counts; `error_tests` ends many tests at once by query.
"""

import functools
from collections.abc import Sequence
from datetime import timedelta
from typing import NamedTuple

from django.db import connections, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from experiments_app import jsonlimits
from experiments_app.evaluation import evaluate
from experiments_app.models import ACTIVE_RUN_STATUSES, TERMINAL_TEST_STATUSES, DeliveryAttempt, Run, Test, TestStatus

# Every field the mutators below may change: what `save_tests` writes.
STATE_FIELDS = (
    "status",
    "output",
    "has_output",
    "reported_passed",
    "metrics",
    "error",
    "trace_id",
    "evaluations",
    "steps",
    "completed_at",
    "lease_until",
    "next_attempt_at",
    "accepted_at",
    "result_due_at",
)

# A terminal test holds no lease, waits for no retry and expects no callback.
NOTHING_PENDING = {"lease_until": None, "next_attempt_at": None, "result_due_at": None}

LOST_ATTEMPT_ERROR = "No answer was recorded: the worker sending this attempt stopped before its lease expired."
LEASE_EXPIRED_ERROR = "The lease expired without a result."


def end(test, status, now):
    test.status = status
    test.completed_at = now
    for name, value in NOTHING_PENDING.items():
        setattr(test, name, value)
    return status


def finish_with_result(test, parsed, evaluators, now):
    """Evaluate a parsed result (see ingest.parse_result) onto `test`: passed or failed."""
    passed, evaluations = evaluate(
        evaluators,
        output=parsed["output"],
        has_output=True,
        expected=test.task_expected,
        reported_passed=parsed["passed"],
        metrics=parsed["metrics"],
        error=parsed["error"],
    )
    test.output = parsed["output"]
    test.has_output = True
    test.reported_passed = parsed["passed"]
    test.metrics = parsed["metrics"]
    test.error = parsed["error"]
    test.trace_id = parsed["trace_id"]
    test.steps = parsed.get("steps") or {}
    test.evaluations = evaluations
    return end(test, TestStatus.PASSED if passed else TestStatus.FAILED, now)


def finish_errored(test, reason, now):
    """No usable output: the test is errored with `reason`."""
    test.error = reason
    return end(test, TestStatus.ERRORED, now)


def finish_unusable(test, reason, now):
    """The answer came but cannot be used or stored: errored with `reason`, no result kept."""
    test.output = None
    test.has_output = False
    test.reported_passed = None
    test.metrics = {}
    test.trace_id = ""
    test.evaluations = []
    return finish_errored(test, reason, now)


def retry_later(test, due):
    """The attempt failed in a retryable way: pending again, due at `due`."""
    test.status = TestStatus.PENDING
    test.lease_until = None
    test.next_attempt_at = due
    return test.status


def await_result(test, now, result_timeout_seconds):
    """The application accepted the test (202): its result must come by callback in time."""
    test.lease_until = None
    test.accepted_at = now
    test.result_due_at = now + timedelta(seconds=result_timeout_seconds)
    return test.status


# The run's live counters, each named after the test status it counts. A skipped test leaves
# the run's total instead (skip_tests), so total minus these is what is still open.
COUNTERS = (TestStatus.PASSED.value, TestStatus.FAILED.value, TestStatus.ERRORED.value)


def counter_increments(statuses):
    """{counter: n} for terminal test outcomes: the run's passed, failed and errored."""
    counts = {}
    for status in COUNTERS:
        count = sum(1 for item in statuses if item == status)
        if count:
            counts[status] = count
    return counts


def counter_updates(statuses):
    """{counter: F() + n} for terminal test outcomes: the run's passed, failed and errored."""
    return {field: F(field) + count for field, count in counter_increments(statuses).items()}


def add_counts(run_id, statuses):
    """Add terminal test outcomes to the run's live counters (exact: each test ends once)."""
    fields = counter_updates(statuses)
    if fields:
        Run.objects.filter(pk=run_id).update(**fields)


def add_counts_apart(run_id, statuses):
    """add_counts for a caller that ends one test per transaction (a result over HTTP), made in a
    transaction of its own after that one committed.

    Inside the test's transaction the run's row would stay locked until the commit is flushed, so
    the results of one run would be taken one commit at a time (~270/s at this machine's 3.7 ms
    fsync). Here the row is held only for the increment: on PostgreSQL its commit does not wait
    for the flush (`synchronous_commit` off for this transaction alone). These counters show a
    running run's progress; complete_run recounts the tests when the run closes, so an increment
    lost to a crash in between only under-shows progress until then. Only an active run is
    counted: one that closed meanwhile already has its recount.

    On PostgreSQL outside a caller's transaction, the whole transaction is one query string
    (`BEGIN; SET LOCAL …; UPDATE …; COMMIT`, run_apart); a result post sends it in the same
    string as its test's commit (TransactionInStrings)."""
    increments = counter_increments(statuses)
    connection = transaction.get_connection()
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        run_apart(connection, run_id, increments)
    elif increments:
        with transaction.atomic():  # inside a caller's transaction, its commit is the caller's
            Run.objects.filter(pk=run_id, status__in=ACTIVE_RUN_STATUSES).update(**counter_updates(statuses))


INTRANS, INERROR = 2, 3  # psycopg's pq.TransactionStatus: in a transaction block, in a failed one


def run_apart(connection, run_id, increments):
    """The counters' transaction as one query string."""
    send_string(connection, counter_statements(connection, run_id, increments))


class Statement(NamedTuple):
    """One statement of a query string (send_string); `read`: its rows are returned."""

    sql: str
    params: Sequence = ()
    read: bool = False


def counter_statements(connection, run_id, increments):
    """The counters' own transaction (none when nothing is added). Its UPDATE is read: a row
    with how many of the run's tests its counts leave open (none when the run is not active)."""
    if not increments:
        return []
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field)} = {quote(field)} + %s" for field in increments)
    statuses = ", ".join(["%s"] * len(ACTIVE_RUN_STATUSES))
    left = " - ".join(quote(field) for field in ("total", *COUNTERS))
    update = f"UPDATE {quote(Run._meta.db_table)} SET {assignments} WHERE id = %s AND status IN ({statuses}) RETURNING {left}"
    return [
        Statement("BEGIN"),
        Statement("SET LOCAL synchronous_commit TO OFF"),
        Statement(update, [*increments.values(), run_id, *ACTIVE_RUN_STATUSES], read=True),
        Statement("COMMIT"),
    ]


def send_string(connection, statements):
    """`statements` joined into one query string: one round trip (Django's client-side binding
    cursor sends it as one simple query). Returns the rows of those that are `read`, a list
    each. A statement that fails leaves an explicit transaction aborted on the server: it is
    rolled back before the error is raised."""
    if not statements:
        return []
    with connection.cursor() as cursor:
        try:
            cursor.execute("; ".join(sql for sql, _, _ in statements), [value for _, params, _ in statements for value in params])
        except Exception:
            # A broken connection has no transaction left (and Django closes it): its error is the one raised.
            if connection.connection is not None and connection.connection.info.transaction_status == INERROR:
                cursor.execute("ROLLBACK")
            raise
        rows = []
        for position, statement in enumerate(statements):
            if statement.read:
                rows.append(cursor.fetchall())
            if position + 1 < len(statements):
                cursor.nextset()
        return rows


def transaction_in_strings():
    """A TransactionInStrings where the connection can carry one (PostgreSQL, outside a
    caller's transaction), else None (the caller uses transaction.atomic)."""
    connection = transaction.get_connection()
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        return TransactionInStrings(connection)
    return None


class TransactionInStrings:
    """One test's transaction in two query strings instead of five round trips (BEGIN, the
    locking select, the write, COMMIT, the counters' string): `BEGIN; <locking select>` (begin),
    then, after the caller's checks in Python, `<writes>; COMMIT; <the counters' own
    transaction>; <reads>` (commit_and_count). Both transactions stay what they were: the test's
    commit is flushed before the answer (a recorded result is durable), and the run's row is
    locked only in the counters' transaction, which does not wait for the flush.

    Django's connection stays in autocommit mode: the explicit BEGIN opens the transaction on
    the server, and a statement the caller runs in between through the ORM (a plain update, not
    an atomic block: psycopg refuses to leave autocommit inside a transaction) is part of it.
    Leaving the block without commit_and_count (a refusal, a conflict, any error) rolls back."""

    def __init__(self, connection):
        self.connection = connection

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        raw = self.connection.connection
        if raw is not None and not raw.closed and raw.info.transaction_status in (INTRANS, INERROR):
            with self.connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        return False

    def begin(self, sql, params):
        """BEGIN and `sql` (the locking select) as one string: its first row, None without."""
        (rows,) = send_string(self.connection, [Statement("BEGIN"), Statement(sql, params, read=True)])
        return rows[0] if rows else None

    def commit_and_count(self, writes, run_id, statuses, then=()):
        """`writes` ((sql, params) each) in the open transaction and its COMMIT, then add_counts_apart's
        transaction for `statuses` and the `then` reads, as one string. Returns (how many of the
        run's tests its counters leave open, None when nothing was counted; the reads' rows)."""
        counters = counter_statements(self.connection, run_id, counter_increments(statuses))
        statements = [*(Statement(sql, params) for sql, params in writes), Statement("COMMIT"), *counters]
        rows = send_string(self.connection, [*statements, *(Statement(sql, params, read=True) for sql, params in then)])
        if not counters:
            return None, rows
        counted, *rows = rows
        return (counted[0][0] if counted else None), rows


# Rows per UPDATE statement: 15 parameters each, well under SQLite's 32,766 and PostgreSQL's 65,535.
WRITE_BATCH = 1000


def write_tests(tests):
    """Write STATE_FIELDS of `tests` in one statement per WRITE_BATCH rows (write_statements)."""
    connection = transaction.get_connection()
    for sql, params in write_statements(tests, connection):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def write_statements(tests, connection):
    """write_tests' statements on `connection`: [(sql, params)], one per WRITE_BATCH rows. An
    UPDATE per row cost a round trip and ~0.3 ms of ORM work each; bulk_update's CASE per field
    was slower still.

    PostgreSQL: `UPDATE test SET ... FROM jsonb_to_recordset(%s) AS v(id uuid, status ..., ...)
    WHERE test.id = v.id`, the rows as one JSON document. The statement's text is the same
    whatever the batch size, so psycopg parses it once (a VALUES list of 64 rows was re-parsed on
    every batch), and the rows are encoded by the json module's C encoder (one array per column
    cost psycopg's Python array quoting, ~60% of this function). A JSON null is SQL NULL there,
    as Django writes None. SQLite (3.33+): `WITH v(...) AS (VALUES ...) UPDATE ... FROM v`, the
    values through each field's get_db_prep_save, as update() does."""
    fields = WRITTEN_FIELDS
    if connection.vendor == "postgresql":
        sql, encoders = write_tests_statement(connection.alias)
    else:
        columns = [connection.ops.quote_name(field.column) for field in fields]
        table = connection.ops.quote_name(Test._meta.db_table)
        assignments = ", ".join(f"{column} = v.{column}" for column in columns[1:])
        where = f"{table}.{columns[0]} = v.{columns[0]}"
    statements = []
    for start in range(0, len(tests), WRITE_BATCH):
        batch = tests[start : start + WRITE_BATCH]
        if connection.vendor == "postgresql":
            rows = [{column: encode(getattr(test, attname)) for column, attname, encode in encoders} for test in batch]
            params = [jsonlimits.compact(rows).decode()]
        else:
            row = "(" + ", ".join(["%s"] * len(fields)) + ")"
            sql = f"WITH v ({', '.join(columns)}) AS (VALUES {', '.join([row] * len(batch))}) UPDATE {table} SET {assignments} FROM v WHERE {where}"
            params = [field.get_db_prep_save(getattr(test, field.attname), connection=connection) for test in batch for field in fields]
        statements.append((sql, params))
    return statements


WRITTEN_FIELDS = (Test._meta.pk, *(Test._meta.get_field(name) for name in STATE_FIELDS))
INSERTED_FIELDS = tuple(field for field in DeliveryAttempt._meta.concrete_fields if not field.primary_key)


def recordset(connection, fields):
    """(quoted columns, `jsonb_to_recordset`'s column definitions, JSON encoders) of `fields`."""
    columns = [connection.ops.quote_name(field.column) for field in fields]
    record = ", ".join(f"{column} {field.db_type(connection)}" for column, field in zip(columns, fields, strict=True))
    return columns, record, tuple((field.column, field.attname, json_value_of(field)) for field in fields)


# write_tests' and insert_attempts' PostgreSQL statements, built once per database: the column
# types (`db_type`) and quoting were a few percent of a one-test result post's CPU.


@functools.cache
def write_tests_statement(alias):
    connection = connections[alias]
    columns, record, encoders = recordset(connection, WRITTEN_FIELDS)
    table = connection.ops.quote_name(Test._meta.db_table)
    assignments = ", ".join(f"{column} = v.{column}" for column in columns[1:])
    where = f"{table}.{columns[0]} = v.{columns[0]}"
    return f"UPDATE {table} SET {assignments} FROM jsonb_to_recordset(%s::jsonb) AS v ({record}) WHERE {where}", encoders


@functools.cache
def insert_attempts_statement(alias):
    connection = connections[alias]
    columns, record, encoders = recordset(connection, INSERTED_FIELDS)
    table, listed = connection.ops.quote_name(DeliveryAttempt._meta.db_table), ", ".join(columns)
    return f"INSERT INTO {table} ({listed}) SELECT {listed} FROM jsonb_to_recordset(%s::jsonb) AS v ({record})", encoders


def insert_attempts(attempts):
    """Insert DeliveryAttempt rows. PostgreSQL: one `INSERT … SELECT … FROM jsonb_to_recordset(%s)`
    per WRITE_BATCH rows, the rows as one JSON document (bulk_create's compiling and per-value
    adaptation was ~7% of a worker's CPU at 1,000 tests/s); elsewhere bulk_create. The rows' ids
    are not read back."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        DeliveryAttempt.objects.bulk_create(attempts)
        return
    sql, encoders = insert_attempts_statement(connection.alias)
    for start in range(0, len(attempts), WRITE_BATCH):
        batch = attempts[start : start + WRITE_BATCH]
        rows = [{column: encode(getattr(attempt, attname)) for column, attname, encode in encoders} for attempt in batch]
        with connection.cursor() as cursor:
            cursor.execute(sql, [jsonlimits.compact(rows).decode()])


def json_value_of(field):
    """How write_tests puts one field's value into its JSON rows: JSON fields as they are, times
    in ISO 8601 with their offset, UUIDs as text (a foreign key as its target), the rest (text,
    numbers, booleans) as they are."""
    if field.is_relation:
        field = field.target_field
    if isinstance(field, models.DateTimeField):
        return lambda value: None if value is None else value.isoformat()
    if isinstance(field, models.UUIDField):
        return lambda value: None if value is None else str(value)
    return lambda value: value


def save_tests(tests, *, count=True):
    """Write the state of `tests` (changed by the mutators above) and, unless `count` is false
    (the caller then calls add_counts_apart after its commit), add the terminal ones to their
    runs' counts. Call inside the transaction that locked them. Returns {run id: [status]} of the
    tests that ended."""
    ended = {}
    write_tests(tests)
    for test in tests:
        if test.status in TERMINAL_TEST_STATUSES:
            ended.setdefault(test.run_id, []).append(test.status)
    if count:
        for run_id, statuses in ended.items():
            add_counts(run_id, statuses)
    return ended


def log_lost_attempts(tests, now):
    """Record the attempt of every test in `tests` whose lease expired while dispatched.

    Such an attempt left no row (its worker died mid-request); without this the attempt
    log would skip a number. Call inside the transaction that takes the tests back.
    """
    rows = tests.filter(status=TestStatus.DISPATCHED, lease_until__isnull=False, lease_until__lt=now).values_list(
        "pk", "attempts", "dispatched_at"
    )
    log_lost_rows(rows, now)


def log_lost_rows(rows, now):
    """log_lost_attempts for (test id, attempts, dispatched_at) rows of tests read before they
    were taken back."""
    lost = [row for row in rows if row[1]]
    if not lost:
        return
    # A puller's lease (pull mode) was logged when it was handed out: it only gets its error.
    open_leases = DeliveryAttempt.objects.filter(test_id__in=[pk for pk, _, _ in lost], pulled=True, error="", duration_ms__isnull=True)
    leased = set(open_leases.values_list("test_id", flat=True))
    if leased:
        open_leases.update(error=LEASE_EXPIRED_ERROR)
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(test_id=pk, number=attempts, started_at=dispatched_at or now, error=LOST_ATTEMPT_ERROR)
        for pk, attempts, dispatched_at in lost
        if pk not in leased
    )


def log_answered_lease(test, now):
    """A result came for a test leased to a puller: its open lease records how long it took."""
    if test.dispatched_at is not None:
        DeliveryAttempt.objects.filter(test_id=test.pk, pulled=True, error="", duration_ms__isnull=True).update(
            duration_ms=round((now - test.dispatched_at).total_seconds() * 1000, 1)
        )


def error_tests(queryset, reason, now, *, limit=None, skip_locked=True):
    """Error the open tests of `queryset` with `reason` (a string, or a function of the test's
    id, run id and accepted_at giving each its own). Locks them first (skipping rows another
    transaction holds unless `skip_locked` is false) and updates only tests still open.
    Returns the ids of the runs whose tests were errored."""
    with transaction.atomic():
        rows = queryset.select_for_update(skip_locked=skip_locked, of=("self",)).values_list("pk", "run_id", "accepted_at")
        rows = list(rows[:limit] if limit else rows)
        if not rows:
            return set()
        ids = [pk for pk, _, _ in rows]
        log_lost_attempts(Test.objects.filter(pk__in=ids), now)
        ending = {**NOTHING_PENDING, "status": TestStatus.ERRORED, "completed_at": now}
        if callable(reason):
            tests = [Test(pk=pk, run_id=run_id, error=reason(pk, accepted_at), **ending) for pk, run_id, accepted_at in rows]
            Test.objects.bulk_update(tests, ["error", *ending], batch_size=500)
        else:
            Test.objects.filter(pk__in=ids).update(error=reason, **ending)
        by_run = {}
        for _, run_id, _ in rows:
            by_run.setdefault(run_id, []).append(TestStatus.ERRORED)
        for run_id, statuses in by_run.items():
            add_counts(run_id, statuses)
    return set(by_run)


SKIPPED_ERROR = "Not sent: the run stopped once its verdict was decided."


def skip_tests(tests, now):
    """End the unsent tests of `tests` as skipped (a queryset of pending tests, or of tests
    claimed but never sent), counting them apart on their runs. Returns {run id: count}."""
    with transaction.atomic():
        rows = list(tests.select_for_update(of=("self",)).values_list("pk", "run_id", "status"))
        if not rows:
            return {}
        claimed = [pk for pk, _, status in rows if status == TestStatus.DISPATCHED]
        if claimed:  # claimed, never sent: the attempt was not made
            Test.objects.filter(pk__in=claimed).update(attempts=F("attempts") - 1)
        Test.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(
            status=TestStatus.SKIPPED, error=SKIPPED_ERROR, completed_at=now, dispatched_at=None, **NOTHING_PENDING
        )
        by_run = {}
        for _, run_id, _ in rows:
            by_run[run_id] = by_run.get(run_id, 0) + 1
        for run_id, count in by_run.items():
            Run.objects.filter(pk=run_id).update(skipped=F("skipped") + count, total=F("total") - count)
    return by_run


def skip_pending(run_id, now):
    """Stop a run that has decided (SPEC §3): it is marked stopped_early and its tests not yet
    sent become skipped — terminal, counted apart and left out of every rate. Tests in flight
    or waiting for their callback finish normally. Returns how many were skipped."""
    with transaction.atomic():
        Run.objects.filter(pk=run_id).update(stopped_early=True)
        return skip_tests(Test.objects.filter(run_id=run_id, status=TestStatus.PENDING), now).get(run_id, 0)


def skip_claimed(test_ids, now):
    """Claimed tests of stopped runs that a dispatcher will not send: skipped. Returns the run ids."""
    unsent = Q(status=TestStatus.PENDING) | Q(status=TestStatus.DISPATCHED, accepted_at__isnull=True)
    return set(skip_tests(Test.objects.filter(unsent, pk__in=list(test_ids), run__stopped_early=True), now))


def hand_back(test_ids):
    """Return claimed tests that were never sent to the queue, as if never claimed: pending,
    due now, without a lease and without the attempt they did not make."""
    Test.objects.filter(pk__in=test_ids, status=TestStatus.DISPATCHED, accepted_at__isnull=True).update(
        status=TestStatus.PENDING, lease_until=None, next_attempt_at=None, dispatched_at=None, attempts=F("attempts") - 1
    )
    return skip_claimed(test_ids, timezone.now())  # a stopped run sends them no more
