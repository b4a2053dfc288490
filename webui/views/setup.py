"""The setup page after naming an experiment: details, steps, tasks, baseline config, settings, run.

One save model: the sections' fields belong to one form (`SETUP_FORM`) with one Save button that
saves every changed section at once, all or nothing, and shows when it did; "Run the baseline"
saves first. Only the task picker changes the selection at once, one pick at a time.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from experiments_app import actions, runs
from experiments_app.actions.experiments import EDITABLE_WHEN_LOCKED
from experiments_app.errors import DomainError, ValidationFailed
from experiments_app.models import Experiment, InferenceStep, Task, Variant
from experiments_app.states import InvalidTransition, State
from webui.access import can, refuse, require_role, team_member
from webui.forms import (
    BaselineForm,
    DetailsForm,
    SettingsForm,
    StepsForm,
    TaskFilterForm,
    TaskPickForm,
    apply_errors,
    numbered_setup_steps,
)
from webui.views.experiments import RUN_STARTED, load_experiment
from webui.views.planner import planner_context

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
        "n_selected_tasks": experiment.task_count(),
        "n_app_tasks": Task.objects.filter(application_id=experiment.application_id).count(),
        "setup_form": SETUP_FORM,
        "step_titles": numbered_setup_steps(),
    }


SETUP_FORM = "setup-form"
# The order one save applies the sections in: the steps before the baseline config they shape.
SECTIONS = ("details", "settings", "steps", "baseline")


def section_forms(request, experiment, data=None):
    """The editable sections' forms (bound to `data` when given). Fields this user may not
    change now are disabled, and every field belongs to the page's one save form."""
    locked = not experiment.is_scope_editable()
    scope_editable = can(request, experiment.team_id) and not locked
    details_editable = can(request, experiment.team_id) and not experiment.is_archived()
    app_steps = list(InferenceStep.objects.filter(application_id=experiment.application_id))
    selected_steps = list(experiment.inference_steps.values_list("external_id", flat=True))
    baseline = Variant.objects.get(experiment=experiment, parent__isnull=True)
    settings = {
        "repetitions": experiment.repetitions,
        "max_error_rate": experiment.max_error_rate,
        "evaluators": experiment.evaluators,
        "alpha": experiment.alpha,
        "guardrails": experiment.guardrails or [],
    }
    forms = {
        "details": DetailsForm(data, initial={"name": experiment.name, "description": experiment.description}),
        "settings": SettingsForm(data, initial=settings, editable=settings_editable(request, experiment, locked)),
        "steps": StepsForm(data, steps=app_steps, initial={"steps": selected_steps}),
        "baseline": BaselineForm(data, config=baseline.config, steps=selected_steps),
    }
    for name, form in forms.items():
        editable = details_editable if name == "details" else scope_editable if name in ("steps", "baseline") else True
        for field in form.fields.values():
            field.disabled = field.disabled or not editable
            field.widget.attrs["form"] = SETUP_FORM
    return forms


def setup_context(request, experiment, forms=None, filters=None, saved=None):
    """The whole page; `forms` replaces the sections' forms (bound, after a refused save)."""
    context = picker_context(request, experiment, filters or NO_FILTERS)
    forms = forms or section_forms(request, experiment)
    return {
        **context,
        **planner_context(experiment),
        "can_add_control": can(request, experiment.team_id)
        and experiment.can_branch()
        and not experiment.variants.filter(is_control=True).exists(),
        "forms": forms,
        "has_errors": any(form.is_bound and form.errors for form in forms.values()),
        "can_save": any(not field.disabled for form in forms.values() for field in form.fields.values()),
        "details_editable": can(request, experiment.team_id) and not experiment.is_archived(),
        "settings_editable": bool(settings_editable(request, experiment, context["locked"])),
        "tags": Task.objects.filter(application_id=experiment.application_id).tag_names(),
        "selected_steps": forms["baseline"].steps,
        "saved": saved,
    }


def scope_warnings(experiment):
    """What still keeps the baseline from running, said after each save."""
    warnings = []
    if not experiment.inference_steps.exists():
        warnings.append("No inference step is selected: the baseline needs at least one.")
    if not experiment.tasks.exists():
        warnings.append("No task is selected: the baseline needs at least one.")
    return warnings


@require_GET
@team_member
@vary_on_headers("HX-Request")
def experiment_setup(request, pk):
    experiment = load_experiment(request, pk)
    context = setup_context(request, experiment, filters=TaskFilterForm(request.GET).filters())
    template = "webui/experiment_setup.html#setup" if request.htmx else "webui/experiment_setup.html"
    return render(request, template, context)


def baseline_config_after(experiment, form):
    """The baseline config to save from `form`: its typed values for the steps still in scope
    (the steps may have changed in the same save), the current config for the others."""
    scope = set(experiment.inference_steps.values_list("external_id", flat=True))
    current = Variant.objects.get(experiment=experiment, parent__isnull=True).config or {}
    typed = {step: params for step, params in form.baseline_config().items() if step in scope}
    return {**{step: params for step, params in current.items() if step in scope}, **typed}


