"""Changes made from the experiment page: run, cancel, reopen, complete, archive, branch, delete."""

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from experiments_app import actions, runs
from experiments_app.errors import DomainError, ValidationFailed
from experiments_app.models import Run, RunStatus, Variant
from experiments_app.results import experiment_results
from webui.access import refuse, require_role, team_ids, team_member
from webui.forms import BranchForm, CompleteForm, apply_errors
from webui.templatetags.webui import pct, pp
from webui.views.experiments import RUN_STARTED, is_uuid, load_experiment, perform


def load_variant(request, pk):
    return get_object_or_404(
        Variant.objects.select_related("experiment__application", "inference_step"), pk=pk, experiment__team_id__in=team_ids(request)
    )


@require_POST
@team_member
def run_baseline(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    return perform(request, experiment, lambda: runs.start_baseline_run(experiment, by=request.user), "Baseline run started.", RUN_STARTED)


@require_POST
@team_member
def run_variant(request, pk):
    """Start the variant's run; with `stop_when_decided` ticked it stops sending tests once its
    always-valid verdict is settled (SPEC §3)."""
    variant = load_variant(request, pk)
    require_role(request, variant.experiment.team_id)
    stop = request.POST.get("stop_when_decided") in ("on", "true", "1")
    return perform(
        request,
        variant.experiment,
        lambda: runs.start_variant_run(variant, by=request.user, stop_when_decided=stop),
        f"Run of “{variant.name}” started.",
        RUN_STARTED,
    )


@require_POST
@team_member
def add_control(request, pk):
    """Add the control variant (SPEC §3); a second one, or one before the baseline has results, is refused (409)."""
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    name = request.POST.get("name", "")
    return perform(
        request,
        experiment,
        lambda: actions.create_control_variant(experiment, name=name, by=request.user),
        "Control variant added: run it to measure the noise floor.",
    )


@require_POST
@team_member
def cancel_run(request, pk):
    run = get_object_or_404(Run.objects.select_related("experiment"), pk=pk, experiment__team_id__in=team_ids(request))
    require_role(request, run.experiment.team_id)
    return perform(request, run.experiment, lambda: runs.cancel_run(run, by=request.user), "Run cancelled.")


@require_POST
@team_member
def reopen(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    return perform(
        request, experiment, lambda: actions.reopen_experiment(experiment, by=request.user), "Reopened: the scope can be edited again."
    )


@require_POST
@team_member
def archive(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    return perform(request, experiment, lambda: actions.archive_experiment(experiment, by=request.user), "Archived.")


@require_http_methods(["GET", "POST"])
@team_member
@vary_on_headers("HX-Request")
def complete(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    candidates = list(
        Variant.objects.filter(experiment=experiment, runs__status=RunStatus.SUCCEEDED, runs__dry_run=False)
        .distinct()
        .order_by("created_at")
    )
    form = CompleteForm(request.POST or None, variants=candidates, labels=winner_labels(experiment))
    if request.method == "POST" and form.is_valid():
        winner = next((v for v in candidates if str(v.pk) == form.cleaned_data["winner"]), None)
        return perform(request, experiment, lambda: actions.complete_experiment(experiment, winner=winner, by=request.user), "Completed.")
    context = {"experiment": experiment, "form": form}
    template = "webui/experiment_complete.html#complete-form" if request.htmx else "webui/experiment_complete.html"
    return render(request, template, context, status=400 if form.errors else 200)


def winner_labels(experiment):
    """{variant id: "name — 83% pass rate, +17.0 pt vs baseline"}: what to choose a winner by."""
    results = experiment_results(experiment)
    labels = {}
    for row in [results["baseline"], *results["variants"]]:
        if row and row["pass_rate"] is not None:
            label = f"{row['name']} — {pct(row['pass_rate'])} pass rate"
            if not row["is_baseline"] and row["delta_pp"] is not None:
                label += f", {pp(row['delta_pp'])} vs baseline"
                if row["significant"]:
                    label += " (significant)"
            labels[row["variant"]] = label
    return labels


def branch_context(experiment, parent, form):
    step, parameter = form["inference_step"].value(), form.parameter
    try:
        effective = actions.variant_effective_config(parent)
    except DomainError:
        effective = {}
    return {
        "experiment": experiment,
        "parent": parent,
        "form": form,
        "inherited": effective.get(step, {}).get(parameter) if step else None,
        "effective": effective,
    }


@require_http_methods(["GET", "POST"])
@team_member
@vary_on_headers("HX-Request")
def branch(request, pk):
    """The branch form: GET renders it (again when step/parameter change), POST creates the variant."""
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    data = request.POST if request.method == "POST" else request.GET
    parent_id = data.get("parent") or experiment.baseline.pk
    if not is_uuid(parent_id):
        raise Http404("No such variant.")
    parent = get_object_or_404(Variant, pk=parent_id, experiment=experiment)
    steps = list(experiment.inference_steps.values_list("external_id", flat=True))
    step = data.get("inference_step") or (steps[0] if steps else "")
    parameter = data.get("parameter") or "temperature"
    if request.method == "POST":
        form = BranchForm(request.POST, steps=steps, parameter=parameter)
        if form.is_valid():
            try:
                actions.create_variant(
                    experiment,
                    parent=parent,
                    by=request.user,
                    **{k: form.cleaned_data[k] for k in ("inference_step", "parameter", "value", "name")},
                )
            except ValidationFailed as error:
                apply_errors(form, error)
            except DomainError as error:
                return refuse(request, error, reverse("webui:experiment-detail", args=[experiment.pk]))
            else:
                return created(request, experiment)
    else:
        form = BranchForm(steps=steps, parameter=parameter, initial={"parent": parent.pk, "inference_step": step, "parameter": parameter})
    context = branch_context(experiment, parent, form)
    if request.method == "GET" and not data.get("keep_value"):
        form.fields["value"].initial = context["inherited"]
    template = "webui/variant_new.html#branch-form" if request.htmx else "webui/variant_new.html"
    return render(request, template, context, status=400 if form.errors else 200)


def created(request, experiment):
    if request.htmx:
        response = HttpResponse("")
        response["HX-Trigger"] = "experiment-changed"
        return response
    return redirect("webui:experiment-detail", pk=experiment.pk)


@require_POST
@team_member
def delete_variant(request, pk):
    variant = load_variant(request, pk)
    require_role(request, variant.experiment.team_id)
    return perform(request, variant.experiment, lambda: actions.delete_variant(variant), "Variant deleted.")
