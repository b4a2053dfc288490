"""The experiments list, the new-experiment form and the experiment page with its fragments."""

import uuid

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseStopPolling

from experiments_app import actions
from experiments_app.errors import DomainError, ValidationFailed
from experiments_app.models import ACTIVE_RUN_STATUSES, RUN_LARGE_FIELDS, Application, Experiment, Run, Variant
from experiments_app.results import experiment_results
from experiments_app.states import State
from webui import charts
from webui.access import can, refuse, require_role, team_ids, team_member
from webui.forms import ExperimentForm, apply_errors, numbered_setup_steps
from webui.progress import explained_failure, progress_counts
from webui.steps import step_comparison
from webui.tree import table_rows, variant_tree
from webui.views.dry_runs import dry_runs_context

PAGE_SIZE = 50
SORT_COLUMNS = [
    ("name", "Variant", False),
    (None, "Change", False),
    ("pass_rate", "Pass rate", True),
    ("pass_rate_vs_baseline", "vs base", True),
    ("delta_pp", "Δ", True),
    ("p_value_adjusted", "p (adj.)", True),
    (None, "pass/fail/err", True),
    ("total", "Total", True),
    ("cost_per_passed", "Cost / pass", True),
    ("completed_at", "Completed", True),
]

# Hints on the results table's columns: {sort key: (anchor of the statistics page, a sentence)}.
COLUMN_HELP = {
    "pass_rate": ("pass-rate", "Passed tests out of all tests; errored ones count as not passed. Below it: the 95% interval."),
    "pass_rate_vs_baseline": ("delta", "The change relative to the baseline's pass rate."),
    "delta_pp": ("delta", "The change in percentage points, task by task. Below it: its interval at the experiment's confidence."),
    "p_value_adjusted": (
        "p-value",
        "How often chance alone would give a difference this large, Holm-adjusted over every variant (raw p below it). "
        "Below the experiment's alpha: marked *.",
    ),
}


def load_experiment(request, pk):
    return get_object_or_404(Experiment.objects.select_related("application", "winner"), pk=pk, team_id__in=team_ids(request))


@require_GET
@team_member
@vary_on_headers("HX-Request")
def experiment_list(request):
    status = request.GET.get("status", "")
    experiments = (
        Experiment.objects.filter(team=request.team)
        .select_related("application")
        .annotate(n_variants=Count("variants", distinct=True), n_runs=Count("runs", distinct=True))
        .order_by("-updated_at")
    )
    if status in State.values:
        experiments = experiments.filter(status=status)
    query = request.GET.get("q", "").strip()
    if query:
        experiments = experiments.filter(Q(name__icontains=query) | Q(description__icontains=query))
    page = Paginator(experiments, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "status": status, "q": query, "statuses": State.choices, "can_create": can(request, request.team.pk)}
    template = "webui/experiment_list.html#experiment-table" if request.htmx else "webui/experiment_list.html"
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
@team_member
def experiment_new(request):
    require_role(request, request.team.pk)
    applications = list(Application.objects.filter(team=request.team))
    form = ExperimentForm(request.POST or None, applications=applications, initial={"application": request.GET.get("application")})
    if request.method == "POST" and form.is_valid():
        application = next(app for app in applications if str(app.pk) == form.cleaned_data["application"])
        try:
            experiment = actions.create_experiment(
                application, name=form.cleaned_data["name"], description=form.cleaned_data["description"], by=request.user
            )
        except ValidationFailed as error:
            apply_errors(form, error)
        else:
            return redirect("webui:experiment-setup", pk=experiment.pk)
    status = 400 if form.errors else 200
    context = {"form": form, "applications": applications, "step_titles": numbered_setup_steps()}
    return render(request, "webui/experiment_new.html", context, status=status)


def active_run(experiment):
    return Run.objects.real().filter(experiment=experiment, status__in=ACTIVE_RUN_STATUSES).select_related("variant").first()


