"""Dispatch (SPEC §4): one dispatcher per application keeps up to max_concurrency deliveries in flight.

The dispatcher holds the application's lease (claim.py), claims due tests in batches,
and starts each request only when a slot is free, right after checking that the test's
run is still active, so a cancel stops every delivery that has not started. The HTTP
side runs in send.py; outcomes come back here and are written in bulk through state.py.
Retry waits live in `Test.next_attempt_at`; the sweeper wakes a dispatcher for them.
"""

import functools
import itertools
import logging
import multiprocessing
import queue
import time
from collections import deque
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, connections, transaction
from django.utils import timezone

from experiments_app import jsonlimits, webhooks
from experiments_app.errors import ValidationFailed
from experiments_app.models import Application, DeliveryAttempt, Run, Test, TestStatus
from experiments_app.rows import concrete_fields, instance
from experiments_app.runs import health, live, policy, state, throttle
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
from experiments_app.runs.throttle import InFlightLimit

logger = logging.getLogger(__name__)

# Tests claimed ahead of free slots, per unit of max_concurrency: a slot that frees is
# filled at once from these, while this thread writes outcomes.
QUEUE_FACTOR = 1
OUTCOME_WAIT_SECONDS = 0.5
# Outcomes per write: between two, the slots freed meanwhile are refilled (Dispatcher.record).
WRITE_CHUNK = 64
# Answers wait to be written until WRITE_CHUNK of them are in hand, the oldest has waited this
# long, or nothing else is in flight. Their slots are refilled at once all the same; with a slow
# application the answers come a few at a time, and a write per one or two answers (the
# statements, the commit, the run's checks) cost more of this process's CPU than the sending.
WRITE_DELAY_SECONDS = 0.05


# --- warm shutdown ----------------------------------------------------------------
# A worker's warm shutdown waits for running tasks, and a dispatcher runs as long as its
# application has work. So the worker's main process raises this flag (shared memory made
# before the pool forks, so its children share it) and dispatchers stop claiming, finish
# what is in flight, hand back what was claimed but not sent, and leave the rest to
# another worker.
# The flag is one byte read and written without a lock. A multiprocessing.Event takes a
# process-shared lock on every is_set(): a pool process SIGKILLed inside it left that lock
# held, and every dispatcher after it, in new pool processes too, blocked forever.
_shutdown = None


def prepare_shutdown_flag():
    """Create the shared flag; call in the worker's main process before the pool starts."""
    global _shutdown
    _shutdown = multiprocessing.get_context("fork").RawValue("b", 0)


def begin_shutdown():
    if _shutdown is not None:
        _shutdown.value = 1


def is_shutting_down():
    return _shutdown is not None and _shutdown.value == 1


def describe_status(status_code):
    if 300 <= status_code < 400:
        return f"HTTP {status_code}: redirects are not followed."
    return f"HTTP {status_code} from the application."


