"""Applications under test: list, create, webhook settings, secret, test delivery, recent failures."""

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from experiments_app import actions
from experiments_app.errors import DomainError, ValidationFailed
from experiments_app.models import (
    ACTIVE_RUN_STATUSES,
    RUN_LARGE_FIELDS,
    Application,
    DeliveryAttempt,
    Role,
    Run,
    RunStatus,
    Test,
    TestStatus,
)
from experiments_app.runs import health, pull
from webui import connect
from webui.access import can, require_role, team_ids, team_member
from webui.forms import ApplicationForm, apply_errors

SECRET_SESSION_KEY = "webui_shown_secret"
FAILURES_SHOWN = 20


def load_application(request, pk):
    return get_object_or_404(Application.objects.select_related("team"), pk=pk, team_id__in=team_ids(request))


def remember_secret(request, application):
    """Keep the secret for exactly one page view: it is shown once, then only masked."""
    request.session[SECRET_SESSION_KEY] = {"application": str(application.pk), "secret": application.webhook_secret}


def pop_secret(request, application):
    shown = request.session.get(SECRET_SESSION_KEY)
    if shown and shown.get("application") == str(application.pk):
        del request.session[SECRET_SESSION_KEY]
        return shown["secret"]
    return None


@require_http_methods(["GET", "POST"])
@team_member
def application_list(request):
    form = ApplicationForm(request.POST or None)
    if request.method == "POST":
        require_role(request, request.team.pk, Role.ADMIN)
        if form.is_valid():
            try:
                application = actions.create_application(request.team, form.cleaned_data)
            except ValidationFailed as error:
                apply_errors(form, error)
            else:
                remember_secret(request, application)
                return redirect("webui:application-detail", pk=application.pk)
    applications = Application.objects.filter(team=request.team).annotate(
        n_steps=Count("inference_steps", distinct=True), n_tasks=Count("tasks", distinct=True)
    )
    context = {"applications": applications, "form": form, "can_create": can(request, request.team.pk, Role.ADMIN)}
    return render(request, "webui/application_list.html", context, status=400 if form.errors else 200)


def recent_failures(application):
    """The application's latest delivery failures, newest first: attempts that got no 2xx, and
    result timeouts (tests it accepted with a 202 whose result never came). Returns
    {"rows": [{when, test, attempt, status_code, duration_ms, error, timeout}], "attempts": n,
    "timeouts": n, "last_run": its latest ended run when that one failed, else None}."""
    attempts = (
        DeliveryAttempt.objects.filter(test__run__experiment__application=application)
        .filter(Q(status_code__isnull=True) | Q(status_code__lt=200) | Q(status_code__gte=300))
        .exclude(pulled=True, error="")  # a puller's lease without an error is not a failure
    )
    timeouts = (
        Test.objects.filter(run__experiment__application=application, status=TestStatus.ERRORED, accepted_at__isnull=False)
        .filter(has_output=False)
        .exclude(run__status=RunStatus.CANCELLED)
    )
    rows = [
        {
            "when": a.started_at,
            "test": a.test,
            "attempt": a.number,
            "status_code": a.status_code,
            "duration_ms": a.duration_ms,
            "error": a.error,
        }
        for a in attempts.select_related("test").order_by("-started_at")[:FAILURES_SHOWN]
    ]
    rows += [
        {
            "when": t.completed_at,
            "test": t,
            "attempt": t.attempts,
            "status_code": 202,
            "duration_ms": None,
            "error": t.error,
            "timeout": True,
        }
        for t in timeouts.only("id", "run_id", "task_external_id", "attempts", "completed_at", "error").order_by("-completed_at")[
            :FAILURES_SHOWN
        ]
    ]
    rows.sort(key=lambda row: row["when"], reverse=True)
    last_run = (
        Run.objects.real()
        .filter(experiment__application=application)
        .exclude(status__in=ACTIVE_RUN_STATUSES)
        .select_related("variant", "experiment")
        .defer(*RUN_LARGE_FIELDS)
        .order_by("-completed_at")
        .first()
    )
    return {
        "rows": rows[:FAILURES_SHOWN],
        "attempts": attempts.count(),
        "timeouts": timeouts.count(),
        "last_run": last_run if last_run and last_run.status == RunStatus.FAILED else None,
    }


