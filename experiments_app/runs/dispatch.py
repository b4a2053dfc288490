"""Dispatch (SPEC §4): one dispatcher per application keeps up to max_concurrency deliveries in flight.

The dispatcher holds the application's lease (claim.py), claims due tests in batches,
and starts each request only when a slot is free, right after checking that the test's
run is still active, so a cancel stops every delivery that has not started. The HTTP
side runs in send.py; outcomes come back here and are written in bulk through state.py.
Retry waits live in `Test.next_attempt_at`; the sweeper wakes a dispatcher for them.
"""

import json
import logging
import multiprocessing
import queue
import time
from collections import deque
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from experiments_app import webhooks
from experiments_app.errors import ValidationFailed
from experiments_app.models import Application, DeliveryAttempt, Run, Test, TestStatus
from experiments_app.runs import policy, state
from experiments_app.runs.claim import (
    acquire_lease,
    active_runs,
    claim_tests,
    has_due_tests,
    next_due_at,
    release_lease,
    renew_lease,
)
from experiments_app.runs.complete import complete_if_done
from experiments_app.runs.ingest import parse_result
from experiments_app.runs.send import Job, Sender
from experiments_app.runs.start import DISPATCH_TASK

logger = logging.getLogger(__name__)

# Tests claimed ahead of free slots, per unit of max_concurrency: a slot that frees is
# filled at once from these, while this thread writes outcomes.
QUEUE_FACTOR = 1
OUTCOME_WAIT_SECONDS = 0.5


# --- warm shutdown ----------------------------------------------------------------
# A worker's warm shutdown waits for running tasks, and a dispatcher runs as long as its
# application has work. So the worker's main process raises this flag (an Event made
# before the pool forks, so its children share it) and dispatchers stop claiming, finish
# what is in flight, hand back what was claimed but not sent, and leave the rest to
# another worker.
_shutdown = None


def prepare_shutdown_flag():
    """Create the shared flag; call in the worker's main process before the pool starts."""
    global _shutdown
    _shutdown = multiprocessing.get_context("fork").Event()


def begin_shutdown():
    if _shutdown is not None:
        _shutdown.set()


