"""Live monitoring of a running variant (SPEC §7 `live`) and stopping once decided (SPEC §3).

`advance(run_id)` feeds the always-valid confidence sequence (stats.live_*) every task of
the run that has finished since the last call — all its repetitions terminal — in the order
they finished: d_i = v_i − b_i against the baseline's latest result run. The state is kept
on the run (`Run.live`), so each call costs one aggregate query and O(new tasks). A run
started with `stop_when_decided` stops as soon as `decided` is set: its pending tests become
`skipped` (state.skip_pending) and it closes once the tests in flight are done.

At k = 1 on both sides the mixture e-value on the discordant tasks is used, otherwise the
betting confidence sequence on the d_i; both stay valid however often they are looked at.
"""

import time

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from experiments_app import results, stats
from experiments_app.models import ACTIVE_RUN_STATUSES, OPEN_TEST_STATUSES, Run, Test, TestStatus
from experiments_app.runs import state
from experiments_app.runs.complete import complete_if_done


def finished_tasks(run_id):
    """[(task id, passed, ran)] of the run's tasks whose tests are all terminal (and not all
    skipped), in the order their last test ended."""
    rows = (
        Test.objects.filter(run_id=run_id, task_id__isnull=False)
        .values("task_id")
        .annotate(
            open=Count("pk", filter=Q(status__in=OPEN_TEST_STATUSES)),
            ran=Count("pk", filter=~Q(status__in=[*OPEN_TEST_STATUSES, TestStatus.SKIPPED])),
            passed=Count("pk", filter=Q(status=TestStatus.PASSED)),
            last=Max("completed_at"),
        )
        .filter(open=0, ran__gt=0)
        .order_by("last", "task_id")
    )
    return [(str(row["task_id"]), row["passed"], row["ran"]) for row in rows]


def fresh_state(run, baseline_run, baseline):
    tasks = run.tests.exclude(task_id__isnull=True).values("task_id").distinct().count()
    single = run.experiment.repetitions == 1 and all(summary["n"] == 1 for summary in baseline.values())
    method = "mixture" if single else "betting"
    return {
        "baseline_run": str(baseline_run.pk),
        "state": stats.live_start(tasks, alpha=run.experiment.alpha, method=method),
        "fed": [],
    }


def advance(run_id):
    """Feed the tasks finished since the last call; stop the run when it asked to and the
    verdict is settled. Returns the live summary (SPEC §7), or None for a run that has none
    (the baseline, a dry run, no baseline result)."""
    with transaction.atomic():
        run = Run.objects.select_for_update(of=("self",)).select_related("experiment", "variant").filter(pk=run_id).first()
        if run is None or run.dry_run or run.variant.is_baseline:
            return None
        baseline_run = results.baseline_result_runs(run.experiment_id).first()
        if baseline_run is None:
            return None
        live = run.live or {}
        if not run.is_active() and live.get("state") and live.get("baseline_run") != str(baseline_run.pk):
            return stats.live_summary(live["state"])  # an ended run keeps the baseline it was watched against
        baseline = None
        if live.get("baseline_run") != str(baseline_run.pk):
            baseline = results.task_summaries(results.run_outcomes(baseline_run))
            live = fresh_state(run, baseline_run, baseline)
        fed = set(live["fed"])
        new = [task for task in finished_tasks(run.pk) if task[0] not in fed]
        if new:
            if baseline is None:
                baseline = results.task_summaries(results.run_outcomes(baseline_run))
            current = live["state"]
            for task, passed, ran in new:
                summary = baseline.get(task)
                if summary and summary["n"]:
                    difference = passed / ran - summary["passed"] / summary["n"]
                    if current["method"] == "mixture":
                        difference = round(difference)
                    current = stats.live_update(current, max(-1.0, min(1.0, difference)))
            live = {**live, "state": current, "fed": [*live["fed"], *(task for task, _, _ in new)]}
        summary = stats.live_summary(live["state"])
        if run.is_active() or new or live is not run.live:
            live["at"] = time.time()
            Run.objects.filter(pk=run.pk).update(live=live)
        stopping = run.is_active() and run.stop_when_decided and not run.stopped_early and summary["decided"] is not None
        if stopping:
            state.skip_pending(run.pk, timezone.now())
    if stopping:
        complete_if_done(run.pk)
    return summary


def note_progress(run_ids):
    """After tests of these runs ended: look again for the runs that stop when decided (at most
    every settings.LIVE_LOOK_SECONDS each: the sequence is valid at any look, this only bounds
    the cost). Others are looked at when someone reads `live`."""
    watched = Run.objects.filter(pk__in=list(run_ids), stop_when_decided=True, stopped_early=False, status__in=ACTIVE_RUN_STATUSES)
    now = time.time()
    for run_id, live in watched.values_list("pk", "live"):
        if now - (live or {}).get("at", 0) >= settings.LIVE_LOOK_SECONDS:
            advance(run_id)


def summary(run):
    """The run's `live` field: its summary, every task that has ended fed first (so an ended
    run shows the sequence over all its tasks, not where the last look left it); None for the
    baseline and dry runs."""
    if run.dry_run or run.variant.is_baseline:
        return None
    return advance(run.pk)
