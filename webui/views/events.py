"""The team's event endpoints: admins register, rotate, disable and delete them; every member
sees each delivery with its attempts, and admins redeliver by hand."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from experiments_app.errors import ValidationFailed
from experiments_app.events import endpoints
from experiments_app.models import Application, EventAttempt, EventDelivery, EventEndpoint, Role
from webui.access import can, require_role, team_ids, team_member
from webui.forms import EventEndpointForm, apply_errors

# A new or rotated secret waits here for the one page view that shows it.
SECRET_SESSION_KEY = "webui_event_secret"
DELIVERIES_PER_PAGE = 25


def load_endpoint(request, pk):
    return get_object_or_404(EventEndpoint.objects.select_related("team", "application"), pk=pk, team_id__in=team_ids(request))


def park_secret(request, endpoint):
    request.session[SECRET_SESSION_KEY] = {"endpoint": str(endpoint.pk), "secret": endpoint.secret}


def pop_secret(request, endpoint):
    parked = request.session.get(SECRET_SESSION_KEY)
    if isinstance(parked, dict) and parked.get("endpoint") == str(endpoint.pk):
        del request.session[SECRET_SESSION_KEY]
        return parked["secret"]
    return None


@require_http_methods(["GET", "POST"])
@team_member
def endpoint_list(request):
    applications = Application.objects.filter(team=request.team).order_by("name")
    form = EventEndpointForm(request.POST or None, applications=applications)
    if request.method == "POST":
        require_role(request, request.team.pk, Role.ADMIN)
        if form.is_valid():
            try:
                endpoint = endpoints.create_endpoint(request.team, form.cleaned_for_action())
            except ValidationFailed as error:
                apply_errors(form, error)
            else:
                park_secret(request, endpoint)
                return redirect("webui:event-endpoint-detail", pk=endpoint.pk)
    context = {
        "endpoints": EventEndpoint.objects.filter(team=request.team).select_related("application").order_by("created_at"),
        "form": form,
        "can_admin": can(request, request.team.pk, Role.ADMIN),
    }
    return render(request, "webui/event_endpoints.html", context, status=400 if form.errors else 200)


@require_GET
@team_member
def endpoint_detail(request, pk):
    endpoint = load_endpoint(request, pk)
    deliveries = (
        EventDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related(Prefetch("attempt_log", queryset=EventAttempt.objects.order_by("number")))
        .order_by("-created_at", "pk")
    )
    secret = pop_secret(request, endpoint)
    context = {
        "endpoint": endpoint,
        "page": Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page")),
        "secret": secret,
        "can_admin": can(request, endpoint.team_id, Role.ADMIN),
    }
    response = render(request, "webui/event_endpoint_detail.html", context)
    if secret:
        response["Cache-Control"] = "no-store"
    return response


@require_POST
@team_member
def endpoint_action(request, pk, action):
    """rotate, enable, disable or delete (admins)."""
    endpoint = load_endpoint(request, pk)
    require_role(request, endpoint.team_id, Role.ADMIN)
    if action == "delete":
        endpoints.delete_endpoint(endpoint)
        messages.success(request, f"Deleted the endpoint {endpoint.url}.")
        return redirect("webui:event-endpoint-list")
    if action == "rotate":
        park_secret(request, endpoints.rotate_secret(endpoint))
    elif action in ("enable", "disable"):
        endpoints.update_endpoint(endpoint, {"enabled": action == "enable"})
        messages.success(request, f"The endpoint is {action}d.")
    return redirect("webui:event-endpoint-detail", pk=endpoint.pk)


@require_POST
@team_member
def redeliver(request, pk, delivery_id):
    endpoint = load_endpoint(request, pk)
    require_role(request, endpoint.team_id, Role.ADMIN)
    delivery = get_object_or_404(EventDelivery, pk=delivery_id, endpoint=endpoint)
    endpoints.redeliver(delivery)
    messages.success(request, f"Redelivering the {delivery.event.type} event; it appears below as a new delivery.")
    return redirect("webui:event-endpoint-detail", pk=endpoint.pk)
