"""Dispatch (SPEC §4): one dispatcher per application keeps up to max_concurrency deliveries in flight.

The database is the source of truth. A dispatcher holds the application's lease
(`Application.dispatch_lease_until`, taken and renewed with conditional updates), so
max_concurrency holds across all workers. It claims due tests in batches (setting
each test's lease), hands them to the HTTP thread, and writes outcomes in bulk.
Retry waits live in `Test.next_attempt_at`; the sweeper wakes a dispatcher for them.
"""

import json
import logging
import queue
import time
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from experiments_app import webhooks
from experiments_app.engine import policy
from experiments_app.engine.completion import complete_if_done
from experiments_app.engine.ingest import RESULT_FIELDS, add_counts, apply_result, parse_result
from experiments_app.engine.sender import Job, Sender
from experiments_app.errors import ValidationFailed
from experiments_app.models import (
    ACTIVE_RUN_STATUSES,
    Application,
    DeliveryAttempt,
    Run,
    RunStatus,
    Test,
    TestStatus,
)

logger = logging.getLogger(__name__)

# Tests claimed but waiting for a free slot, per unit of max_concurrency: the sender
# starts the next request the moment one ends, while this thread writes outcomes.
QUEUE_FACTOR = 1
OUTCOME_WAIT_SECONDS = 0.5


# --- the application lease ----------------------------------------------------


def acquire_lease(application_id):
    """Take the application's dispatch lease; return its expiry (our token) or None if held."""
    now = timezone.now()
    until = now + timedelta(seconds=policy.setting("DISPATCH_LEASE_SECONDS"))
    taken = (
        Application.objects.filter(pk=application_id)
        .filter(Q(dispatch_lease_until__isnull=True) | Q(dispatch_lease_until__lt=now))
        .update(dispatch_lease_until=until)
    )
    return until if taken else None


def renew_lease(application_id, token):
    """Extend our lease; return the new token, or None if another dispatcher took it over."""
    until = timezone.now() + timedelta(seconds=policy.setting("DISPATCH_LEASE_SECONDS"))
    renewed = Application.objects.filter(pk=application_id, dispatch_lease_until=token).update(dispatch_lease_until=until)
    return until if renewed else None


def release_lease(application_id, token):
    Application.objects.filter(pk=application_id, dispatch_lease_until=token).update(dispatch_lease_until=None)


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


# --- claiming -------------------------------------------------------------------

LOST_ATTEMPT_ERROR = "No answer was recorded: the worker sending this attempt stopped before its lease expired."


def log_lost_attempts(tests, now):
    """Record the attempt of every test in `tests` whose lease expired while dispatched.

    Such an attempt left no row (its worker died mid-request); without this the
    attempt log would skip a number. Call inside the transaction that takes the test back.
    """
    lost = tests.filter(status=TestStatus.DISPATCHED, lease_until__isnull=False, lease_until__lt=now)
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(test_id=pk, number=attempts, started_at=dispatched_at or now, error=LOST_ATTEMPT_ERROR)
        for pk, attempts, dispatched_at in lost.values_list("pk", "attempts", "dispatched_at")
        if attempts
    )


def claim_tests(application, limit):
    """Claim up to `limit` due tests (status dispatched, attempts + 1, a lease); return them."""
    now = timezone.now()
    # A claimed test may wait behind one full round of requests and then take its own
    # timeout; it stays ours that long plus a margin before another dispatcher may take it back.
    lease = now + timedelta(seconds=2 * application.timeout_seconds + policy.setting("DISPATCH_TEST_LEASE_MARGIN_SECONDS"))
    with transaction.atomic():
        ids = list(
            application_tests(application.pk)
            .filter(due_filter(now))
            .filter(attempts__lt=policy.setting("WEBHOOK_MAX_ATTEMPTS"))
            .order_by("run__created_at", "created_at", "pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:limit]
        )
        if not ids:
            return []
        log_lost_attempts(Test.objects.filter(pk__in=ids), now)
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


# --- outcomes -------------------------------------------------------------------


def describe_status(status_code):
    if 300 <= status_code < 400:
        return f"HTTP {status_code}: redirects are not followed."
    return f"HTTP {status_code} from the application."


def sync_result(outcome):
    """The parsed result of a 2xx answer, or raise ValueError with why it is unusable."""
    if outcome.too_large:
        raise ValueError("The answer is larger than the result size limit.")
    try:
        data = json.loads(outcome.body or b"")
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"HTTP {outcome.status_code} with a body that is not JSON.") from None
    try:
        return parse_result(data)
    except ValidationFailed as invalid:
        raise ValueError(f"HTTP {outcome.status_code} with an invalid result: {invalid}") from None