def save_sections(experiment, forms, names, *, by):
    """Save the sections `names`, in SECTIONS order, all or none (one transaction). A section
    the domain refuses gets the errors on its form (ValidationFailed) and nothing is saved."""
    savers = {
        "details": lambda form: actions.update_experiment(experiment, by=by, **form.cleaned_data),
        "settings": lambda form: actions.update_experiment(experiment, by=by, **form.changes()),
        "steps": lambda form: actions.set_scope(experiment, steps=form.cleaned_data["steps"], by=by),
        "baseline": lambda form: actions.set_baseline_config(experiment, baseline_config_after(experiment, form), by=by),
    }
    with transaction.atomic():
        for name in SECTIONS:
            if name in names:
                try:
                    savers[name](forms[name])
                except ValidationFailed as error:
                    apply_errors(forms[name], error)
                    raise


def save_setup(request, experiment, names=None, *, then_run=False):
    """Validate every section, save the changed ones (or `names`), then optionally run the
    baseline. Field errors re-render the page with the user's input kept (400); refusals flash (409)."""
    forms = section_forms(request, experiment, request.POST)
    changed = [name for name in SECTIONS if forms[name].has_changed()] if names is None else names
    # every section is checked on a full save (its input is kept either way); one section alone otherwise
    valid = [form.is_valid() for name, form in forms.items() if names is None or name in names]
    setup_url = reverse("webui:experiment-setup", args=[experiment.pk])
    if all(valid):
        try:
            save_sections(experiment, forms, changed, by=request.user)
        except ValidationFailed:
            pass
        except DomainError as error:
            return refuse(request, error, setup_url)
        else:
            experiment = load_experiment(request, experiment.pk)
            if then_run:
                return run_after_save(request, experiment, changed)
            return saved(request, experiment, changed)
    if names is not None:
        # only the posted section keeps its input; the others show what is saved
        fresh = section_forms(request, experiment)
        forms = {name: forms[name] if name in names else fresh[name] for name in forms}
    return render_setup(request, experiment, setup_context(request, experiment, forms=forms), status=400)


def saved_note(experiment, changed, problem=None):
    titles = numbered_setup_steps()
    return {
        "at": timezone.now(),
        "sections": [titles[name].split(" · ", 1)[1].lower() for name in SECTIONS if name in changed],
        "warnings": ([problem] if problem else []) + scope_warnings(experiment),
    }


def saved(request, experiment, changed, problem=None):
    """The page after a save, saying what was saved and what still keeps the baseline from running."""
    note = saved_note(experiment, changed, problem)
    if request.htmx:
        return render_setup(request, experiment, setup_context(request, experiment, saved=note))
    text = "Saved: " + ", ".join(note["sections"]) + "." if note["sections"] else "Nothing changed."
    messages.success(request, " ".join([text, *note["warnings"]]))
    return redirect("webui:experiment-setup", pk=experiment.pk)


def run_after_save(request, experiment, changed):
    """Run the baseline on what was just saved; if it cannot run, the page says why."""
    try:
        runs.start_baseline_run(experiment, by=request.user)
    except ValidationFailed as error:
        problem = " ".join(message for messages_ in error.errors.values() for message in messages_)
        return saved(request, experiment, changed, problem=f"The baseline did not run: {problem}")
    except InvalidTransition as error:
        if error.current != State.DRAFT:
            return refuse(request, error, reverse("webui:experiment-setup", args=[experiment.pk]))
        return saved(request, experiment, changed, problem="The baseline did not run: select at least one step and one task first.")
    except DomainError as error:
        return refuse(request, error, reverse("webui:experiment-setup", args=[experiment.pk]))
    url = reverse("webui:experiment-detail", args=[experiment.pk])
    messages.success(request, "Baseline run started.", extra_tags=RUN_STARTED)
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def render_setup(request, experiment, context, status=200):
    template = "webui/experiment_setup.html#setup" if request.htmx else "webui/experiment_setup.html"
    return render(request, template, context, status=status)


@require_POST
@team_member
def setup_save(request, pk):
    """The page's one Save (and "Run the baseline", which saves first)."""
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    return save_setup(request, experiment, then_run=request.POST.get("then") == "run")


def section_view(name):
    """A POST endpoint saving one section alone (for scripts and forms without the page)."""

    @require_POST
    @team_member
    def view(request, pk):
        experiment = load_experiment(request, pk)
        require_role(request, experiment.team_id)
        return save_setup(request, experiment, [name])

    view.__name__ = f"setup_{name}"
    return view


setup_details = section_view("details")
setup_steps = section_view("steps")
setup_baseline = section_view("baseline")
setup_settings = section_view("settings")


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
        if data["bulk"] == "only-matching":
            actions.set_scope(experiment, tasks=matching, by=by)
        else:
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


@require_GET
@team_member
@vary_on_headers("HX-Request")
def setup_planner(request, pk):
    """The planner's answer: the fragment for htmx, the setup page showing it otherwise; 400 with the fields named on bad input."""
    experiment = load_experiment(request, pk)
    context = planner_context(experiment, request.GET)
    status = 400 if context["planner"].errors else 200
    if request.htmx:
        return render(request, "webui/experiment_setup.html#planner", context, status=status)
    return render(request, "webui/experiment_setup.html", {**setup_context(request, experiment), **context}, status=status)
