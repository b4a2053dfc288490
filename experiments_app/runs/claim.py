"""Claiming work: the application's dispatch lease and the due tests a dispatcher takes.

The database is the source of truth. A dispatcher holds the application's lease
(`Application.dispatch_lease_until`, taken and renewed with conditional updates), so
`max_concurrency` holds across all workers. Claimed tests carry a lease of their own: if
their worker dies mid-request, they fall due again when it expires.
"""

import functools
from datetime import timedelta

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from experiments_app.models import ACTIVE_RUN_STATUSES, Application, Run, RunStatus, Test, TestStatus
from experiments_app.rows import concrete_fields, instance
from experiments_app.runs.state import log_lost_attempts, log_lost_rows

# --- the application lease ----------------------------------------------------


def acquire_lease(application_id):
    """Take the application's dispatch lease; return its expiry (our token) or None if held."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.DISPATCH_LEASE_SECONDS)
    taken = (
        Application.objects.filter(pk=application_id)
        .filter(Q(dispatch_lease_until__isnull=True) | Q(dispatch_lease_until__lt=now))
        .update(dispatch_lease_until=until)
    )
    return until if taken else None


def renew_lease(application_id, token, **fields):
    """Extend our lease (writing `fields` with it); return the new token, or None if another
    dispatcher or the sweeper took it over."""
    until = timezone.now() + timedelta(seconds=settings.DISPATCH_LEASE_SECONDS)
    renewed = Application.objects.filter(pk=application_id, dispatch_lease_until=token).update(dispatch_lease_until=until, **fields)
    return until if renewed else None


def release_lease(application_id, token, **fields):
    Application.objects.filter(pk=application_id, dispatch_lease_until=token).update(
        dispatch_lease_until=None, dispatch_limit=None, **fields
    )


# --- which tests are due -------------------------------------------------------


def due_filter(now):
    """Tests ready for a delivery attempt: pending and due, or dispatched with an expired lease."""
    pending_due = Q(status=TestStatus.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    lost = Q(status=TestStatus.DISPATCHED, lease_until__isnull=False, lease_until__lt=now)
    return pending_due | lost


def application_tests(application_id):
    return Test.objects.filter(run__experiment__application_id=application_id, run__status__in=ACTIVE_RUN_STATUSES)


def has_due_tests(application_id, now=None):
    return application_tests(application_id).filter(due_filter(now or timezone.now())).exists()


def next_due_at(application_id):
    """When the earliest waiting retry of this application falls due (None when none waits)."""
    return (
        application_tests(application_id)
        .filter(status=TestStatus.PENDING, next_attempt_at__isnull=False)
        .aggregate(at=Min("next_attempt_at"))["at"]
    )


def active_runs(run_ids):
    """Those of `run_ids` whose run is still active (not cancelled, not stopped once decided):
    checked right before sending, so once per refill of the free slots. One fixed statement: the
    ORM compiled this query anew each time, ~1 ms that a freed slot waited."""
    if not run_ids:
        return set()
    connection = transaction.get_connection()
    pk = Run._meta.pk
    ids = ", ".join(["%s"] * len(run_ids))
    statuses = ", ".join(["%s"] * len(ACTIVE_RUN_STATUSES))
    sql = (
        f"SELECT {pk.column} FROM {connection.ops.quote_name(Run._meta.db_table)}"
        f" WHERE {pk.column} IN ({ids}) AND status IN ({statuses}) AND NOT stopped_early"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*(pk.get_db_prep_value(run_id, connection) for run_id in run_ids), *ACTIVE_RUN_STATUSES])
        return {pk.to_python(row[0]) for row in cursor.fetchall()}


# --- claiming -------------------------------------------------------------------


def lost_filter(now):
    return Q(status=TestStatus.DISPATCHED, lease_until__isnull=False, lease_until__lt=now)


def poisonous_filter(now):
    """Tests whose worker died with them so often that they are not sent again (the sweeper errors them)."""
    return lost_filter(now) & Q(lost_attempts__gte=settings.DISPATCH_MAX_LOST_ATTEMPTS - 1)


def lock_due_tests(application_id, now, limit):
    """Lock up to `limit` due tests (skipping locked ones) and return (their ids, the ids of those
    whose last attempt was lost): the oldest active run's first, its lost tests before its pending ones.

    Within a run there is no ORDER BY: the database walks the (run, status) index and stops at
    `limit`, so a claim costs the same at the first test of a run as at its 100,000th. Sorting
    every due test of the application on each claim made a run's claims O(n²) (8.6 ms per claim
    at 5,000 pending tests on PostgreSQL, growing with the run). Tests written in one bulk insert
    come out in about the order they were written.
    """
    runs = Run.objects.filter(experiment__application_id=application_id, status__in=ACTIVE_RUN_STATUSES).order_by("created_at", "pk")
    pending_due = Q(status=TestStatus.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    lost = lost_filter(now) & Q(lost_attempts__lt=settings.DISPATCH_MAX_LOST_ATTEMPTS - 1)  # not poisonous
    ids, lost_ids = [], []
    for run_id in runs.values_list("pk", flat=True):
        for due in (lost, pending_due):
            if len(ids) >= limit:
                return ids, lost_ids
            tests = Test.objects.filter(due, run_id=run_id, attempts__lt=settings.WEBHOOK_MAX_ATTEMPTS)
            found = list(tests.order_by().select_for_update(skip_locked=True).values_list("pk", flat=True)[: limit - len(ids)])
            ids += found
            if due is lost:
                lost_ids += found
    return ids, lost_ids


def claim_tests(application, limit, *, lease_seconds=None):
    """Claim up to `limit` due tests (status dispatched, attempts + 1, a lease of `lease_seconds`
    or the dispatcher's default); return them, ordered as tests are (task, repetition).

    A test whose last attempt was lost (its worker died mid-request) counts the loss in
    `lost_attempts`; the dispatcher sends such a test alone (dispatch.py)."""
    now = timezone.now()
    if lease_seconds is None:
        # A claimed test may wait behind one full round of requests and then take its own
        # timeout; it stays ours that long plus a margin before another dispatcher may take it back.
        lease_seconds = 2 * application.timeout_seconds + settings.DISPATCH_TEST_LEASE_MARGIN_SECONDS
    lease = now + timedelta(seconds=lease_seconds)
    if transaction.get_connection().vendor == "postgresql":
        return claim_in_one_statement(application.pk, now, lease, limit)
    with transaction.atomic():
        ids, lost_ids = lock_due_tests(application.pk, now, limit)
        if not ids:
            return []
        if lost_ids:  # usually none: two statements saved per claim
            log_lost_attempts(Test.objects.filter(pk__in=lost_ids), now)
            Test.objects.filter(pk__in=lost_ids).filter(lost_filter(now)).update(lost_attempts=F("lost_attempts") + 1)
        Test.objects.filter(pk__in=ids).filter(due_filter(now)).update(
            status=TestStatus.DISPATCHED,
            lease_until=lease,
            dispatched_at=now,
            next_attempt_at=None,
            attempts=F("attempts") + 1,
        )
        tests = list(Test.objects.filter(pk__in=ids, status=TestStatus.DISPATCHED, lease_until=lease))
        run_ids = {test.run_id for test in tests}
        Run.objects.filter(pk__in=run_ids, status=RunStatus.QUEUED).update(status=RunStatus.RUNNING, started_at=now)
    return tests


# --- PostgreSQL: a run's claim in one statement ------------------------------------
# The ORM's claim was seven statements (the active runs; per run its lost, then its pending tests
# locked; the update; the claimed tests read back; the runs marked running), each compiled anew:
# ~14% of a worker's CPU with an application that answers at once. On PostgreSQL one fixed
# statement per run locks, updates and returns the tests and marks the run running.

CLAIMED_FIELDS = concrete_fields(Test)


@functools.cache
def claim_sql():
    """(active runs' SELECT, one run's claim) on PostgreSQL."""
    quote = connections[connection.alias].ops.quote_name  # the same for every PostgreSQL connection

    def column(model, name):
        return quote(model._meta.get_field(name).column)

    tests, runs = quote(Test._meta.db_table), quote(Run._meta.db_table)
    test = functools.partial(column, Test)
    experiment = Run._meta.get_field("experiment").related_model
    active = ", ".join(["%s"] * len(ACTIVE_RUN_STATUSES))
    active_runs_sql = (
        f"SELECT r.{column(Run, 'id')} FROM {runs} r"
        f" JOIN {quote(experiment._meta.db_table)} e ON e.{column(experiment, 'id')} = r.{column(Run, 'experiment')}"
        f" WHERE e.{column(experiment, 'application')} = %s AND r.{column(Run, 'status')} IN ({active})"
        f" ORDER BY r.{column(Run, 'created_at')}, r.{column(Run, 'id')}"
    )
    # Lost tests first, then pending ones; each arm walks the (run, status) index and stops at the
    # limit (no ORDER BY: see lock_due_tests), and locks only the rows the outer LIMIT takes.

    def picked(is_lost):
        return f"t.{test('id')}, {is_lost} AS lost, t.{test('attempts')} AS was_attempts, t.{test('dispatched_at')} AS was_dispatched_at"

    lost = (
        f"SELECT {picked('true')} FROM {tests} t WHERE t.{test('run')} = %(run)s"
        f" AND t.{test('status')} = %(dispatched)s AND t.{test('lease_until')} < %(now)s"
        f" AND t.{test('lost_attempts')} < %(max_lost)s AND t.{test('attempts')} < %(max_attempts)s"
        " LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    )
    pending = (
        f"SELECT {picked('false')} FROM {tests} t WHERE t.{test('run')} = %(run)s"
        f" AND t.{test('status')} = %(pending)s"
        f" AND (t.{test('next_attempt_at')} IS NULL OR t.{test('next_attempt_at')} <= %(now)s)"
        f" AND t.{test('attempts')} < %(max_attempts)s"
        " LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    )
    returning = ", ".join(f"t.{quote(field.column)}" for field in CLAIMED_FIELDS)
    claim = (
        f"WITH due AS (SELECT * FROM ({lost}) lost UNION ALL SELECT * FROM ({pending}) pending LIMIT %(limit)s),"
        f" claimed AS (UPDATE {tests} t SET {test('status')} = %(dispatched)s, {test('lease_until')} = %(lease)s,"
        f" {test('dispatched_at')} = %(now)s, {test('next_attempt_at')} = NULL, {test('attempts')} = t.{test('attempts')} + 1,"
        f" {test('lost_attempts')} = t.{test('lost_attempts')} + CASE WHEN due.lost THEN 1 ELSE 0 END"
        f" FROM due WHERE t.{test('id')} = due.{test('id')}"
        f" RETURNING {returning}, due.lost, due.was_attempts, due.was_dispatched_at),"
        f" started AS (UPDATE {runs} SET {column(Run, 'status')} = %(running)s, {column(Run, 'started_at')} = %(now)s"
        f" WHERE {column(Run, 'id')} = %(run)s AND {column(Run, 'status')} = %(queued)s AND EXISTS (SELECT 1 FROM claimed))"
        f" SELECT * FROM claimed ORDER BY {test('task_external_id')}, {test('repetition')}"  # as the ORM orders tests
    )
    return active_runs_sql, claim


def claim_in_one_statement(application_id, now, lease, limit):
    """claim_tests on PostgreSQL: the oldest active run's tests first, as lock_due_tests takes them,
    each run's in Test's order (the ORM's claim ordered them all so)."""
    wrapper = connections[connection.alias]
    active_runs_sql, claim = claim_sql()
    fields = CLAIMED_FIELDS
    params = {
        "now": now,
        "lease": lease,
        "dispatched": TestStatus.DISPATCHED,
        "pending": TestStatus.PENDING,
        "running": RunStatus.RUNNING,
        "queued": RunStatus.QUEUED,
        "max_lost": settings.DISPATCH_MAX_LOST_ATTEMPTS - 1,  # not poisonous (the sweeper errors those)
        "max_attempts": settings.WEBHOOK_MAX_ATTEMPTS,
    }
    tests, lost = [], []
    with transaction.atomic(), wrapper.cursor() as cursor:
        cursor.execute(active_runs_sql, [application_id, *ACTIVE_RUN_STATUSES])
        for (run_id,) in cursor.fetchall():
            if len(tests) >= limit:
                break
            cursor.execute(claim, {**params, "run": run_id, "limit": limit - len(tests)})
            for row in cursor.fetchall():
                test = instance(Test, fields, row[: len(fields)], wrapper)
                tests.append(test)
                is_lost, was_attempts, was_dispatched_at = row[len(fields) :]
                if is_lost:
                    lost.append((test.pk, was_attempts, was_dispatched_at))
        if lost:
            log_lost_rows(lost, now)
    return tests
