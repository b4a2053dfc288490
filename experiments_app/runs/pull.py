"""Pull mode (SPEC §8): an application that the dashboard cannot reach asks for its tests.

`POST applications/{id}/pending-tests/` leases due tests to the caller instead of a
dispatcher pushing them. A lease is a claim (claim.py) with the caller's lease time: the
test is `dispatched`, its attempt counted, and if no result comes before the lease expires
the test falls due again through the same rule as a lost push attempt, so the next puller
gets it with one more attempt and the sweeper errors it after the last one. Results come
through `tests/{id}/result/` like any callback (ingest.py); a late result for an expired
lease is still accepted once, while the test is open.

`max_concurrency` caps the tests leased and not yet expired across every puller: leasing
locks the application row, counts what is held and leases at most the rest, so two
pullers never pass the cap and never get the same test (claimed rows are locked and
skipped). The long poll repeats that short transaction until work appears or the wait
ends; no transaction stays open while it sleeps.
"""

import threading
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from experiments_app import webhooks
from experiments_app.errors import Conflict, NotFound
from experiments_app.models import Application, DeliveryAttempt, Run, TestStatus
from experiments_app.runs import state
from experiments_app.runs.claim import active_runs, application_tests, claim_tests, due_filter
from experiments_app.runs.complete import complete_if_done

MAX_ITEMS = 100
DEFAULT_ITEMS = 10
MAX_WAIT_SECONDS = 30
MAX_LEASE_SECONDS = 3600


def held_leases(application_id, now):
    """Tests of the application leased to a puller whose lease has not expired."""
    return application_tests(application_id).filter(status=TestStatus.DISPATCHED, lease_until__gte=now).count()


def offerable(tests):
    """Those of `tests` that may still be handed out: the same check the dispatcher makes right
    before it sends (their run is still active)."""
    active = active_runs({test.run_id for test in tests})
    return [test for test in tests if test.run_id in active]


def lease_tests(application_id, limit, lease_seconds):
    """Lease up to `limit` due tests of a pull application for `lease_seconds`, within its
    max_concurrency across every puller. Returns the leased tests (possibly none).

    Raises NotFound when the application is gone and Conflict when it is not in pull mode.
    """
    with transaction.atomic():
        application = Application.objects.select_for_update().filter(pk=application_id).first()
        if application is None:
            raise NotFound("No such application.")
        if not application.is_pull():
            raise Conflict("This application gets its tests pushed to its webhook; switch its delivery to pull first.")
        room = min(limit, application.max_concurrency - held_leases(application.pk, timezone.now()))
        if room <= 0:
            return []
        claimed = claim_tests(application, room, lease_seconds=lease_seconds)
        leased = offerable(claimed)
        kept = {test.pk for test in leased}
        stopped = state.hand_back([test.pk for test in claimed if test.pk not in kept])
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(test_id=test.pk, number=test.attempts, started_at=test.dispatched_at, pulled=True) for test in leased
        )
    for run_id in stopped:  # a run that stopped once decided: its claimed tests were skipped
        complete_if_done(run_id)
    return leased


def payloads(tests):
    """The `data` object of the §4 body for each leased test (same testId, callbackUrl, overrides)."""
    runs = Run.objects.select_related("experiment", "variant__inference_step").in_bulk({test.run_id for test in tests})
    envelopes = {run_id: webhooks.run_envelope(run) for run_id, run in runs.items()}
    return [webhooks.build_test_payload(test, envelopes[test.run_id])["data"] for test in tests]


_waiters = None
_waiters_size = None
_guard = threading.Lock()


def waiters():
    """The process's places for waiting pullers, (re)made when the setting changes (tests change it)."""
    global _waiters, _waiters_size
    with _guard:
        if _waiters is None or _waiters_size != settings.PULL_MAX_WAITERS:
            _waiters = threading.BoundedSemaphore(settings.PULL_MAX_WAITERS)
            _waiters_size = settings.PULL_MAX_WAITERS
        return _waiters


def pull_tests(application_id, *, limit=DEFAULT_ITEMS, wait=0, lease_seconds, clock=time.monotonic, sleep=time.sleep):
    """Lease tests for one pull request: at once when some are due, else polling every
    PULL_POLL_INTERVAL_SECONDS until some are or `wait` seconds have passed.

    A waiting request holds a web thread, so at most PULL_MAX_WAITERS wait at once in a
    process; beyond that a request without work answers at once (empty) and the puller asks
    again. Returns {"tests": [§4 data objects], "lease_until": when their lease ends (None
    when empty)}. Raises NotFound / Conflict as `lease_tests`.
    """
    deadline = clock() + wait
    tests = lease_tests(application_id, limit, lease_seconds)
    semaphore = waiters()  # the one acquired is the one released, even if the setting changes meanwhile
    if not tests and wait > 0 and semaphore.acquire(blocking=False):
        try:
            while not tests and clock() < deadline:
                sleep(max(0.0, min(settings.PULL_POLL_INTERVAL_SECONDS, deadline - clock())))
                tests = lease_tests(application_id, limit, lease_seconds)
        finally:
            semaphore.release()
    return {"tests": payloads(tests), "lease_until": tests[0].lease_until if tests else None}


def pull_status(application_id):
    """{"waiting": due tests nobody holds, "leased": tests leased and not expired} of a pull application."""
    now = timezone.now()
    return {"waiting": application_tests(application_id).filter(due_filter(now)).count(), "leased": held_leases(application_id, now)}
