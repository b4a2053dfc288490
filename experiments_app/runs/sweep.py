"""Sweeping, the last step: error silent tests, wake dispatchers for due work, close finished runs."""

import logging

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from experiments_app import webhooks
from experiments_app.models import ACTIVE_RUN_STATUSES, OPEN_TEST_STATUSES, Application, Delivery, Run, Test, TestStatus
from experiments_app.runs import health
from experiments_app.runs.claim import due_filter, poisonous_filter
from experiments_app.runs.complete import complete_if_done, complete_run
from experiments_app.runs.state import error_tests

logger = logging.getLogger(__name__)

BATCH = 5000


def silent_test_error(test_id, accepted_at):
    """Why a test that was accepted (202) and never called back is errored, with where callbacks go."""
    when = f"at {accepted_at:%Y-%m-%d %H:%M:%S} UTC" if accepted_at else "earlier"
    return (
        f"The application accepted it (202) {when}; no result arrived within result_timeout_seconds; "
        f"callbacks go to {webhooks.callback_url(test_id)}"
    )


def error_silent_tests(now):
    """Tests answered 202 whose result did not come before result_due_at."""
    silent = Test.objects.filter(
        status=TestStatus.DISPATCHED, lease_until__isnull=True, result_due_at__lt=now, run__status__in=ACTIVE_RUN_STATUSES
    )
    return error_tests(silent, silent_test_error, now, limit=BATCH)


def error_exhausted_tests(now):
    """Tests whose last allowed attempt was lost with its worker (lease expired, no answer recorded)."""
    max_attempts = settings.WEBHOOK_MAX_ATTEMPTS
    lost = Test.objects.filter(
        status=TestStatus.DISPATCHED,
        lease_until__lt=now,
        attempts__gte=max_attempts,
        run__status__in=ACTIVE_RUN_STATUSES,
    )
    return error_tests(lost, f"No answer was recorded for the last of {max_attempts} attempts.", now, limit=BATCH)


def error_poisonous_tests(now):
    """Tests whose worker died while sending them DISPATCH_MAX_LOST_ATTEMPTS times: not sent again."""
    lost = Test.objects.filter(poisonous_filter(now), run__status__in=ACTIVE_RUN_STATUSES)
    times = settings.DISPATCH_MAX_LOST_ATTEMPTS
    reason = f"No answer was recorded: the worker sending this test stopped {times} times while sending it, so it is not sent again."
    return error_tests(lost, reason, now, limit=BATCH)


def applications_to_wake(now):
    """Push applications with due tests and no live dispatcher (pull applications ask for theirs)."""
    due = Test.objects.filter(run__status__in=ACTIVE_RUN_STATUSES).filter(due_filter(now))
    due = due.filter(run__experiment__application_id=OuterRef("pk"))
    return list(
        Application.objects.filter(Exists(due), disabled_at__isnull=True, delivery=Delivery.PUSH)
        .filter(Q(dispatch_lease_until__isnull=True) | Q(dispatch_lease_until__lt=now))
        .values_list("pk", flat=True)
    )


def finished_active_runs():
    """Active runs without open tests: a worker stopped between the last result and closing."""
    open_tests = Test.objects.filter(run=OuterRef("pk"), status__in=OPEN_TEST_STATUSES)
    return list(Run.objects.filter(status__in=ACTIVE_RUN_STATUSES).exclude(Exists(open_tests)).values_list("pk", flat=True))


def sweep_tests(*, wake):
    """One sweep. `wake(application_id)` starts a dispatcher (the Celery task passes its own).

    Returns {"errored": run ids touched, "woken": application ids, "closed": run ids closed}.
    """
    now = timezone.now()
    touched = error_silent_tests(now) | error_exhausted_tests(now) | error_poisonous_tests(now)
    closed = [run_id for run_id in touched if complete_if_done(run_id)]
    closed += [run_id for run_id in finished_active_runs() if complete_run(run_id)]
    stalled = health.take_over_stalled(now)
    woken = list(dict.fromkeys([*applications_to_wake(now), *stalled]))
    for application_id in woken:
        wake(application_id)
    if touched or closed or woken:
        logger.info("sweep: errored tests in %d runs, closed %d runs, woke %d applications", len(touched), len(closed), len(woken))
    return {"errored": sorted(map(str, touched)), "woken": [str(pk) for pk in woken], "closed": [str(pk) for pk in closed]}
