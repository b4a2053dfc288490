"""The run page (filterable tests), one test beside the baseline's, run comparison and exports."""

from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseStopPolling

from experiments_app import results, step_detail, webhooks
from experiments_app.models import RUN_LARGE_FIELDS, Application, Run, Task, Test
from experiments_app.results import baseline_result_runs, compare_runs, experiment_results, run_aggregates
from experiments_app.runs import live
from webui import exports
from webui.access import team_ids, team_member
from webui.charts import confidence
from webui.diffs import side_by_side
from webui.progress import live_view, progress_counts
from webui.steps import step_rows
from webui.views.experiments import load_experiment

PAGE_SIZE = 50
DRY_TESTS_SHOWN = 100
FILTERS = ("all", "passed", "failed", "errored", "skipped")
# A task's label (SPEC §8 ?label=): its own repetitions, or its change against the baseline beyond their noise.
LABELS = ("stable_pass", "stable_fail", "flaky", "improved", "regressed")
TABLE_FIELDS = ("id", "run_id", "task_id", "task_external_id", "repetition", "status", "attempts", "metrics", "evaluations", "error")


def load_run(request, pk):
    return get_object_or_404(
        # per-task outcomes are read only when a pairing was not stored at close
        Run.objects.select_related("variant__inference_step", "experiment__application").defer("outcomes"),
        pk=pk,
        experiment__team_id__in=team_ids(request),
    )


def baseline_run_of(run):
    """The baseline's latest result run in the run's experiment (None for the baseline itself or before it has one)."""
    if run.variant.is_baseline:
        return None
    return baseline_result_runs(run.experiment_id).defer("outcomes").first()


def listed_runs(experiment_id):
    """An experiment's runs for a pick list, newest first, without their stored per-task
    aggregates and config (hundreds of KB a run with thousands of tasks)."""
    return Run.objects.filter(experiment_id=experiment_id).select_related("variant").defer(*RUN_LARGE_FIELDS).order_by("-created_at")


def saving(run):
    """What stopping when decided saved (SPEC §3): the skipped tests, their share of the run, and
    their cost at what the run's tests cost so far (None without a reported cost)."""
    if not run.skipped:
        return None
    planned = run.total + run.skipped
    per_test = step_detail.cost_figures(run_aggregates(run), run.passed)["cost_per_test"]
    return {
        "tests": run.skipped,
        "share": run.skipped / planned if planned else None,
        "cost": per_test * run.skipped if per_test is not None else None,
    }


def run_summary_context(run):
    return {
        "saving": saving(run),
        "run": run,
        "counts": progress_counts(run),
        "experiment": run.experiment,
        "throttle": throttle_shown(run),
        "live": live_view(live.summary(run)),
        "confidence": confidence(run.experiment.alpha),
    }


def parse_filters(query):
    """(status filter, label) from the query string, each allow-listed; the old ?filter=improved
    and ?filter=regressed read as the labels they always were."""
    shown, label = query.get("filter", "all"), query.get("label", "")
    if shown in ("improved", "regressed") and not label:
        shown, label = "all", shown
    return (shown if shown in FILTERS else "all"), (label if label in LABELS else "")


def label_counts(run, comparison):
    """{label: number of tasks} for the label filter bar, once the run has ended (labels come from its stored outcomes)."""
    if run.is_active():
        return {}
    counts = dict.fromkeys(LABELS[:3], 0)
    for label in results.run_labels(run).values():
        counts[label] += 1
    if comparison:
        counts.update(improved=len(comparison["improved"]), regressed=len(comparison["regressed"]))
    return counts


def throttle_shown(run):
    """The dispatcher's in-flight limit while it backs off (throttle.py), for an active run."""
    if not run.is_active():
        return None
    application = Application.objects.only("max_concurrency", "dispatch_limit").get(pk=run.experiment.application_id)
    if application.dispatch_limit is None or application.dispatch_limit >= application.max_concurrency:
        return None
    return {"limit": application.dispatch_limit, "cap": application.max_concurrency}


@require_GET
@team_member
@vary_on_headers("HX-Request")
def run_detail(request, pk):
    run = load_run(request, pk)
    shown, label = parse_filters(request.GET)
    baseline = baseline_run_of(run)
    comparison = compare_runs(run, baseline) if baseline and not run.is_active() else None
    tests = Test.objects.filter(run=run).only(*TABLE_FIELDS)
    if shown != "all":
        tests = tests.filter(status=shown)
    if label:
        tests = tests.filter(task_id__in=results.tasks_labelled(run, label) if not run.is_active() else [])
    page = Paginator(tests.order_by("task_external_id", "repetition"), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        **run_summary_context(run),
        "page": page,
        "shown": shown,
        "filters": FILTERS,
        "label": label,
        "labels": LABELS,
        "label_counts": label_counts(run, comparison),
        "baseline": baseline,
        "comparison": comparison,
        "other_runs": listed_runs(run.experiment_id).exclude(pk=run.pk)[:50],
    }
    if request.htmx:
        return render(request, "webui/run_detail.html#run-table", context)
    context["step_rows"] = step_rows(
        run_aggregates(run).get("steps"), run_aggregates(baseline).get("steps") if baseline else None, list(run.config or {})
    )
    context["dry_tests"] = dry_tests(run) if run.dry_run else None
    template = "webui/run_detail.html"
    return render(request, template, context)


