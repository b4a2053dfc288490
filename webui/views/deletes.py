"""Deleting applications, steps, tasks and experiments from the pages: GET asks, saying what
else goes with the object (or why it cannot go now), POST deletes within SPEC's rules."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from experiments_app import actions
from experiments_app.errors import DomainError
from experiments_app.models import InferenceStep, Role, Task
from webui import deletions
from webui.access import refuse, require_role, team_member
from webui.views.applications import load_application
from webui.views.experiments import load_experiment


def confirm_or_delete(request, *, kind, name, summary, delete, back_url, done_url):
    """GET: the confirmation page; POST: `delete()`, then to `done_url` (a refusal flashes and goes back)."""
    if request.method == "POST":
        try:
            delete()
        except DomainError as error:
            return refuse(request, error, back_url)
        messages.success(request, f"Deleted {kind} {name}.")
        return redirect(done_url)
    context = {"kind": kind, "name": name, **summary, "back_url": back_url}
    return render(request, "webui/confirm_delete.html", context, status=409 if summary["refusal"] else 200)


@require_http_methods(["GET", "POST"])
@team_member
def application_delete(request, pk):
    application = load_application(request, pk)
    require_role(request, application.team_id, Role.ADMIN)
    return confirm_or_delete(
        request,
        kind="application",
        name=application.name,
        summary=deletions.application_deletion(application),
        delete=lambda: actions.delete_application(application),
        back_url=reverse("webui:application-detail", args=[application.pk]),
        done_url=reverse("webui:application-list"),
    )


@require_http_methods(["GET", "POST"])
@team_member
def step_delete(request, pk, step_id):
    application = load_application(request, pk)
    step = get_object_or_404(InferenceStep, pk=step_id, application=application)
    require_role(request, application.team_id)
    return confirm_or_delete(
        request,
        kind="step",
        name=step.external_id,
        summary=deletions.step_deletion(step),
        delete=lambda: actions.delete_step(step),
        back_url=reverse("webui:step-edit", args=[application.pk, step.pk]),
        done_url=reverse("webui:application-steps", args=[application.pk]),
    )


@require_http_methods(["GET", "POST"])
@team_member
def task_delete(request, pk, task_id):
    application = load_application(request, pk)
    task = get_object_or_404(Task, pk=task_id, application=application)
    require_role(request, application.team_id)
    return confirm_or_delete(
        request,
        kind="task",
        name=task.external_id,
        summary=deletions.task_deletion(task),
        delete=lambda: actions.delete_task(task),
        back_url=reverse("webui:task-edit", args=[application.pk, task.pk]),
        done_url=reverse("webui:application-tasks", args=[application.pk]),
    )


@require_http_methods(["GET", "POST"])
@team_member
def experiment_delete(request, pk):
    experiment = load_experiment(request, pk)
    require_role(request, experiment.team_id)
    return confirm_or_delete(
        request,
        kind="experiment",
        name=experiment.name,
        summary=deletions.experiment_deletion(experiment),
        delete=lambda: actions.delete_experiment(experiment),
        back_url=reverse("webui:experiment-detail", args=[experiment.pk]),
        done_url=reverse("webui:experiment-list"),
    )
