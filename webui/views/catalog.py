"""The steps and tasks tabs of an application: search, tag filter, create, edit, bulk import."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from experiments_app import actions
from experiments_app.errors import DomainError, ValidationFailed
from experiments_app.models import InferenceStep, Task
from webui.access import can, refuse, require_role, team_member
from webui.forms import StepForm, TaskForm, TaskImportForm, apply_errors, parse_task_file
from webui.views.applications import load_application

PAGE_SIZE = 50
ROW_ERRORS_SHOWN = 200


def save_form(request, form, save, success, next_url):
    """Validate `form` and call `save(cleaned_data)`. Returns a redirect (with `success(result)`
    flashed) or a refusal page (409); None when the form now carries errors to re-render (400)."""
    if not form.is_valid():
        return None
    try:
        result = save(form.cleaned_data)
    except ValidationFailed as error:
        apply_errors(form, error)
        return None
    except DomainError as error:
        return refuse(request, error, request.path)
    messages.success(request, success(result))
    return redirect(next_url)


def tab_template(request, name):
    return f"webui/application_{name}.html#tab" if request.htmx else f"webui/application_{name}.html"


@require_http_methods(["GET", "POST"])
@team_member
@vary_on_headers("HX-Request")
def steps_tab(request, pk):
    application = load_application(request, pk)
    form = StepForm(request.POST or None)
    if request.method == "POST":
        require_role(request, application.team_id)
        done = save_form(
            request,
            form,
            lambda data: actions.create_step(application, data),
            lambda step: f"Step {step.external_id} created.",
            reverse("webui:application-steps", args=[application.pk]),
        )
        if done:
            return done
    query = request.GET.get("q", "").strip()
    steps = InferenceStep.objects.filter(application=application)
    if query:
        steps = steps.filter(Q(external_id__icontains=query) | Q(name__icontains=query) | Q(description__icontains=query))
    context = {
        "application": application,
        "tab": "steps",
        "steps": steps,
        "q": query,
        "form": form,
        "can_edit": can(request, application.team_id),
    }
    template = tab_template(request, "steps") if request.method == "GET" else "webui/application_steps.html"
    return render(request, template, context, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@team_member
def step_edit(request, pk, step_id):
    application = load_application(request, pk)
    step = get_object_or_404(InferenceStep, pk=step_id, application=application)
    initial = {"external_id": step.external_id, "name": step.name, "description": step.description, "config": step.config}
    form = StepForm(request.POST or None, initial=initial)
    locking = list(step.locking_experiments().values_list("name", flat=True)[:3])
    if locking:  # said before the user edits it, not only by a refusal after Save
        form.fields["external_id"].disabled = True
    if request.method == "POST":
        require_role(request, application.team_id)
        done = save_form(
            request,
            form,
            lambda data: actions.update_step(step, data),
            lambda saved: f"Step {saved.external_id} saved.",
            reverse("webui:application-steps", args=[application.pk]),
        )
        if done:
            return done
    context = {
        "application": application,
        "tab": "steps",
        "object": step,
        "form": form,
        "kind": "step",
        "can_edit": can(request, application.team_id),
        "locking": locking,
        "locked_fields": "its external id (the name your code reads in `overrides`)",
    }
    return render(request, "webui/catalog_edit.html", context, status=400 if form.errors else 200)


def tasks_context(request, application, form=None, import_form=None, row_errors=None):
    query, tag = request.GET.get("q", "").strip(), request.GET.get("tag", "").strip()
    tasks = Task.objects.filter(application=application).only("id", "external_id", "name", "tags", "input", "expected").with_locked()
    if query:
        tasks = tasks.filter(Q(external_id__icontains=query) | Q(name__icontains=query))
    if tag:
        tasks = tasks.with_tag(tag)
    return {
        "application": application,
        "tab": "tasks",
        "page": Paginator(tasks.order_by("external_id"), PAGE_SIZE).get_page(request.GET.get("page")),
        "q": query,
        "tag": tag,
        "tags": Task.objects.filter(application=application).tag_names(),
        "form": form or TaskForm(),
        "import_form": import_form or TaskImportForm(),
        "row_errors": row_errors,
        "can_edit": can(request, application.team_id),
    }


@require_http_methods(["GET", "POST"])
@team_member
@vary_on_headers("HX-Request")
def tasks_tab(request, pk):
    application = load_application(request, pk)
    form = TaskForm(request.POST or None)
    if request.method == "POST":
        require_role(request, application.team_id)
        done = save_form(
            request,
            form,
            lambda data: actions.create_task(application, data),
            lambda task: f"Task {task.external_id} created.",
            reverse("webui:application-tasks", args=[application.pk]),
        )
        if done:
            return done
    context = tasks_context(request, application, form=form)
    template = tab_template(request, "tasks") if request.method == "GET" else "webui/application_tasks.html"
    if request.htmx and request.method == "GET" and request.htmx.target == "task-table":
        template = "webui/application_tasks.html#task-table"
    return render(request, template, context, status=400 if form.errors else 200)


@require_POST
@team_member
def tasks_import(request, pk):
    """Bulk import from JSONL or CSV: all rows or none, with each bad row's error listed."""
    application = load_application(request, pk)
    require_role(request, application.team_id)
    import_form = TaskImportForm(request.POST, request.FILES)
    row_errors = None
    if import_form.is_valid():
        upload = import_form.cleaned_data["file"]
        try:
            created = actions.import_tasks(application, parse_task_file(upload.name, upload.read()))
        except ValidationFailed as error:
            row_errors = sorted(error.errors.items(), key=lambda item: row_order(item[0]))[:ROW_ERRORS_SHOWN]
            row_errors_total = len(error.errors)
        else:
            messages.success(request, f"Imported {created} tasks.")
            return redirect("webui:application-tasks", pk=application.pk)
    context = tasks_context(request, application, import_form=import_form, row_errors=row_errors)
    context["row_errors_total"] = row_errors_total if row_errors else 0
    return render(request, "webui/application_tasks.html", context, status=400)


def row_order(key):
    """Sort `tasks[12].input` after `tasks[2].name`: by row number, then field."""
    if key.startswith("tasks[") and "]" in key:
        number = key[6 : key.index("]")]
        if number.isdigit():
            return (int(number), key)
    return (-1, key)


@require_http_methods(["GET", "POST"])
@team_member
def task_edit(request, pk, task_id):
    application = load_application(request, pk)
    task = get_object_or_404(Task, pk=task_id, application=application)
    initial = {
        "external_id": task.external_id,
        "name": task.name,
        "input": task.input,
        "expected": task.expected,
        "tags": ", ".join(task.tags or []),
    }
    form = TaskForm(request.POST or None, initial=initial)
    locking = list(task.locking_experiments().values_list("name", flat=True)[:3])
    if locking:  # said before the user edits it, not only by a refusal after Save
        form.fields["input"].disabled = form.fields["expected"].disabled = True
    if request.method == "POST":
        require_role(request, application.team_id)
        done = save_form(
            request,
            form,
            lambda data: actions.update_task(task, data),
            lambda saved: f"Task {saved.external_id} saved.",
            reverse("webui:application-tasks", args=[application.pk]),
        )
        if done:
            return done
    context = {
        "application": application,
        "tab": "tasks",
        "object": task,
        "form": form,
        "kind": "task",
        "can_edit": can(request, application.team_id),
        "locking": locking,
        "locked_fields": "its input and expected (results must keep their meaning; make a new task instead)",
    }
    return render(request, "webui/catalog_edit.html", context, status=400 if form.errors else 200)