def lifecycle_buttons(request, experiment, run):
    """The lifecycle actions that are legal now and allowed to this user, as buttons."""
    if not can(request, experiment.team_id):
        return []
    pk = experiment.pk
    buttons = []
    if experiment.allows(State.RUNNING_BASELINE):
        label = "Retry baseline" if experiment.status == State.BASELINE_FAILED else "Run baseline"
        buttons.append({"label": label, "url": reverse("webui:experiment-run-baseline", args=[pk]), "style": "primary"})
    if run is not None:
        buttons.append(
            {
                "label": "Cancel run",
                "url": reverse("webui:run-cancel", args=[run.pk]),
                "style": "danger",
                "confirm": "Cancel the running run?",
            }
        )
    if experiment.allows(State.BASELINE_PENDING) and experiment.status == State.BASELINE_FAILED:
        buttons.append({"label": "Reopen", "url": reverse("webui:experiment-reopen", args=[pk]), "style": ""})
    if experiment.is_scope_editable():
        buttons.append({"label": "Set up", "url": reverse("webui:experiment-setup", args=[pk]), "style": "", "link": True})
    if experiment.allows(State.COMPLETED):
        buttons.append({"label": "Complete…", "url": reverse("webui:experiment-complete", args=[pk]), "style": "", "link": True})
    if experiment.allows(State.ARCHIVED):
        buttons.append(
            {
                "label": "Archive",
                "url": reverse("webui:experiment-archive", args=[pk]),
                "style": "ghost",
                "confirm": "Archive this experiment? It becomes read-only.",
            }
        )
    if not experiment.is_archived():
        buttons.append(
            {"label": "Rename…", "url": reverse("webui:experiment-setup", args=[pk]) + "#setup-details", "style": "ghost", "link": True}
        )
    if not experiment.is_running():
        buttons.append({"label": "Delete…", "url": reverse("webui:experiment-delete", args=[pk]), "style": "ghost danger", "link": True})
    return buttons


HISTORY_SHOWN = 20


def header_context(request, experiment):
    run = active_run(experiment)
    steps = list(experiment.inference_steps.values_list("external_id", flat=True))
    return {
        "experiment": experiment,
        "run": run,
        "steps": steps,
        "n_tasks": experiment.task_count(),
        "buttons": lifecycle_buttons(request, experiment, run),
    }


def results_context(request, experiment):
    """Tree, charts and table from one call to experiment_results."""
    results = experiment_results(experiment, task_ids="none")  # the page lists no tasks
    variants = list(
        Variant.objects.filter(experiment=experiment)
        .select_related("inference_step")
        .annotate(n_runs=Count("runs", filter=Q(runs__dry_run=False)))
        .order_by("created_at", "pk")
    )
    editable = can(request, experiment.team_id)
    runnable = editable and experiment.allows(State.RUNNING_VARIANT)
    branchable = editable and experiment.can_branch()
    nodes = variant_tree(variants, results)
    for node in nodes:
        variant = node["variant"]
        node["can_run"] = runnable and not variant.is_baseline
        node["can_branch"] = branchable
        node["can_delete"] = editable and variant.is_deletable(has_runs=bool(variant.n_runs), has_children=node["has_children"])
    rows, sort_key, descending = table_rows(results, request.GET.get("sort"))
    judged = [row for row in results["variants"] if row]
    return {
        "experiment": experiment,
        "confidence": charts.confidence(experiment.alpha),
        "verdicts": judged,
        "noise_rows": noise_rows(experiment, results),
        "control": next((row for row in judged if row["is_control"]), None),
        "can_add_control": branchable and not any(variant.is_control for variant in variants),
        "nodes": nodes,
        "rows": rows,
        "sort_key": sort_key,
        "sort_columns": SORT_COLUMNS,
        "column_help": COLUMN_HELP,
        "descending": descending,
        "pass_rate_figure": charts.pass_rate_figure(results),
        "delta_figure": charts.delta_figure(results, experiment.alpha),
        "has_results": bool(charts.with_results(results)),
        "tradeoff_figure": charts.tradeoff_figure(results),
        "step_comparison": step_comparison(results, list(experiment.inference_steps.values_list("external_id", flat=True))),
    }


