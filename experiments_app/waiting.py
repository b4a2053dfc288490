"""Waiting for a run to end without polling from the client: `runs/{id}/?wait=N` (SPEC §8).

How it avoids starving the web server: a waiting request holds one worker thread, so at
most LONG_POLL_MAX_WAITERS requests per web process wait at once (a semaphore taken
without blocking); a request beyond that answers at once with the run as it is, and the
client asks again (`experiments-cli wait` does). A waiter reads one indexed column of one
row every LONG_POLL_INTERVAL_SECONDS, so the database sees a few cheap queries a second
per waiter, and it answers within one interval of the run ending, however it ended
(closed by a worker, cancelled by someone, swept).
"""

import threading
import time

from django.conf import settings

from experiments_app.models import ACTIVE_RUN_STATUSES, Run

MAX_WAIT_SECONDS = 60

_waiters = None
_waiters_size = None
_guard = threading.Lock()


def waiters():
    """The process's semaphore, (re)made when the setting changes (tests change it)."""
    global _waiters, _waiters_size
    with _guard:
        if _waiters is None or _waiters_size != settings.LONG_POLL_MAX_WAITERS:
            _waiters = threading.BoundedSemaphore(settings.LONG_POLL_MAX_WAITERS)
            _waiters_size = settings.LONG_POLL_MAX_WAITERS
        return _waiters


def is_active(run_id):
    return Run.objects.filter(pk=run_id, status__in=ACTIVE_RUN_STATUSES).exists()


def wait_for_run_end(run_id, seconds):
    """Block until the run is no longer active or `seconds` (capped at 60) have passed.

    Returns "ended", "timeout", or "busy" when every waiting place of this process is taken
    (then it does not wait at all)."""
    semaphore = waiters()
    if not semaphore.acquire(blocking=False):
        return "busy"
    try:
        deadline = time.monotonic() + min(float(seconds), MAX_WAIT_SECONDS)
        interval = settings.LONG_POLL_INTERVAL_SECONDS
        while is_active(run_id):
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            time.sleep(min(interval, left))
        return "ended"
    finally:
        semaphore.release()
