"""The new-experiment flow after naming it: steps → tasks → baseline config → settings → run baseline."""

from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from experiments_app import actions
from experiments_app.actions.experiments import EDITABLE_WHEN_LOCKED
from experiments_app.errors import DomainError, ValidationFailed
from experiments_app.models import Experiment, InferenceStep, Task
from experiments_app.states import State
from webui.access import can, refuse, require_role, team_member
from webui.forms import BaselineForm, DetailsForm, SettingsForm, StepsForm, TaskFilterForm, TaskPickForm, TasksForm, apply_errors
from webui.views.experiments import load_experiment

PICKER_PAGE_SIZE = 50
NO_FILTERS = {"q": "", "tag": "", "show": "", "page": ""}


def scope_flags(request, experiment):
    locked = not experiment.is_scope_editable()
    return {
        "locked": locked,
        "editable": can(request, experiment.team_id) and not locked,
        "can_run": can(request, experiment.team_id) and experiment.allows(State.RUNNING_BASELINE),
    }


def settings_editable(request, experiment, locked):
    """The settings this user may change now: all before the lock, the domain's
    EDITABLE_WHEN_LOCKED ones after it, none when archived or for a viewer."""
    if not can(request, experiment.team_id) or experiment.is_archived():
        return set()
    fields = set(SettingsForm.base_fields)
    return fields & EDITABLE_WHEN_LOCKED if locked else fields


def matching_tasks(experiment, filters):
    """The application's tasks the picker's filters match, in external id order, each annotated `selected`."""
    chosen = Experiment.tasks.through.objects.filter(experiment_id=experiment.pk, task_id=OuterRef("pk"))
    tasks = Task.objects.filter(application_id=experiment.application_id).annotate(selected=Exists(chosen))
    if filters["q"]:
        tasks = tasks.filter(Q(external_id__icontains=filters["q"]) | Q(name__icontains=filters["q"]))
    if filters["show"] == "selected":
        tasks = tasks.filter(selected=True)
    elif filters["show"] == "unselected":
        tasks = tasks.filter(selected=False)
    if filters["tag"]:
        tasks = tasks.with_tag(filters["tag"])
    return tasks.order_by("external_id", "pk")


def picker_query(filters, **extra):
    return urlencode({**{key: filters[key] for key in ("q", "tag", "show") if filters[key]}, **extra})


def setup_url(experiment, filters):
    query = picker_query(filters, **({"page": filters["page"]} if filters["page"] else {}))
    return reverse("webui:experiment-setup", args=[experiment.pk]) + (f"?{query}" if query else "") + "#task-picker"


def picker_context(request, experiment, filters):
    """What the task picker and the parts a pick changes (status, counts, run button) render from."""
    flags = scope_flags(request, experiment)
    tasks = matching_tasks(experiment, filters).only("id", "external_id", "name", "tags")
    page = Paginator(tasks, PICKER_PAGE_SIZE).get_page(filters["page"])
    if experiment.is_archived():
        lock_reason = "The experiment is archived and read-only."
    elif flags["locked"]:
        lock_reason = "The task selection is locked since the baseline ran."
    elif not flags["editable"]:
        lock_reason = "Only editors and admins change the task selection."
    else:
        lock_reason = ""
    return {
        **flags,
        "experiment": experiment,
        "filters": filters,
        "picker_page": page,
        "picker_query": picker_query(filters),
        "previous_query": picker_query(filters, page=page.previous_page_number()) if page.has_previous() else "",
        "next_query": picker_query(filters, page=page.next_page_number()) if page.has_next() else "",
        "picker_lock_reason": lock_reason,
        "n_selected_tasks": experiment.tasks.count(),
        "n_app_tasks": Task.objects.filter(application_id=experiment.application_id).count(),
    }


def setup_context(request, experiment, bound=None, filters=None):
    """Every section's form; `bound` replaces one section's form (after a refused POST)."""
    bound = bound or {}
    context = picker_context(request, experiment, filters or NO_FILTERS)
    locked, editable = context["locked"], context["editable"]
    n_selected, n_tasks = context["n_selected_tasks"], context["n_app_tasks"]
    app_steps = list(InferenceStep.objects.filter(application_id=experiment.application_id))
    selected_steps = list(experiment.inference_steps.values_list("external_id", flat=True))
    settings = {"repetitions": experiment.repetitions, "max_error_rate": experiment.max_error_rate, "evaluators": experiment.evaluators}
    settings_fields = settings_editable(request, experiment, locked)
    forms = {
        "steps": bound.get("steps") or StepsForm(steps=app_steps, initial={"steps": selected_steps}),
        # A hand-picked selection is neither mode, so then no mode is preselected.
        "tasks": bound.get("tasks") or TasksForm(initial={"mode": "all" if n_selected in (0, n_tasks) else None}),
        "baseline": bound.get("baseline") or BaselineForm(config=experiment.baseline.config, steps=selected_steps),
    }
    details_editable = can(request, experiment.team_id) and not experiment.is_archived()
    forms["details"] = bound.get("details") or DetailsForm(initial={"name": experiment.name, "description": experiment.description})
    for name, form in forms.items():
        if not (details_editable if name == "details" else editable):
            for field in form.fields.values():
                field.disabled = True
    forms["settings"] = bound.get("settings") or SettingsForm(initial=settings, editable=settings_fields)
    return {
        **context,
        "forms": forms,
        "details_editable": details_editable,
        "settings_editable": bool(settings_fields),
        "tags": Task.objects.filter(application_id=experiment.application_id).tag_names(),
        "selected_steps": selected_steps,
    }


