"""Claiming work: the application's dispatch lease and the due tests a dispatcher takes.

The database is the source of truth. A dispatcher holds the application's lease
(`Application.dispatch_lease_until`, taken and renewed with conditional updates), so
`max_concurrency` holds across all workers. Claimed tests carry a lease of their own: if
their worker dies mid-request, they fall due again when it expires.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from experiments_app.models import ACTIVE_RUN_STATUSES, Application, Run, RunStatus, Test, TestStatus
from experiments_app.runs.state import log_lost_attempts

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
    or the dispatcher's default); return them.

    A test whose last attempt was lost (its worker died mid-request) counts the loss in
    `lost_attempts`; the dispatcher sends such a test alone (dispatch.py)."""
    now = timezone.now()
    if lease_seconds is None:
        # A claimed test may wait behind one full round of requests and then take its own
        # timeout; it stays ours that long plus a margin before another dispatcher may take it back.
        lease_seconds = 2 * application.timeout_seconds + settings.DISPATCH_TEST_LEASE_MARGIN_SECONDS
    lease = now + timedelta(seconds=lease_seconds)
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