def noise_rows(experiment, results):
    """The rows the noise panel shows: with repetitions or a control (else there is little to split), those with a result."""
    rows = [row for row in [results.get("baseline"), *results["variants"]] if row and row.get("noise")]
    if experiment.repetitions > 1 or any(row["is_control"] for row in rows):
        return rows
    return []


def progress_context(experiment, run, *, finished=None):
    shown = run or finished
    return {"experiment": experiment, "run": run, "finished": finished, "counts": progress_counts(shown) if shown else None}


def latest_run(experiment):
    return Run.objects.real().filter(experiment=experiment).select_related("variant").defer(*RUN_LARGE_FIELDS).first()


def page_progress(experiment, run):
    """The progress of the active run; without one, the latest run's failure, kept until another run starts."""
    return progress_context(experiment, run, finished=None if run else explained_failure(experiment, latest_run(experiment)))


@require_GET
@team_member
@vary_on_headers("HX-Request")
def experiment_detail(request, pk):
    experiment = load_experiment(request, pk)
    context = {**header_context(request, experiment), **results_context(request, experiment)}
    context.update(page_progress(experiment, context["run"]))
    context.update(dry_runs_context(request, experiment))
    context["flash"] = page_messages(request, context["run"])
    if request.htmx:
        return render(request, "webui/experiment_detail.html#results", context)
    context["history"] = experiment.transitions.select_related("by", "by_token").order_by("-at", "-id")[:HISTORY_SHOWN]
    return render(request, "webui/experiment_detail.html", context)


@require_GET
@team_member
def experiment_header(request, pk):
    experiment = load_experiment(request, pk)
    return render(request, "webui/experiment_detail.html#experiment-header", header_context(request, experiment))


@require_GET
@team_member
def experiment_results_fragment(request, pk):
    experiment = load_experiment(request, pk)
    return render(request, "webui/experiment_detail.html#results", results_context(request, experiment))


@require_GET
@team_member
def experiment_progress(request, pk):
    """The progress bar. Polled every 2s while a run is active; once the watched run
    ends it answers 286 (stop polling) and fires `run-finished` so the rest refreshes."""
    experiment = load_experiment(request, pk)
    run = active_run(experiment)
    watched = request.GET.get("run")
    if run is None and watched:
        finished = Run.objects.filter(experiment=experiment, pk=watched).first() if is_uuid(watched) else None
        response = HttpResponseStopPolling(
            render(request, "webui/experiment_detail.html#progress", progress_context(experiment, None, finished=finished)).content
        )
        response["HX-Trigger"] = "run-finished"
        return response
    return render(request, "webui/experiment_detail.html#progress", page_progress(experiment, run))


def is_uuid(value):
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


RUN_STARTED = "run-started"


def page_messages(request, run):
    """The messages for the experiment page: one saying a run started only while a run is active
    (a run that ended before the page loaded must not read as started)."""
    return [
        {"level": message.tags, "text": str(message)}
        for message in messages.get_messages(request)
        if run is not None or RUN_STARTED not in message.extra_tags.split()
    ]


def changed(request, url, message=None, tags=""):
    """After a successful POST: an event for htmx (the page's fragments refresh themselves), a redirect otherwise."""
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Trigger"] = "experiment-changed"
        return response
    if message:
        messages.success(request, message, extra_tags=tags)
    return redirect(url)


def perform(request, experiment, action, message, tags=""):
    """Run one lifecycle action for the experiment page and answer for htmx or a plain form."""
    url = reverse("webui:experiment-detail", args=[experiment.pk])
    try:
        action()
    except DomainError as error:
        return refuse(request, error, url)
    return changed(request, url, message, tags)