@require_GET
@team_member
@vary_on_headers("HX-Request")
def experiment_setup(request, pk):
    experiment = load_experiment(request, pk)
    context = setup_context(request, experiment, filters=TaskFilterForm(request.GET).filters())
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
    return save_section(
        request, experiment, "steps", form, lambda data: actions.set_scope(experiment, steps=data["steps"], by=request.user)
    )


@require_POST
@team_member
def setup_tasks(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    form = TasksForm(request.POST)

    def save(data):
        tasks = Task.objects.filter(application_id=experiment.application_id)
        if data["mode"] == "tag":
            tasks = tasks.with_tag(data["tag"])
        chosen = list(tasks.values_list("pk", flat=True))
        if data["mode"] == "tag" and not chosen:
            raise ValidationFailed({"tag": f"No task is tagged {data['tag']!r}."})
        actions.set_scope(experiment, tasks=chosen, by=request.user)

    return save_section(request, experiment, "tasks", form, save)


@require_GET
@team_member
@vary_on_headers("HX-Request")
def setup_task_picker(request, pk):
    """One page of the task picker (htmx); without htmx, the setup page showing that page."""
    experiment = load_experiment(request, pk)
    filters = TaskFilterForm(request.GET).filters()
    if not request.htmx:
        return redirect(setup_url(experiment, filters))
    return render(request, "webui/experiment_setup.html#task-picker", picker_context(request, experiment, filters))


def pick_tasks(experiment, data, filters, *, by):
    """Add or remove one task, or every task `filters` match (the domain keeps the rest)."""
    if data["add"]:
        actions.change_task_selection(experiment, add=[data["add"]], by=by)
    elif data["remove"]:
        actions.change_task_selection(experiment, remove=[data["remove"]], by=by)
    else:
        matching = list(matching_tasks(experiment, filters).values_list("pk", flat=True))
        key = "add" if data["bulk"] == "add-matching" else "remove"
        actions.change_task_selection(experiment, **{key: matching}, by=by)


def refuse_pick(request, experiment, text, filters):
    """A pick with bad input (400): the flash fragment for htmx, else the setup page with the message."""
    flash = [{"level": "error", "text": text}]
    if request.htmx:
        response = render(request, "webui/flash.html", {"flash": flash}, status=400)
        response["HX-Retarget"] = "#flash"
        response["HX-Reswap"] = "innerHTML"
        return response
    return render(
        request, "webui/experiment_setup.html", {**setup_context(request, experiment, filters=filters), "flash": flash}, status=400
    )


@require_POST
@team_member
def setup_task_pick(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    form = TaskPickForm(request.POST)
    filters = form.filters()
    if form.errors:
        text = " ".join(
            f"{name}: {' '.join(messages)}" if name != "__all__" else " ".join(messages) for name, messages in form.errors.items()
        )
        return refuse_pick(request, experiment, text, filters)
    try:
        pick_tasks(experiment, form.cleaned_data, filters, by=request.user)
    except ValidationFailed as error:
        return refuse_pick(request, experiment, str(error), filters)
    except DomainError as error:
        return refuse(request, error, setup_url(experiment, filters))
    if not request.htmx:
        return redirect(setup_url(experiment, filters))
    experiment = load_experiment(request, pk)
    return render(request, "webui/experiment_setup.html#task-picker-changed", picker_context(request, experiment, filters))


@require_POST
@team_member
def setup_baseline(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    steps = list(experiment.inference_steps.values_list("external_id", flat=True))
    form = BaselineForm(request.POST, config=experiment.baseline.config, steps=steps)
    return save_section(
        request, experiment, "baseline", form, lambda data: actions.set_baseline_config(experiment, form.baseline_config(), by=request.user)
    )


@require_POST
@team_member
def setup_settings(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    locked = scope_flags(request, experiment)["locked"]
    initial = {"repetitions": experiment.repetitions, "max_error_rate": experiment.max_error_rate, "evaluators": experiment.evaluators}
    # After the lock only the fields the domain leaves editable are read from the POST.
    form = SettingsForm(request.POST, initial=initial, editable=settings_editable(request, experiment, locked))
    return save_section(
        request, experiment, "settings", form, lambda data: actions.update_experiment(experiment, by=request.user, **form.changes())
    )


@require_POST
@team_member
def setup_details(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    form = DetailsForm(request.POST)
    return save_section(request, experiment, "details", form, lambda data: actions.update_experiment(experiment, by=request.user, **data))
