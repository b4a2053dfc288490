"""REST API routes (SPEC §8), mounted under /api/v1/."""

from django.http import JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from experiments_app.api.catalog import ApplicationViewSet, StepViewSet, TaskViewSet
from experiments_app.api.events import EventDeliveryViewSet, EventEndpointViewSet
from experiments_app.api.experiments import ExperimentRunViewSet, ExperimentViewSet, VariantViewSet
from experiments_app.api.pull import PendingTestsViewSet
from experiments_app.api.runs import ResultViewSet, RunViewSet, TestViewSet
from experiments_app.api.tokens import TokenViewSet

app_name = "api"


def route(url, viewset, actions, name):
    return path(url, viewset.as_view(actions), name=name)


urlpatterns = [
    route("applications/", ApplicationViewSet, {"get": "list", "post": "create"}, "application-list"),
    route(
        "applications/<uuid:id>/",
        ApplicationViewSet,
        {"get": "retrieve", "patch": "partial_update", "delete": "destroy"},
        "application-detail",
    ),
    route("applications/<uuid:id>/rotate-secret/", ApplicationViewSet, {"post": "rotate_secret"}, "application-rotate-secret"),
    route("applications/<uuid:id>/ping/", ApplicationViewSet, {"post": "ping"}, "application-ping"),
    # Not in SPEC §8: re-enabling an application disabled after failing every delivery.
    route("applications/<uuid:id>/enable/", ApplicationViewSet, {"post": "enable"}, "application-enable"),
    route("applications/<uuid:id>/pending-tests/", PendingTestsViewSet, {"post": "create"}, "application-pending-tests"),
    route("applications/<uuid:id>/inference-steps/", StepViewSet, {"get": "list", "post": "create"}, "step-list"),
    route(
        "applications/<uuid:id>/inference-steps/<uuid:step_id>/",
        StepViewSet,
        {"get": "retrieve", "patch": "partial_update", "delete": "destroy"},
        "step-detail",
    ),
    route("applications/<uuid:id>/tasks/", TaskViewSet, {"get": "list", "post": "create"}, "task-list"),
    route("applications/<uuid:id>/tasks/bulk/", TaskViewSet, {"post": "bulk"}, "task-bulk"),
    route(
        "applications/<uuid:id>/tasks/<uuid:task_id>/",
        TaskViewSet,
        {"get": "retrieve", "patch": "partial_update", "delete": "destroy"},
        "task-detail",
    ),
    route("experiments/", ExperimentViewSet, {"get": "list", "post": "create"}, "experiment-list"),
    route(
        "experiments/<uuid:id>/",
        ExperimentViewSet,
        {"get": "retrieve", "patch": "partial_update", "delete": "destroy"},
        "experiment-detail",
    ),
    route("experiments/<uuid:id>/baseline/", ExperimentViewSet, {"get": "baseline", "put": "baseline"}, "experiment-baseline"),
    route("experiments/<uuid:id>/run-baseline/", ExperimentViewSet, {"post": "run_baseline"}, "experiment-run-baseline"),
    route("experiments/<uuid:id>/results/", ExperimentViewSet, {"get": "results"}, "experiment-results"),
    route("experiments/<uuid:id>/gate/", ExperimentViewSet, {"get": "gate"}, "experiment-gate"),
    route("experiments/<uuid:id>/report/", ExperimentViewSet, {"get": "report"}, "experiment-report"),
    route("experiments/<uuid:id>/runs/", ExperimentRunViewSet, {"get": "list"}, "experiment-runs"),
    route("experiments/<uuid:id>/reopen/", ExperimentViewSet, {"post": "reopen"}, "experiment-reopen"),
    route("experiments/<uuid:id>/complete/", ExperimentViewSet, {"post": "complete"}, "experiment-complete"),
    route("experiments/<uuid:id>/archive/", ExperimentViewSet, {"post": "archive"}, "experiment-archive"),
    route("experiments/<uuid:id>/variants/", VariantViewSet, {"get": "list", "post": "create"}, "variant-list"),
    route("variants/<uuid:id>/", VariantViewSet, {"get": "retrieve", "delete": "destroy"}, "variant-detail"),
    route("variants/<uuid:id>/run/", VariantViewSet, {"post": "run"}, "variant-run"),
    route("variants/<uuid:id>/dry-run/", VariantViewSet, {"post": "dry_run"}, "variant-dry-run"),
    route("runs/<uuid:id>/", RunViewSet, {"get": "retrieve"}, "run-detail"),
    route("runs/<uuid:id>/tests/", RunViewSet, {"get": "list"}, "run-tests"),
    route("runs/<uuid:id>/cancel/", RunViewSet, {"post": "cancel"}, "run-cancel"),
    route("runs/<uuid:new>/compare/<uuid:old>/", RunViewSet, {"get": "compare"}, "run-compare"),
    route("tests/<uuid:id>/", TestViewSet, {"get": "retrieve"}, "test-detail"),
    route("tests/<uuid:id>/result/", ResultViewSet, {"post": "create"}, "test-result"),
    route("event-endpoints/", EventEndpointViewSet, {"get": "list", "post": "create"}, "event-endpoint-list"),
    route(
        "event-endpoints/<uuid:id>/",
        EventEndpointViewSet,
        {"get": "retrieve", "patch": "partial_update", "delete": "destroy"},
        "event-endpoint-detail",
    ),
    route("event-endpoints/<uuid:id>/rotate-secret/", EventEndpointViewSet, {"post": "rotate_secret"}, "event-endpoint-rotate-secret"),
    route("event-endpoints/<uuid:id>/deliveries/", EventDeliveryViewSet, {"get": "list"}, "event-endpoint-deliveries"),
    route(
        "event-endpoints/<uuid:id>/deliveries/<uuid:delivery_id>/redeliver/",
        EventEndpointViewSet,
        {"post": "redeliver"},
        "event-delivery-redeliver",
    ),
    # Not in SPEC §8: an addition for admins managing their team's tokens.
    route("tokens/", TokenViewSet, {"get": "list", "post": "create"}, "token-list"),
    route("tokens/<uuid:id>/", TokenViewSet, {"get": "retrieve", "delete": "destroy"}, "token-detail"),
]


@csrf_exempt
def not_found(request, *args, **kwargs):
    """Anything else under /api/v1/ (an id that is not a UUID, a typo) answers JSON, not the HTML 404 page."""
    return JsonResponse({"code": "not_found", "detail": "No such route or object."}, status=404)


urlpatterns.append(re_path(r"^.*$", not_found, name="not-found"))
