"""What a run's progress shows: its test counts, the tests awaiting a callback, and why it failed."""

import math

from django.utils import timezone

from experiments_app.models import RunStatus
from experiments_app.states import State


def progress_counts(run, now=None):
    """{total, passed, failed, errored, done, percent, awaiting, timeout_in}: `awaiting` counts
    the tests accepted with a 202 whose callback has not come, `timeout_in` the seconds until
    the first of them times out (None when none waits)."""
    counts = run.count_tests()
    counts["done"] = counts["passed"] + counts["failed"] + counts["errored"]
    counts["percent"] = round(100 * counts["done"] / counts["total"]) if counts["total"] else 0
    waiting = run.count_awaiting_results() if run.is_active() else {"awaiting": 0, "next_due": None}
    counts["awaiting"] = waiting["awaiting"]
    due = waiting["next_due"]
    counts["timeout_in"] = max(0, math.ceil((due - (now or timezone.now())).total_seconds())) if due else None
    return counts


def explained_failure(experiment, run):
    """`run` when the experiment page should keep explaining it after a reload: the latest run
    failed, or was cancelled and left the baseline failed; else None."""
    if run is None or run.is_active():
        return None
    if run.status == RunStatus.FAILED or (run.status == RunStatus.CANCELLED and experiment.status == State.BASELINE_FAILED):
        return run
    return None
