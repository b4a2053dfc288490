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


def position(pp):
    """Where a difference in pp (−100…+100) sits on the live panel's bar, in percent of its width."""
    return round((max(-100.0, min(100.0, pp)) + 100) / 2, 2)


def live_view(summary):
    """The live panel of a variant run (SPEC §7 `live`: done, total, delta_pp, ci_low, ci_high,
    decided) with where its estimate and confidence sequence sit on a −100…+100 pp bar; None
    without a live summary (the baseline, a dry run, no baseline result)."""
    if summary is None:
        return None
    view = dict(summary)
    if summary["delta_pp"] is not None and summary["ci_low"] is not None:
        low, high = position(summary["ci_low"]), position(summary["ci_high"])
        view.update(point=position(summary["delta_pp"]), band_left=low, band_width=round(high - low, 2))
    view["percent"] = round(100 * summary["done"] / summary["total"]) if summary["total"] else 0
    return view
