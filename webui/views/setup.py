"""The new-experiment flow after naming it: steps → tasks → baseline config → settings → run baseline."""

from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.vary import vary_on_headers
from django.views.decorators.http import require_GET, require_POST

from experiments_app import actions, states
from experiments_app.errors import DomainError, ValidationFailed
from experiments_app.models import InferenceStep, Task
from experiments_app.states import State
from webui.access import can, refuse, require_role, team_member
from webui.forms import BaselineForm, DetailsForm, SettingsForm, StepsForm, TasksForm, apply_errors
from webui.views.experiments import load_experiment

PICK_LIMIT = 1000
SECTIONS = ("details", "steps", "tasks", "baseline", "settings")


def setup_context(request, experiment, bound=None):
    """Every section's form; `bound` replaces one section's form (after a refused POST)."""
    bound = bound or {}
    app_steps = list(InferenceStep.objects.filter(application_id=experiment.application_id))
    task_rows = list(Task.objects.filter(application_id=experiment.application_id).values_list("pk", "external_id", "tags"))
    selected_steps = list(experiment.inference_steps.values_list("external_id", flat=True))
    selected_tasks = {str(pk) for pk in experiment.tasks.values_list("pk", flat=True)}
    baseline = experiment.baseline
    locked = experiment.locked_at is not None or experiment.status not in (State.DRAFT, State.BASELINE_PENDING)
    editable = can(request, experiment.team_id) and not locked
    pickable = [(pk, ext) for pk, ext, _ in task_rows[:PICK_LIMIT]]
    forms = {
        "steps": bound.get("steps") or StepsForm(steps=app_steps, initial={"steps": selected_steps}),
        "tasks": bound.get("tasks") or TasksForm(choices=pickable, initial={"mode": "pick" if selected_tasks and len(selected_tasks) < len(task_rows) else "all", "tasks": list(selected_tasks)}),
        "baseline": bound.get("baseline") or BaselineForm(config=baseline.config, steps=selected_steps),
        "settings": bound.get("settings")
        or SettingsForm(initial={"repetitions": experiment.repetitions, "max_error_rate": experiment.max_error_rate, "evaluators": experiment.evaluators}),
    }
    details_editable = can(request, experiment.team_id) and experiment.status != State.ARCHIVED
    forms["details"] = bound.get("details") or DetailsForm(initial={"name": experiment.name, "description": experiment.description})
    for name, form in forms.items():
        if not (details_editable if name == "details" else editable):
            for field in form.fields.values():
                field.disabled = True
    return {
        "experiment": experiment,
        "forms": forms,
        "locked": locked,
        "editable": editable,
        "details_editable": details_editable,
        "n_app_tasks": len(task_rows),
        "n_selected_tasks": len(selected_tasks),
        "pick_truncated": len(task_rows) > PICK_LIMIT,
        "tags": sorted({tag for _, _, tags in task_rows for tag in (tags or [])}),
        "selected_steps": selected_steps,
        "can_run": can(request, experiment.team_id) and states.is_allowed(experiment.status, State.RUNNING_BASELINE),
    }


@require_GET
@team_member
@vary_on_headers("HX-Request")
def experiment_setup(request, pk):
    experiment = load_experiment(request, pk)
    context = setup_context(request, experiment)
    template = "webui/experiment_setup.html#setup" if request.htmx else "webui/experiment_setup.html"
    return render(request, template, context)


def answer(request, experiment, bound=None, status=200):
    experiment.refresh_from_db()
    if request.htmx or bound:
        template = "webui/experiment_setup.html#setup" if request.htmx else "webui/experiment_setup.html"
        return render(request, template, setup_context(request, experiment, bound), status=status)
    return redirect(reverse("webui:experiment-setup", args=[experiment.pk]))


def save_section(request, experiment, name, form, save):
    """Validate `form`, call `save(cleaned_data)`; field errors re-render (400), refusals flash (409)."""
    if form.is_valid():
        try:
            save(form.cleaned_data)
        except ValidationFailed as error:
            apply_errors(form, error)
        except DomainError as error:
            return refuse(request, error, reverse("webui:experiment-setup", args=[experiment.pk]))
        else:
            return answer(request, experiment)
    return answer(request, experiment, {name: form}, status=400)


@require_POST
@team_member
def setup_steps(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    form = StepsForm(request.POST, steps=InferenceStep.objects.filter(application_id=experiment.application_id))
    return save_section(request, experiment, "steps", form, lambda data: actions.set_scope(experiment, steps=data["steps"], by=request.user))


@require_POST
@team_member
def setup_tasks(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    rows = list(Task.objects.filter(application_id=experiment.application_id).values_list("pk", "external_id", "tags"))
    form = TasksForm(request.POST, choices=[(pk_, ext) for pk_, ext, _ in rows])

    def save(data):
        if data["mode"] == "all":
            chosen = [pk_ for pk_, _, _ in rows]
        elif data["mode"] == "tag":
            chosen = [pk_ for pk_, _, tags in rows if data["tag"] in (tags or [])]
            if not chosen:
                raise ValidationFailed({"tag": f"No task is tagged {data['tag']!r}."})
        else:
            chosen = data["tasks"]
        actions.set_scope(experiment, tasks=chosen, by=request.user)

    return save_section(request, experiment, "tasks", form, save)


@require_POST
@team_member
def setup_baseline(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    steps = list(experiment.inference_steps.values_list("external_id", flat=True))
    form = BaselineForm(request.POST, config=experiment.baseline.config, steps=steps)
    return save_section(request, experiment, "baseline", form, lambda data: actions.set_baseline_config(experiment, form.baseline_config(), by=request.user))


@require_POST
@team_member
def setup_settings(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    form = SettingsForm(request.POST)
    return save_section(request, experiment, "settings", form, lambda data: actions.update_experiment(experiment, by=request.user, **data))


@require_POST
@team_member
def setup_details(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    form = DetailsForm(request.POST)
    return save_section(request, experiment, "details", form, lambda data: actions.update_experiment(experiment, by=request.user, **data))
