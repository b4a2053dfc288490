"""Dry runs from the experiment page: "Try on k tasks", and the list of dry runs beside the results."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django.views.decorators.vary import vary_on_headers

from experiments_app import runs
from experiments_app.errors import DomainError
from experiments_app.models import ACTIVE_RUN_STATUSES, RUN_LARGE_FIELDS, Experiment, Run
from webui.access import can, refuse, require_role, team_ids, team_member
from webui.forms import DryRunForm

DRY_RUNS_SHOWN = 10


def dry_runs_context(request, experiment, form=None):
    """The dry-runs panel: the latest dry runs and, for editors of a live experiment, the form."""
    dry_runs = list(
        Run.objects.filter(experiment=experiment, dry_run=True)
        .select_related("variant")
        .defer(*RUN_LARGE_FIELDS)
        .order_by("-created_at")[:DRY_RUNS_SHOWN]
    )
    variants = list(experiment.variants.order_by("created_at", "pk"))
    can_try = can(request, experiment.team_id) and not experiment.is_archived()
    return {
        "experiment": experiment,
        "dry_runs": dry_runs,
        "dry_runs_active": any(run.status in ACTIVE_RUN_STATUSES for run in dry_runs),
        "dry_run_form": (form or DryRunForm(variants=variants)) if can_try else None,
    }


@require_http_methods(["GET", "POST"])
@team_member
@vary_on_headers("HX-Request")
def experiment_dry_runs(request, pk):
    """GET: the dry-runs fragment (polled while one is active). POST: try a variant on k tasks."""
    experiment = get_object_or_404(Experiment, pk=pk, team_id__in=team_ids(request))
    if request.method == "GET":
        return render(request, "webui/experiment_detail.html#dry-runs", dry_runs_context(request, experiment))
    require_role(request, experiment.team_id)
    form = DryRunForm(request.POST, variants=list(experiment.variants.all()))
    url = reverse("webui:experiment-detail", args=[experiment.pk])
    if not form.is_valid():
        return render(request, "webui/experiment_detail.html#dry-runs", dry_runs_context(request, experiment, form), status=400)
    try:
        run = runs.start_dry_run(form.chosen_variant(), tasks=form.cleaned_data["tasks"], by=request.user)
    except DomainError as error:
        return refuse(request, error, url)
    if request.htmx:
        return render(request, "webui/experiment_detail.html#dry-runs", dry_runs_context(request, experiment))
    messages.success(request, f"Dry run of “{run.variant.name}” on {run.total} task{'s' if run.total != 1 else ''} started.")
    return redirect("webui:run-detail", pk=run.pk)
