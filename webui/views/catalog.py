"""The steps and tasks tabs of an application: search, tag filter, create, edit, bulk import."""

import re

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
from webui.deletions import plural
from webui.forms import StepForm, TaskForm, TaskImportForm, apply_errors
from webui.views.applications import load_application

PAGE_SIZE = 50
RESEND_LIMIT = 2_000_000  # characters of an uploaded file the page keeps to import again


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
    """Bulk import of an uploaded or pasted JSONL or CSV: all rows or none, every bad row listed by
    its line; tasks that already exist are refused, skipped or updated as the form says."""
    application = load_application(request, pk)
    require_role(request, application.team_id)
    import_form = TaskImportForm(request.POST, request.FILES)
    problems = None
    if import_form.is_valid():
        rows = None
        try:
            rows = import_form.rows()
            result = actions.import_task_rows(application, rows, on_existing=import_form.cleaned_data["on_existing"])
        except ValidationFailed as error:
            problems = import_problems(application, error, rows)
            if import_form.cleaned_data.get("file") and 0 < len(problems["text"]) <= RESEND_LIMIT:
                # the page cannot send a file again: it sends its text, so a re-import needs no new upload
                import_form = TaskImportForm({**request.POST.dict(), "text": problems["text"], "again": ""})
        else:
            messages.success(request, import_summary(result))
            return redirect("webui:application-tasks", pk=application.pk)
    context = tasks_context(request, application, import_form=import_form, row_errors=problems)
    return render(request, "webui/application_tasks.html", context, status=400)


def import_problems(application, error, rows):
    """Everything wrong with an import, for the page: {"lines": [(line, field, text)] sorted by line,
    "total", "existing": how many rows name a task that already exists, "text": the rows' text to send again}."""
    lines = getattr(rows, "lines", [])
    listed = []
    for key, texts in error.errors.items():
        line, field = line_of(key, lines)
        for text in texts:
            listed.append((line, field, ROW_REF.sub(lambda match: f"line {line_at(lines, int(match.group(1)))}", text)))
    listed.sort(key=lambda item: (item[0] is not None, item[0] or 0, item[1]))
    ids = [row.get("external_id") for row in rows or [] if isinstance(row, dict) and isinstance(row.get("external_id"), str)]
    existing = Task.objects.filter(application=application, external_id__in=ids).count() if ids else 0
    return {"lines": listed, "total": len(listed), "existing": existing, "text": getattr(rows, "text", "")}


ROW_KEY = re.compile(r"^(?:tasks\[(\d+)\]|line (\d+))(?:\.(.+))?$")
ROW_REF = re.compile(r"tasks\[(\d+)\]")


def line_at(lines, index):
    return lines[index] if index < len(lines) else index + 1


def line_of(key, lines):
    """(1-based line, field) an error key names: `tasks[2].input` (row 2) or `line 7.input`; (None, key) otherwise."""
    match = ROW_KEY.match(key)
    if not match:
        return None, "" if key in ("file", "tasks", "__all__") else key
    index, line, field = match.groups()
    return (line_at(lines, int(index)) if index is not None else int(line)), field or ""


def import_summary(result):
    """'Imported 1 task.', 'Imported 3 tasks; updated 2; skipped 5 that already exist; left 1 locked task unchanged.'"""
    parts = [f"Imported {plural(result.created, 'task')}"]
    if result.updated:
        parts.append(f"updated {result.updated:,}")
    if result.skipped:
        parts.append(f"skipped {result.skipped:,} that already exist{'s' if result.skipped == 1 else ''}")
    if result.locked:
        parts.append(f"left {plural(result.locked, 'locked task')} unchanged")
    return "; ".join(parts) + "."


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