class Dispatcher:
    """Sends every due test of one application while holding its lease."""

    def __init__(self, application, token):
        self.application = application
        self.token = token
        self.renewed_at = time.monotonic()
        self.in_flight = 0  # submitted to the sender (sending or queued for a slot), no outcome yet
        self.envelopes = {}
        self.evaluators = {}
        self.max_attempts = policy.setting("WEBHOOK_MAX_ATTEMPTS")

    def run(self):
        sender = Sender(self.application.max_concurrency, max_body_bytes=policy.setting("RESULT_MAX_BYTES")).start()
        try:
            self.loop(sender)
        finally:
            # Never leave outcomes unrecorded: wait for what is still in flight.
            while self.in_flight:
                self.record(self.wait(sender, OUTCOME_WAIT_SECONDS))
            sender.close()

    def loop(self, sender):
        idle_limit = policy.setting("DISPATCH_IDLE_SECONDS")
        while True:
            if not self.keep_lease():
                return
            cap = self.application.max_concurrency
            free = cap * (1 + QUEUE_FACTOR) - self.in_flight
            # Claim in batches, not one test per answer, unless the sender is short of work.
            if free >= max(1, cap // 4) or self.in_flight < cap:
                for test in claim_tests(self.application, free):
                    sender.submit(self.job(test))
                    self.in_flight += 1
            if self.in_flight == 0:
                due = next_due_at(self.application.pk)
                if due is None:
                    return
                wait = (due - timezone.now()).total_seconds()
                if wait > idle_limit:
                    return  # the sweeper wakes a dispatcher when it falls due
                time.sleep(min(max(wait, 0.01), 1.0))
                continue
            self.record(self.wait(sender, OUTCOME_WAIT_SECONDS))

    def keep_lease(self):
        if time.monotonic() - self.renewed_at < policy.setting("DISPATCH_LEASE_SECONDS") / 3:
            return True
        token = renew_lease(self.application.pk, self.token)
        if token is None:
            logger.warning("dispatch lease of application %s was taken over; stopping", self.application.pk)
            return False
        self.token, self.renewed_at = token, time.monotonic()
        return True

    def wait(self, sender, timeout):
        """Outcomes that arrived: block for the first (up to `timeout`), then take all that are ready."""
        outcomes = []
        try:
            outcomes.append(sender.outcomes.get(timeout=timeout))
        except queue.Empty:
            return outcomes
        while True:
            try:
                outcomes.append(sender.outcomes.get_nowait())
            except queue.Empty:
                return outcomes

    def envelope(self, run_id):
        if run_id not in self.envelopes:
            run = Run.objects.select_related("experiment", "variant__inference_step").get(pk=run_id)
            self.envelopes[run_id] = webhooks.run_envelope(run)
            self.evaluators[run_id] = run.experiment.evaluators
        return self.envelopes[run_id]

    def job(self, test):
        payload = webhooks.build_test_payload(test, self.envelope(test.run_id))
        return Job(
            test_id=test.pk,
            run_id=test.run_id,
            attempt=test.attempts,
            url=self.application.webhook_url,
            secret=self.application.webhook_secret,
            msg_id=test.webhook_id,
            payload=payload,
            timeout=float(self.application.timeout_seconds),
        )

    def record(self, outcomes):
        if not outcomes:
            return
        self.in_flight -= len(outcomes)
        closed_runs = record_outcomes(outcomes, self.application, self.evaluators, self.max_attempts)
        for run_id in closed_runs:
            complete_if_done(run_id)


def record_outcomes(outcomes, application, evaluators, max_attempts):
    """Write a batch of delivery outcomes: one DeliveryAttempt each, and the test's new state
    where the test still awaits that attempt (a callback or a cancel may have come first).
    Returns the ids of runs that got terminal tests (candidates for closing)."""
    now = timezone.now()
    by_test = {outcome.job.test_id: outcome for outcome in outcomes}
    attempts = []
    touched_runs = {}
    with transaction.atomic():
        tests = Test.objects.select_for_update(of=("self",)).filter(pk__in=list(by_test), status=TestStatus.DISPATCHED)
        current = {test.pk: test for test in tests}
        changed = []
        for outcome in outcomes:
            attempt = DeliveryAttempt(
                test_id=outcome.job.test_id,
                number=outcome.job.attempt,
                started_at=outcome.started_at,
                status_code=outcome.status_code,
                duration_ms=outcome.duration_ms,
                error=outcome.error,
            )
            attempts.append(attempt)
            test = current.get(outcome.job.test_id)
            if test is None or test.attempts != outcome.job.attempt:
                continue  # finished meanwhile (callback, cancel, sweeper): this answer is ignored
            status = apply_outcome(test, outcome, attempt, application, evaluators.get(test.run_id, []), max_attempts, now)
            changed.append(test)
            if status in (TestStatus.PASSED, TestStatus.FAILED, TestStatus.ERRORED):
                touched_runs.setdefault(test.run_id, []).append(status)
        DeliveryAttempt.objects.bulk_create(attempts)
        # One UPDATE per row by primary key: much cheaper than bulk_update's CASE per field.
        for test in changed:
            Test.objects.filter(pk=test.pk).update(**{name: getattr(test, name) for name in RESULT_FIELDS})
        for run_id, statuses in touched_runs.items():
            add_counts(run_id, statuses)
    return list(touched_runs)


def apply_outcome(test, outcome, attempt, application, evaluators, max_attempts, now):
    """Decide what one delivery outcome means for its test (unsaved); return the test's status."""
    code = outcome.status_code
    if outcome.blocked:
        return error_test(test, outcome.error, now)
    if code == 202:
        test.lease_until = None
        test.result_due_at = now + timedelta(seconds=application.result_timeout_seconds)
        return test.status
    if code is not None and 200 <= code < 300:
        try:
            parsed = sync_result(outcome)
        except ValueError as unusable:
            attempt.error = str(unusable)
            return error_test(test, str(unusable), now)
        return apply_result(test, parsed, evaluators, now)
    if code is None or policy.is_retryable_status(code):
        reason = outcome.error or describe_status(code)
        if code is not None and not attempt.error:
            attempt.error = reason
        if test.attempts >= max_attempts:
            return error_test(test, f"{reason} Gave up after {test.attempts} attempts.", now)
        delay = policy.retry_delay(test.attempts, policy.parse_retry_after(outcome.retry_after))
        test.status = TestStatus.PENDING
        test.lease_until = None
        test.next_attempt_at = now + timedelta(seconds=delay)
        attempt.retry_at = test.next_attempt_at
        return test.status
    reason = describe_status(code) + " Not retried."
    attempt.error = attempt.error or reason
    return error_test(test, reason, now)


def error_test(test, reason, now):
    test.status = TestStatus.ERRORED
    test.error = reason
    test.completed_at = now
    test.lease_until = None
    test.next_attempt_at = None
    test.result_due_at = None
    return test.status


def dispatch_application(application_id):
    """Send every due test of one application, unless another dispatcher holds its lease.

    Returns the number of dispatcher sessions run (0 when the lease was held elsewhere).
    """
    sessions = 0
    while True:
        token = acquire_lease(application_id)
        if token is None:
            return sessions
        dispatcher = None
        try:
            application = Application.objects.filter(pk=application_id).first()
            if application is None:
                return sessions
            dispatcher = Dispatcher(application, token)
            dispatcher.run()
            sessions += 1
        finally:
            release_lease(application_id, dispatcher.token if dispatcher else token)
        # Tests that became due while we were finishing found our lease held; take them now.
        if not has_due_tests(application_id):
            return sessions