def detail_context(request, application, form=None):
    """Webhook settings are the admin's (as in the API); editors may send a test delivery."""
    can_admin = can(request, application.team_id, Role.ADMIN)
    form = form or ApplicationForm(initial={field: getattr(application, field) for field in ApplicationForm.base_fields})
    if not can_admin:
        for field in form.fields.values():
            field.disabled = True
    return {
        "application": application,
        "tab": "settings",
        "form": form,
        "secret": pop_secret(request, application),
        "failures": recent_failures(application),
        "pull": pull.pull_status(application.pk) if application.is_pull() else None,
        "dashboard_url": settings.PUBLIC_URL,
        "can_edit": can_admin,
        "can_ping": can(request, application.team_id),
        "can_admin": can_admin,
        "handler": connect.handler_snippet(application, application.inference_steps.values_list("external_id", flat=True)[:1]),
        "secret_variable": connect.SECRET_VARIABLE,
        "doc_url": connect.DOC_URL,
    }


@require_http_methods(["GET", "POST"])
@team_member
@vary_on_headers("HX-Request")
def application_detail(request, pk):
    application = load_application(request, pk)
    form = None
    if request.method == "POST":
        require_role(request, application.team_id, Role.ADMIN)
        form = ApplicationForm(request.POST)
        if form.is_valid():
            try:
                actions.update_application(application, form.cleaned_data)
            except ValidationFailed as error:
                apply_errors(form, error)
            except DomainError as error:  # switching delivery during a run
                form.add_error("delivery", error.detail)
            else:
                messages.success(request, "Webhook settings saved.")
                return redirect("webui:application-detail", pk=application.pk)
    context = detail_context(request, application, form)
    template = "webui/application_detail.html#tab" if request.htmx and request.method == "GET" else "webui/application_detail.html"
    return render(request, template, context, status=400 if form is not None and form.errors else 200)


@require_POST
@team_member
def rotate_secret(request, pk):
    application = load_application(request, pk)
    require_role(request, application.team_id, Role.ADMIN)
    secret = application.rotate_secret()
    if request.htmx:
        # The rotation disconnects the application: the connect panel's status is swapped too (out of band).
        context = {
            "application": application,
            "secret": secret,
            "can_admin": True,
            "can_ping": True,
            "secret_variable": connect.SECRET_VARIABLE,
            "oob": True,
        }
        fragments = [render_to_string(f"webui/application_detail.html#{name}", context, request) for name in ("secret", "connection")]
        return HttpResponse("".join(fragments))
    remember_secret(request, application)
    messages.success(
        request, "A new secret was generated. The old one keeps working for 24 hours: deliveries carry both signatures meanwhile."
    )
    return redirect("webui:application-detail", pk=application.pk)


@require_POST
@team_member
def ping(request, pk):
    application = load_application(request, pk)
    require_role(request, application.team_id)
    result = actions.ping_application(application)
    if request.htmx:
        context = {"application": application, "ping": result, "can_ping": True}
        return render(request, "webui/application_detail.html#connection", context)
    level = messages.SUCCESS if result["ok"] else messages.ERROR
    outcome = f"HTTP {result['status_code']}" if result["status_code"] else (result["error"] or "no answer")
    messages.add_message(
        request,
        level,
        f"Test delivery: {outcome} in {result['duration_ms']:.0f} ms. {result['error'] if result['status_code'] else ''}".strip(),
    )
    return redirect("webui:application-detail", pk=application.pk)


@require_POST
@team_member
def enable(request, pk):
    """Re-enable an application that was disabled after failing every delivery (one click)."""
    application = load_application(request, pk)
    require_role(request, application.team_id, Role.ADMIN)
    health.enable_application(application)
    messages.success(request, f"{application.name} is enabled again.")
    return redirect("webui:application-detail", pk=application.pk)