def sync_result(outcome):
    """The parsed result of a 2xx answer, or raise ValueError with why it is unusable.

    Decoded by jsonlimits (no NaN/Infinity, bounded depth, storable strings) and checked
    by parse_result, so nothing the database would refuse reaches the ORM."""
    if outcome.too_large:
        raise ValueError("The answer is larger than the result size limit.")
    try:
        data = jsonlimits.loads(outcome.body or b"")
    except jsonlimits.InvalidJSON as invalid:
        raise ValueError(f"HTTP {outcome.status_code}, but the answer is not valid JSON: {invalid}.") from None
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
        self.stops_when_decided = {}  # run id: its stop_when_decided (fixed when the run is made)
        self.envelopes = {}
        self.evaluators = {}
        self.urls = {}  # a run's own webhook_url (a preview deployment), else the application's
        self.max_attempts = settings.WEBHOOK_MAX_ATTEMPTS
        self.limit = InFlightLimit(application.max_concurrency)
        self.limit_shown = (application.max_concurrency, time.monotonic())  # what the run page last got
        self.isolated = None  # a test whose last attempt was lost, in flight alone
        self.moved_at = timezone.now()  # progress, for the stall check (health.py)
        self.moved_since_renewal = True
        self.disabled = False
        self.unrecorded = []  # answers not written yet: held for a batch, or the database was unreachable
        self.unrecorded_since = 0.0  # when the oldest of them came (time.monotonic)
        self.database_lost_at = None

    def run(self):
        sender = Sender(self.application.max_concurrency, max_body_bytes=settings.RESULT_MAX_BYTES).start()
        try:
            self.loop(sender)
        finally:
            # Never leave outcomes unrecorded: wait for what is in flight; claimed tests
            # that were never sent go back to the queue without costing an attempt. Every
            # request ends within its timeout; past that (a stuck sender) the tests' own
            # leases bring them back.
            self.hand_back()
            deadline = time.monotonic() + self.application.timeout_seconds + settings.DISPATCH_TEST_LEASE_MARGIN_SECONDS
            while (self.sending or self.unrecorded) and time.monotonic() < deadline:
                self.record(self.wait(sender, OUTCOME_WAIT_SECONDS))
            sender.close()

    def moved(self):
        self.moved_at = timezone.now()
        self.moved_since_renewal = True

    def loop(self, sender):
        while True:
            try:
                if not self.step(sender):
                    return
                self.database_lost_at = None
            except (OperationalError, InterfaceError):
                # The database is unreachable: keep the requests in flight and their answers,
                # and try again, for up to DISPATCH_DATABASE_OUTAGE_SECONDS.
                now = time.monotonic()
                self.database_lost_at = self.database_lost_at or now
                if now - self.database_lost_at > settings.DISPATCH_DATABASE_OUTAGE_SECONDS:
                    raise
                logger.warning("application %s: the database is unreachable; trying again", self.application.pk)
                connection.close()
                time.sleep(1.0)

    def step(self, sender):
        """One turn of the loop; False when this dispatcher is done."""
        idle_limit = settings.DISPATCH_IDLE_SECONDS
        cap = self.application.max_concurrency
        if is_shutting_down() or self.disabled or not self.keep_lease():
            return False
        queued = len(self.waiting) + self.sending
        free = cap * (1 + QUEUE_FACTOR) - queued
        # Claim in batches, not one test per answer, unless the sender is short of work.
        if self.isolated is None and (free >= max(1, cap // 4) or queued < cap):
            claimed = claim_tests(self.application, free)
            if claimed:
                self.waiting.extend(claimed)
                self.moved()
        self.start_jobs(sender)
        if not self.sending:
            self.moved()  # nothing in flight (idle, or paused by Retry-After): healthy
        if not self.sending and not self.waiting and not self.unrecorded:
            due = next_due_at(self.application.pk)
            if due is None:
                return False
            wait = (due - timezone.now()).total_seconds()
            if wait > idle_limit:
                return False  # the sweeper wakes a dispatcher when it falls due
            time.sleep(min(max(wait, 0.01), 1.0))
            return True
        outcomes = self.wait(sender, self.write_wait())
        self.start_jobs(sender)  # refill the freed slots before writing outcomes
        self.hold(outcomes)
        if self.write_wait() == 0:
            self.record([], refill=sender)
        return True

    def hold(self, outcomes):
        """Keep answers for the next write (see WRITE_DELAY_SECONDS)."""
        if outcomes and not self.unrecorded:
            self.unrecorded_since = time.monotonic()
        self.unrecorded.extend(outcomes)

    def write_wait(self):
        """Seconds until the held answers must be written (0: now), or OUTCOME_WAIT_SECONDS with none held."""
        if not self.unrecorded:
            return OUTCOME_WAIT_SECONDS
        if len(self.unrecorded) >= WRITE_CHUNK or not self.sending:
            return 0
        return max(0.0, min(OUTCOME_WAIT_SECONDS, self.unrecorded_since + WRITE_DELAY_SECONDS - time.monotonic()))

    def start_jobs(self, sender):
        """Send claimed tests into the free slots, each only if its run is still active.

        The check is made here, right before the requests start, so no delivery of a run
        starts after its cancel has answered (the cancel already errored those tests).
        At most the in-flight limit (throttle.py) is in flight; a test whose last attempt was
        lost with its worker goes alone, so that if it kills this worker too, nothing else is lost."""
        if self.isolated is not None:
            return
        free = min(self.limit.free_slots(self.sending), len(self.waiting))
        batch = []
        for test in list(itertools.islice(self.waiting, free)):
            if test.lost_attempts:
                if not batch and not self.sending:
                    batch = [test]  # alone: see below
                break  # otherwise it waits for what is in flight, then goes alone
            batch.append(test)
        if not batch:
            return
        # Asked before anything leaves the queue: if the database is unreachable, nothing is lost.
        active = active_runs({test.run_id for test in batch})
        for _ in batch:
            self.waiting.popleft()
        if batch[0].lost_attempts:
            # Nothing else in flight and nothing else claimed, so that if this test kills the
            # worker again, no other test loses an attempt with it.
            self.isolated = batch[0].pk
            self.hand_back()
        stopped, jobs = [], []
        try:
            for test in batch:
                if test.run_id in active:
                    jobs.append(self.job(test))
                else:
                    stopped.append(test.pk)
                    if test.pk == self.isolated:
                        self.isolated = None
        finally:  # what was made goes out even if making the next job failed (its lease brings it back)
            if jobs:
                sender.submit(*jobs)
                self.sending += len(jobs)
        # A run that stopped once decided sends nothing more: its claimed tests are skipped.
        for run_id in state.skip_claimed(stopped, timezone.now()) if stopped else ():
            complete_if_done(run_id)

    def hand_back(self):
        if self.waiting:
            stopped = state.hand_back([test.pk for test in self.waiting])
            self.waiting.clear()
            for run_id in stopped:
                complete_if_done(run_id)

    def keep_lease(self):
        if time.monotonic() - self.renewed_at < settings.DISPATCH_LEASE_SECONDS / 3:
            return True
        progress = {"dispatch_progress_at": self.moved_at, "dispatch_limit": self.limit.current}
        if self.moved_since_renewal:
            progress["dispatch_stalled_since"] = None
        token = renew_lease(self.application.pk, self.token, **progress)
        self.moved_since_renewal = False
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
            self.stops_when_decided[run_id] = run.stop_when_decided
            self.urls[run_id] = run.webhook_url or self.application.webhook_url
        return self.envelopes[run_id]

    def job(self, test):
        payload = webhooks.build_test_payload(test, self.envelope(test.run_id))
        return Job(
            test_id=test.pk,
            run_id=test.run_id,
            attempt=test.attempts,
            url=self.urls[test.run_id],
            secret=self.application.signing_secrets(),
            msg_id=test.webhook_id,
            payload=payload,
            timeout=float(self.application.timeout_seconds),
        )

    def record(self, outcomes, refill=None):
        """Write outcomes, WRITE_CHUNK at a time. With `refill` (the sender), the answers that
        came during each chunk's write are taken and their slots filled before the next chunk:
        a slot freed while a large batch is written would otherwise wait for all of it."""
        # Answers not yet written (held for a batch, or the database was unreachable) go first, once.
        outcomes, self.unrecorded = [*self.unrecorded, *outcomes], []
        began = time.monotonic()
        while outcomes:
            chunk, outcomes = outcomes[:WRITE_CHUNK], outcomes[WRITE_CHUNK:]
            try:
                self.write(chunk)
            except (OperationalError, InterfaceError):
                self.unrecorded = [*chunk, *outcomes]
                raise
            # Bounded, so that the loop (claims, the lease's renewal) comes round again.
            if refill is not None and time.monotonic() - began < OUTCOME_WAIT_SECONDS:
                outcomes.extend(self.wait(refill, 0))
                self.start_jobs(refill)

    def write(self, outcomes):
        self.moved()
        for outcome in outcomes:
            if outcome.job.test_id == self.isolated:
                self.isolated = None
            if throttle.is_throttling(outcome.status_code):
                retry_after = policy.parse_retry_after(outcome.retry_after)
                self.limit.on_throttled(min(retry_after, settings.WEBHOOK_RETRY_AFTER_MAX_SECONDS) if retry_after else None)
            elif outcome.status_code is not None and 200 <= outcome.status_code < 300:
                self.limit.on_success()
        self.show_limit()
        ended = record_outcomes(outcomes, self.application, self.evaluators, self.max_attempts)
        # A run that stops when decided may stop now.
        live.note_progress([run_id for run_id in ended if self.stops_when_decided.get(run_id, True)])
        for run_id in ended:
            complete_if_done(run_id)
        if health.note_outcomes(self.application.pk, outcomes, timezone.now()):
            self.disabled = True

    def show_limit(self):
        """Write the in-flight limit for the run page when it changed (at most once a second)."""
        shown, at = self.limit_shown
        if self.limit.current != shown and time.monotonic() - at >= 1.0:
            Application.objects.filter(pk=self.application.pk, dispatch_lease_until=self.token).update(dispatch_limit=self.limit.current)
            self.limit_shown = (self.limit.current, time.monotonic())


def record_outcomes(outcomes, application, evaluators, max_attempts):
    """Write a batch of delivery outcomes: one DeliveryAttempt each, and the test's new state
    where the test still awaits that attempt (a callback or a cancel may have come first).
    Returns the ids of runs that got terminal tests (candidates for closing).

    One answer never costs the others: when the batch cannot be written, each outcome is
    written on its own, and a test whose outcome the database refuses is errored with why.
    A lost connection is not an answer's fault: it propagates (the tests' leases bring them back).
    """
    try:
        return write_outcomes(outcomes, application, evaluators, max_attempts, isolated=False)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        logger.exception("writing %d outcomes of application %s failed; writing them one by one", len(outcomes), application.pk)
    return write_outcomes(outcomes, application, evaluators, max_attempts, isolated=True)


# What write_outcomes never reads: the task's input can be large, and each column costs decoding.
UNUSED_BY_OUTCOMES = ("task_input", "task_external_id", "task", "repetition", "created_at", "lost_attempts", "dispatched_at")
OUTCOME_FIELDS = concrete_fields(Test, UNUSED_BY_OUTCOMES)


@functools.cache
def lock_dispatched_sql(vendor, for_update):
    """The SELECT of lock_dispatched, but for the list of ids (`IN (…)` is filled per call)."""
    quote = connections[connection.alias].ops.quote_name
    column = {field.name: quote(field.column) for field in Test._meta.concrete_fields}
    return (
        f"SELECT {', '.join(quote(field.column) for field in OUTCOME_FIELDS)} FROM {quote(Test._meta.db_table)}"
        f" WHERE {column['status']} = %s AND {column['id']} IN ({{ids}})"
        f" ORDER BY {column['task_external_id']}, {column['repetition']}"  # Test's order: every writer locks tests in it
        + (" FOR UPDATE" if for_update else "")
    )


def lock_dispatched(test_ids):
    """The tests of `test_ids` still dispatched, locked for update, without UNUSED_BY_OUTCOMES:
    what `Test.objects.select_for_update().filter(pk__in=…, status=dispatched).defer(…)` loads, as
    one fixed statement (the ORM compiled it for every write, and built each instance field by field)."""
    if not test_ids:
        return []
    wrapper = connections[connection.alias]
    sql = lock_dispatched_sql(wrapper.vendor, wrapper.features.has_select_for_update)
    pk = Test._meta.pk
    with wrapper.cursor() as cursor:
        cursor.execute(
            sql.format(ids=", ".join(["%s"] * len(test_ids))),
            [TestStatus.DISPATCHED.value, *(pk.get_db_prep_value(test_id, wrapper) for test_id in test_ids)],
        )
        rows = cursor.fetchall()
    return [instance(Test, OUTCOME_FIELDS, row, wrapper) for row in rows]


def write_outcomes(outcomes, application, evaluators, max_attempts, *, isolated):
    now = timezone.now()
    by_test = {outcome.job.test_id: outcome for outcome in outcomes}
    attempts = []
    ended = {}
    with transaction.atomic():
        current = {test.pk: test for test in lock_dispatched(list(by_test))}
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
            try:
                apply_outcome(test, outcome, attempt, application, evaluators.get(test.run_id, []), max_attempts, now)
            except Exception as failure:  # an answer's content must never stop the dispatcher
                logger.exception("the outcome of test %s could not be applied", test.pk)
                reason = f"The answer could not be used ({type(failure).__name__}: {str(failure)[:300]})."
                attempt.error = reason
                state.finish_unusable(test, reason, now)
            if isolated:
                merge_ended(ended, save_alone(test, attempt, now))
            else:
                changed.append(test)
        state.insert_attempts(attempts)
        if not isolated:
            ended = state.save_tests(changed)
    return list(ended)


def save_alone(test, attempt, now):
    """Write one test's new state in a savepoint; if the database refuses it, error the test
    instead, without the result it could not store. Returns save_tests' {run id: [status]}."""
    try:
        with transaction.atomic():
            return state.save_tests([test])
    except (OperationalError, InterfaceError):
        raise
    except Exception as failure:
        logger.exception("the outcome of test %s could not be stored", test.pk)
        reason = f"The answer could not be stored ({type(failure).__name__}: {str(failure)[:300]})."
        attempt.error = reason
        state.finish_unusable(test, reason, now)
        with transaction.atomic():
            return state.save_tests([test])


def merge_ended(ended, more):
    for run_id, statuses in more.items():
        ended.setdefault(run_id, []).extend(statuses)


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
            if application is None or application.is_disabled() or application.is_pull():
                return sessions  # a pull application asks for its tests (runs/pull.py): nothing is pushed to it
            dispatcher = Dispatcher(application, token)
            dispatcher.run()
            sessions += 1
        finally:
            moved = {"dispatch_progress_at": dispatcher.moved_at, "dispatch_stalled_since": None} if dispatcher else {}
            release_lease(application_id, dispatcher.token if dispatcher else token, **moved)
        # Tests that became due while we were finishing found our lease held; take them now.
        if not has_due_tests(application_id):
            return sessions
        if is_shutting_down():
            # This worker no longer consumes its queues: the task goes to another one.
            current_app.send_task(DISPATCH_TASK, args=[str(application_id)])
            return sessions
