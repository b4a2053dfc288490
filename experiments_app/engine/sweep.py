"""The periodic sweeper: error silent tests, wake dispatchers for due work, close finished runs."""

import logging

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from experiments_app.engine import policy
from experiments_app.engine.completion import OPEN_TEST_STATUSES, complete_if_done, complete_run
from experiments_app.engine.dispatch import due_filter, log_lost_attempts
from experiments_app.engine.ingest import add_counts
from experiments_app.models import ACTIVE_RUN_STATUSES, Application, Run, Test, TestStatus

logger = logging.getLogger(__name__)

BATCH = 5000


def error_tests(queryset, reason, now):
    """Error the tests of `queryset` (locked, conditional); return the ids of their runs."""
    with transaction.atomic():
        rows = list(queryset.select_for_update(skip_locked=True, of=("self",)).values_list("pk", "run_id")[:BATCH])
        if not rows:
            return set()
        ids = [pk for pk, _ in rows]
        log_lost_attempts(queryset.filter(pk__in=ids), now)
        queryset.filter(pk__in=ids).update(
            status=TestStatus.ERRORED, error=reason, completed_at=now, lease_until=None, next_attempt_at=None, result_due_at=None
        )
        by_run = {}
        for _, run_id in rows:
            by_run.setdefault(run_id, []).append(TestStatus.ERRORED)
        for run_id, statuses in by_run.items():
            add_counts(run_id, statuses)
    return set(by_run)


def error_silent_tests(now):
    """Tests answered 202 whose result did not come before result_due_at."""
    silent = Test.objects.filter(
        status=TestStatus.DISPATCHED, lease_until__isnull=True, result_due_at__lt=now, run__status__in=ACTIVE_RUN_STATUSES
    )
    return error_tests(silent, "No result arrived within the application's result_timeout_seconds.", now)


def error_exhausted_tests(now):
    """Tests whose last allowed attempt was lost with its worker (lease expired, no answer recorded)."""
    max_attempts = policy.setting("WEBHOOK_MAX_ATTEMPTS")
    lost = Test.objects.filter(
        status=TestStatus.DISPATCHED,
        lease_until__lt=now,
        attempts__gte=max_attempts,
        run__status__in=ACTIVE_RUN_STATUSES,
    )
    return error_tests(lost, f"No answer was recorded for the last of {max_attempts} attempts.", now)


def applications_to_wake(now):
    """Applications with due tests and no live dispatcher."""
    due = Test.objects.filter(run__status__in=ACTIVE_RUN_STATUSES).filter(due_filter(now))
    due = due.filter(run__experiment__application_id=OuterRef("pk"))
    return list(
        Application.objects.filter(Exists(due))
        .filter(Q(dispatch_lease_until__isnull=True) | Q(dispatch_lease_until__lt=now))
        .values_list("pk", flat=True)
    )


def finished_active_runs():
    """Active runs without open tests: a worker stopped between the last result and closing."""
    open_tests = Test.objects.filter(run=OuterRef("pk"), status__in=OPEN_TEST_STATUSES)
    return list(Run.objects.filter(status__in=ACTIVE_RUN_STATUSES).exclude(Exists(open_tests)).values_list("pk", flat=True))


def sweep_tests(*, wake=None):
    """One sweep. `wake(application_id)` starts a dispatcher (default: enqueue the Celery task).

    Returns {"errored": run ids touched, "woken": application ids, "closed": run ids closed}.
    """
    if wake is None:
        from experiments_app import tasks

        wake = lambda application_id: tasks.dispatch_application.delay(str(application_id))  # noqa: E731
    now = timezone.now()
    touched = error_silent_tests(now) | error_exhausted_tests(now)
    closed = [run_id for run_id in touched if complete_if_done(run_id)]
    closed += [run_id for run_id in finished_active_runs() if complete_run(run_id)]
    woken = applications_to_wake(now)
    for application_id in woken:
        wake(application_id)
    if touched or closed or woken:
        logger.info("sweep: errored tests in %d runs, closed %d runs, woke %d applications", len(touched), len(closed), len(woken))
    return {"errored": sorted(map(str, touched)), "woken": [str(pk) for pk in woken], "closed": [str(pk) for pk in closed]}