def dry_tests(run):
    """Each test of a dry run with the payload as it was sent (overrides included), for the run page."""
    envelope = webhooks.run_envelope(run)
    tests = Test.objects.filter(run=run).order_by("task_external_id", "repetition")[:DRY_TESTS_SHOWN]
    return [{"test": test, "sent": webhooks.build_test_payload(test, envelope)} for test in tests]


@require_GET
@team_member
def run_dry_tests(request, pk):
    """A dry run's tests as sent and answered; polled while the dry run is active."""
    run = load_run(request, pk)
    if not run.dry_run:
        raise Http404("Not a dry run.")
    return render(request, "webui/run_detail.html#dry-tests", {"run": run, "dry_tests": dry_tests(run)})


@require_GET
@team_member
def run_summary(request, pk):
    """The run's counts, polled while it is active; 286 plus `run-finished` once it ends."""
    run = load_run(request, pk)
    response = render(request, "webui/run_detail.html#run-summary", run_summary_context(run))
    if not run.is_active():
        response = HttpResponseStopPolling(response.content)
        response["HX-Trigger"] = "run-finished"
    return response


@require_GET
@team_member
@vary_on_headers("HX-Request")
def test_detail(request, pk, test_id):
    run = load_run(request, pk)
    test = get_object_or_404(Test, pk=test_id, run=run)
    baseline = baseline_run_of(run)
    attempts = list(test.delivery_attempts.all())
    baseline_test = (
        Test.objects.filter(run=baseline, task_id=test.task_id, repetition=test.repetition).first() if baseline and test.task_id else None
    )
    context = {
        "run": run,
        "experiment": run.experiment,
        "test": test,
        "baseline_test": baseline_test,
        "trace": step_detail.trace(test.steps, baseline_test.steps if baseline_test else None, list(run.config or {})),
        "diff": side_by_side(baseline_test.output if baseline_test else None, test.output),
        "attempts": attempts,
        "pulled": any(attempt.pulled for attempt in attempts),
        "evaluations": [e for e in test.evaluations or [] if isinstance(e, dict)],
        "sent": webhooks.build_test_payload(test, webhooks.run_envelope(run)),
    }
    template = "webui/test_detail.html#test-body" if request.htmx else "webui/test_detail.html"
    return render(request, template, context)


def changed_tasks(task_ids, names, new_run, old_run):
    """[{name, new_test, old_test}] of the tasks that changed between two runs, by external id:
    each with its first test in either run, so the page links to the outputs side by side."""
    tests = Test.objects.filter(run__in=[new_run, old_run], task_id__in=task_ids, repetition=1).values_list("run_id", "task_id", "pk")
    found = {(run_id, str(task_id)): pk for run_id, task_id, pk in tests}
    rows = [
        {"name": names.get(task, task), "new_test": found.get((new_run.pk, task)), "old_test": found.get((old_run.pk, task))}
        for task in task_ids
    ]
    return sorted(rows, key=lambda row: row["name"])


@require_GET
@team_member
def run_compare(request, new, old):
    new_run, old_run = load_run(request, new), load_run(request, old)
    if new_run.experiment_id != old_run.experiment_id:
        raise Http404("Both runs must belong to one experiment.")
    comparison = compare_runs(new_run, old_run)
    ids = set(comparison["improved"]) | set(comparison["regressed"])
    names = {str(key): value for key, value in Task.objects.filter(pk__in=ids).values_list("pk", "external_id")}
    context = {
        "experiment": new_run.experiment,
        "new_run": new_run,
        "old_run": old_run,
        "comparison": comparison,
        "confidence": confidence(new_run.experiment.alpha),
        "improved": changed_tasks(comparison["improved"], names, new_run, old_run),
        "regressed": changed_tasks(comparison["regressed"], names, new_run, old_run),
        "runs": listed_runs(new_run.experiment_id)[:100],
    }
    return render(request, "webui/run_compare.html", context)


@require_GET
@team_member
def run_export(request, pk, fmt):
    run = load_run(request, pk)
    tests = Test.objects.filter(run=run).order_by("task_external_id", "repetition")
    filename = f"run-{run.pk}.{fmt}"
    if fmt == "csv":
        return exports.tests_csv(tests, filename)
    data = {
        "run": {
            "id": str(run.pk),
            "variant": run.variant.name,
            "status": run.status,
            "config": run.config,
            "total": run.total,
            "passed": run.passed,
            "failed": run.failed,
            "errored": run.errored,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
        },
        "tests": [exports.row_of_test(test) for test in tests.iterator(chunk_size=2000)],
    }
    return exports.json_download(data, filename)


@require_GET
@team_member
def experiment_export(request, pk, fmt):
    experiment = load_experiment(request, pk)
    results = experiment_results(experiment)
    filename = f"experiment-{experiment.pk}-results.{fmt}"
    if fmt == "csv":
        return exports.results_csv(results, filename)
    return exports.json_download(
        {"experiment": {"id": str(experiment.pk), "name": experiment.name, "status": experiment.status}, **results}, filename
    )
