"""An application's dispatch health: stalled dispatchers, and applications that fail every delivery.

- Stalled: a dispatcher holds the application's lease but has not moved (claimed, recorded an
  answer, idled) for longer than a healthy one can; or due tests have waited that long with
  no dispatcher at all. The sweeper takes the lease away so another worker gets the
  application, and marks it `dispatch_stalled_since` until a dispatcher moves again.
- Failing: every delivery since `failing_since` failed. Past APPLICATION_DISABLE_AFTER_FAILURES
  failures in a row over at least APPLICATION_DISABLE_AFTER_SECONDS, the application is
  disabled with the reason; its open tests are errored (so its runs end) and nothing is sent to
  it until a person re-enables it.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, Min, OuterRef, Q
from django.db.models.functions import Coalesce

from experiments_app.models import ACTIVE_RUN_STATUSES, OPEN_TEST_STATUSES, Application, Test, TestStatus
from experiments_app.runs.complete import complete_if_done
from experiments_app.runs.state import error_tests

logger = logging.getLogger(__name__)


# --- stalled dispatchers ------------------------------------------------------------


def stall_after(application):
    """How long a healthy dispatcher of `application` can go without moving: a full round of
    requests that each take their whole timeout, plus margins, and never under DISPATCH_STALL_SECONDS."""
    return timedelta(
        seconds=max(settings.DISPATCH_STALL_SECONDS, 2 * application.timeout_seconds + settings.DISPATCH_TEST_LEASE_MARGIN_SECONDS)
    )


def open_work(application_id):
    return Test.objects.filter(
        run__experiment__application_id=application_id, run__status__in=ACTIVE_RUN_STATUSES, status__in=OPEN_TEST_STATUSES
    )


def find_stalled(now):
    """Applications with open work whose dispatcher holds the lease without moving, or whose
    due tests have waited past the stall time with no dispatcher. Returns [(application, since)]."""
    has_open = Exists(
        Test.objects.filter(
            run__experiment__application_id=OuterRef("pk"), run__status__in=ACTIVE_RUN_STATUSES, status__in=OPEN_TEST_STATUSES
        )
    )
    candidates = Application.objects.filter(has_open, disabled_at__isnull=True).filter(
        Q(dispatch_lease_until__gte=now, dispatch_progress_at__isnull=False) | Q(dispatch_stalled_since__isnull=False)
    )
    stalled = []
    for application in candidates.only("pk", "timeout_seconds", "dispatch_lease_until", "dispatch_progress_at", "dispatch_stalled_since"):
        limit = stall_after(application)
        held = application.dispatch_lease_until is not None and application.dispatch_lease_until >= now
        if held and application.dispatch_progress_at < now - limit:
            stalled.append((application, application.dispatch_progress_at))
    # Due tests that nobody picked up for the stall time (their wake-ups went to a worker that runs nothing).
    unattended = (
        Test.objects.filter(run__status__in=ACTIVE_RUN_STATUSES, status=TestStatus.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(run__experiment__application__disabled_at__isnull=True)
        .filter(
            Q(run__experiment__application__dispatch_lease_until__isnull=True)
            | Q(run__experiment__application__dispatch_lease_until__lt=now)
        )
        .values("run__experiment__application_id")
        .annotate(due_since=Min(Coalesce("next_attempt_at", "run__created_at")))
    )
    seen = {application.pk for application, _ in stalled}
    for row in unattended:
        application = Application.objects.only("pk", "timeout_seconds", "dispatch_progress_at").get(
            pk=row["run__experiment__application_id"]
        )
        last_move = max(filter(None, [row["due_since"], application.dispatch_progress_at]))
        if application.pk not in seen and last_move < now - stall_after(application):
            stalled.append((application, last_move))
    return stalled


def take_over_stalled(now):
    """Mark stalled applications and take their leases away; return their ids (to wake)."""
    taken = []
    for application, since in find_stalled(now):
        Application.objects.filter(pk=application.pk, dispatch_stalled_since__isnull=True).update(dispatch_stalled_since=since)
        Application.objects.filter(pk=application.pk).update(dispatch_lease_until=None)
        logger.warning("dispatch of application %s stalled since %s: lease taken back", application.pk, since)
        taken.append(application.pk)
    return taken


def note_progress(application_id, token, at, limit):
    """Written with each lease renewal: the dispatcher moved at `at`; clears the stall mark."""
    return Application.objects.filter(pk=application_id, dispatch_lease_until=token).update(
        dispatch_progress_at=at, dispatch_limit=limit, dispatch_stalled_since=None
    )


# --- applications that fail every delivery ------------------------------------------


def is_failure(outcome):
    """A delivery that got no usable answer. 429 is the application asking us to slow down
    (throttle.py backs off), not a failure; a refused address is a configuration error."""
    code = outcome.status_code
    if code is None:
        return True
    return not 200 <= code < 300 and code != 429


def note_outcomes(application_id, outcomes, now):
    """Count failures in a row; disable the application past the limits. Returns the reason it
    was disabled, or None."""
    failures = sum(1 for outcome in outcomes if is_failure(outcome))
    if failures < len(outcomes) and any(o.status_code is not None and 200 <= o.status_code < 300 for o in outcomes):
        Application.objects.filter(pk=application_id, consecutive_failures__gt=0).update(consecutive_failures=0, failing_since=None)
        return None
    if not failures:
        return None
    Application.objects.filter(pk=application_id).update(consecutive_failures=F("consecutive_failures") + failures)
    Application.objects.filter(pk=application_id, failing_since__isnull=True).update(failing_since=now)
    application = Application.objects.get(pk=application_id)
    limit_failures = settings.APPLICATION_DISABLE_AFTER_FAILURES
    limit_seconds = settings.APPLICATION_DISABLE_AFTER_SECONDS
    failing_for = (now - application.failing_since).total_seconds()
    if application.is_disabled() or application.consecutive_failures < limit_failures or failing_for < limit_seconds:
        return None
    last_error = next((o.error or f"HTTP {o.status_code}" for o in reversed(outcomes) if is_failure(o)), "")
    reason = (
        f"Disabled automatically: all {application.consecutive_failures} deliveries failed for "
        f"{failing_for / 60:.0f} min (since {application.failing_since:%Y-%m-%d %H:%M:%S} UTC). Last error: {last_error[:300]}"
    )
    disable_application(application_id, reason, now)
    return reason


def disable_application(application_id, reason, now):
    """Stop sending to the application: mark it disabled and error its open tests so its runs end."""
    with transaction.atomic():
        updated = Application.objects.filter(pk=application_id, disabled_at__isnull=True).update(disabled_at=now, disabled_reason=reason)
    if not updated:
        return set()
    logger.warning("application %s disabled: %s", application_id, reason)
    run_ids = error_tests(open_work(application_id), f"Not sent: the application was disabled. {reason}", now, skip_locked=False)
    for run_id in run_ids:
        complete_if_done(run_id)
    return run_ids


def enable_application(application):
    """Re-enable a disabled application (one click): its failure count starts again from zero."""
    Application.objects.filter(pk=application.pk).update(disabled_at=None, disabled_reason="", consecutive_failures=0, failing_since=None)
    application.refresh_from_db()
    return application
