"""The database flush after a transactional test, retried when PostgreSQL picks it as a deadlock's victim.

A transactional test is emptied with one TRUNCATE of every table, which takes its exclusive
locks table by table. Work the test set going in the background can still hold a row lock
on a later table and then ask for an earlier one: the session's Celery worker dispatching a
run a test started (its task was sent at the commit), or a live-server thread still
answering. PostgreSQL then aborts one of the two, often the TRUNCATE. The background
transaction is short and goes through once the TRUNCATE is gone, so the flush is tried
again; any other error, or a deadlock that persists, is raised as before.
"""

import time

from django.test import TransactionTestCase

ATTEMPTS = 5
PAUSE_SECONDS = 0.5


def is_deadlock(error):
    """True when `error` or an exception it was raised from is PostgreSQL's deadlock_detected."""
    while error is not None:
        if getattr(getattr(error, "diag", None), "sqlstate", None) == "40P01":
            return True
        error = error.__cause__ or error.__context__
    return False


def retrying_on_deadlock(call, *, attempts=ATTEMPTS, pause=PAUSE_SECONDS):
    """Call `call()`; when it fails with a deadlock, call it again (at most `attempts` calls)."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as error:
            if attempt == attempts or not is_deadlock(error):
                raise
            time.sleep(pause)


def install():
    """Make every transactional test's flush (pytest-django calls Django's) retry on a deadlock."""
    flush = TransactionTestCase._fixture_teardown
    if getattr(flush, "retries_on_deadlock", False):
        return

    def _fixture_teardown(self):
        return retrying_on_deadlock(lambda: flush(self))

    _fixture_teardown.retries_on_deadlock = True
    TransactionTestCase._fixture_teardown = _fixture_teardown