def is_shutting_down():
    return _shutdown is not None and _shutdown.is_set()


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
        self.waiting = deque()  # claimed, not yet sent: started as slots free
        self.sending = 0  # handed to the sender, no outcome yet
        self.envelopes = {}
        self.evaluators = {}
        self.max_attempts = settings.WEBHOOK_MAX_ATTEMPTS

    def run(self):
        sender = Sender(self.application.max_concurrency, max_body_bytes=settings.RESULT_MAX_BYTES).start()
        try:
            self.loop(sender)
        finally:
            # Never leave outcomes unrecorded: wait for what is in flight; claimed tests
            # that were never sent go back to the queue without costing an attempt.
            self.hand_back()
            while self.sending:
                self.record(self.wait(sender, OUTCOME_WAIT_SECONDS))
            sender.close()

    def loop(self, sender):
        idle_limit = settings.DISPATCH_IDLE_SECONDS
        cap = self.application.max_concurrency
        while True:
            if is_shutting_down() or not self.keep_lease():
                return
            queued = len(self.waiting) + self.sending
            free = cap * (1 + QUEUE_FACTOR) - queued
            # Claim in batches, not one test per answer, unless the sender is short of work.
            if free >= max(1, cap // 4) or queued < cap:
                self.waiting.extend(claim_tests(self.application, free))
            self.start_jobs(sender)
            if not self.sending and not self.waiting:
                due = next_due_at(self.application.pk)
                if due is None:
                    return
                wait = (due - timezone.now()).total_seconds()
                if wait > idle_limit:
                    return  # the sweeper wakes a dispatcher when it falls due
                time.sleep(min(max(wait, 0.01), 1.0))
                continue
            outcomes = self.wait(sender, OUTCOME_WAIT_SECONDS)
            self.start_jobs(sender)  # refill the freed slots before writing outcomes
            self.record(outcomes)

    def start_jobs(self, sender):
        """Send claimed tests into the free slots, each only if its run is still active.

        The check is made here, right before the requests start, so no delivery of a run
        starts after its cancel has answered (the cancel already errored those tests)."""
        free = min(self.application.max_concurrency - self.sending, len(self.waiting))
        if free <= 0:
            return
        batch = [self.waiting.popleft() for _ in range(free)]
        active = active_runs({test.run_id for test in batch})
        for test in batch:
            if test.run_id in active:
                sender.submit(self.job(test))
                self.sending += 1

    def hand_back(self):
        if self.waiting:
            state.hand_back([test.pk for test in self.waiting])
            self.waiting.clear()

    def keep_lease(self):
        if time.monotonic() - self.renewed_at < settings.DISPATCH_LEASE_SECONDS / 3:
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
            while True:
                outcomes.append(sender.outcomes.get_nowait())
        except queue.Empty:
            pass
        self.sending -= len(outcomes)
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
        for run_id in record_outcomes(outcomes, self.application, self.evaluators, self.max_attempts):
            complete_if_done(run_id)


def record_outcomes(outcomes, application, evaluators, max_attempts):
    """Write a batch of delivery outcomes: one DeliveryAttempt each, and the test's new state
    where the test still awaits that attempt (a callback or a cancel may have come first).
    Returns the ids of runs that got terminal tests (candidates for closing)."""
    now = timezone.now()
    by_test = {outcome.job.test_id: outcome for outcome in outcomes}
    attempts = []
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
            apply_outcome(test, outcome, attempt, application, evaluators.get(test.run_id, []), max_attempts, now)
            changed.append(test)
        DeliveryAttempt.objects.bulk_create(attempts)
        ended = state.save_tests(changed)
    return list(ended)


def apply_outcome(test, outcome, attempt, application, evaluators, max_attempts, now):
    """Decide what one delivery outcome means for its test (in memory, through state.py);
    return the test's new status."""
    code = outcome.status_code
    if outcome.blocked:
        return state.finish_errored(test, outcome.error, now)
    if code == 202:
        return state.await_result(test, now, application.result_timeout_seconds)
    if code is not None and 200 <= code < 300:
        try:
            parsed = sync_result(outcome)
        except ValueError as unusable:
            attempt.error = str(unusable)
            return state.finish_errored(test, str(unusable), now)
        return state.finish_with_result(test, parsed, evaluators, now)
    if code is None or policy.is_retryable_status(code):
        reason = outcome.error or describe_status(code)
        if code is not None and not attempt.error:
            attempt.error = reason
        if test.attempts >= max_attempts:
            return state.finish_errored(test, f"{reason} Gave up after {test.attempts} attempts.", now)
        delay = policy.retry_delay(test.attempts, policy.parse_retry_after(outcome.retry_after))
        attempt.retry_at = now + timedelta(seconds=delay)
        return state.retry_later(test, attempt.retry_at)
    reason = describe_status(code) + " Not retried."
    attempt.error = attempt.error or reason
    return state.finish_errored(test, reason, now)


def dispatch_application(application_id):
    """Send every due test of one application, unless another dispatcher holds its lease.

    Returns the number of dispatcher sessions run (0 when the lease was held elsewhere).
    On a warm shutdown of the worker it stops early and asks another worker to go on.
    """
    sessions = 0
    while True:
        token = acquire_lease(application_id)
        if token is None:
            return sessions
        dispatcher = None
        try:
            application = Application.objects.filter(pk=application_id).first()
            if application is None or application.is_pull():
                return sessions  # a pull application asks for its tests (runs/pull.py): nothing is pushed to it
            dispatcher = Dispatcher(application, token)
            dispatcher.run()
            sessions += 1
        finally:
            release_lease(application_id, dispatcher.token if dispatcher else token)
        # Tests that became due while we were finishing found our lease held; take them now.
        if not has_due_tests(application_id):
            return sessions
        if is_shutting_down():
            # This worker no longer consumes its queues: the task goes to another one.
            current_app.send_task(DISPATCH_TASK, args=[str(application_id)])
            return sessions
