"""OpenAPI generation: every operation also documents the error answers it can give."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from experiments_app.serializers import ErrorSerializer

ERRORS = {
    "400": "Invalid input; `errors` names each field.",
    "401": "Missing or invalid credentials.",
    "403": "Your role does not allow this.",
    "404": "No such object in your teams.",
    "409": "Refused in the current state; `status` is the experiment's status.",
    "413": "The request body is too large.",
    "415": "Send `Content-Type: application/json`.",
}
BODY_ONLY = {"413", "415"}


# Explicit, verb-named operation ids for generated clients: (viewset, action[, method]) → id.
OPERATION_IDS = {
    ("ApplicationViewSet", "list"): "list_applications",
    ("ApplicationViewSet", "create"): "create_application",
    ("ApplicationViewSet", "retrieve"): "get_application",
    ("ApplicationViewSet", "partial_update"): "update_application",
    ("ApplicationViewSet", "destroy"): "delete_application",
    ("ApplicationViewSet", "rotate_secret"): "rotate_application_secret",
    ("ApplicationViewSet", "ping"): "ping_application",
    ("ApplicationViewSet", "enable"): "enable_application",
    ("PendingTestsViewSet", "create"): "lease_pending_tests",
    ("StepViewSet", "list"): "list_inference_steps",
    ("StepViewSet", "create"): "create_inference_step",
    ("StepViewSet", "retrieve"): "get_inference_step",
    ("StepViewSet", "partial_update"): "update_inference_step",
    ("StepViewSet", "destroy"): "delete_inference_step",
    ("TaskViewSet", "list"): "list_tasks",
    ("TaskViewSet", "create"): "create_task",
    ("TaskViewSet", "bulk"): "create_tasks_in_bulk",
    ("TaskViewSet", "retrieve"): "get_task",
    ("TaskViewSet", "partial_update"): "update_task",
    ("TaskViewSet", "destroy"): "delete_task",
    ("ExperimentViewSet", "list"): "list_experiments",
    ("ExperimentViewSet", "create"): "create_experiment",
    ("ExperimentViewSet", "retrieve"): "get_experiment",
    ("ExperimentViewSet", "partial_update"): "update_experiment",
    ("ExperimentViewSet", "destroy"): "delete_experiment",
    ("ExperimentViewSet", "baseline", "GET"): "get_baseline",
    ("ExperimentViewSet", "baseline", "PUT"): "set_baseline",
    ("ExperimentViewSet", "run_baseline"): "run_baseline",
    ("ExperimentViewSet", "results"): "get_results",
    ("ExperimentViewSet", "gate"): "gate_variant",
    ("ExperimentViewSet", "report"): "get_decision_report",
    ("ExperimentViewSet", "reopen"): "reopen_experiment",
    ("ExperimentViewSet", "complete"): "complete_experiment",
    ("ExperimentViewSet", "archive"): "archive_experiment",
    ("ExperimentRunViewSet", "list"): "list_experiment_runs",
    ("VariantViewSet", "list"): "list_variants",
    ("VariantViewSet", "create"): "create_variant",
    ("VariantViewSet", "retrieve"): "get_variant",
    ("VariantViewSet", "destroy"): "delete_variant",
    ("VariantViewSet", "run"): "run_variant",
    ("VariantViewSet", "dry_run"): "start_dry_run",
    ("RunViewSet", "retrieve"): "get_run",
    ("RunViewSet", "list"): "list_run_tests",
    ("RunViewSet", "cancel"): "cancel_run",
    ("RunViewSet", "compare"): "compare_runs",
    ("TestViewSet", "retrieve"): "get_test",
    ("ResultViewSet", "create"): "report_test_result",
    ("TokenViewSet", "list"): "list_tokens",
    ("TokenViewSet", "create"): "issue_token",
    ("TokenViewSet", "retrieve"): "get_token",
    ("TokenViewSet", "destroy"): "revoke_token",
    ("EventEndpointViewSet", "list"): "list_event_endpoints",
    ("EventEndpointViewSet", "create"): "create_event_endpoint",
    ("EventEndpointViewSet", "retrieve"): "get_event_endpoint",
    ("EventEndpointViewSet", "partial_update"): "update_event_endpoint",
    ("EventEndpointViewSet", "destroy"): "delete_event_endpoint",
    ("EventEndpointViewSet", "rotate_secret"): "rotate_event_endpoint_secret",
    ("EventEndpointViewSet", "redeliver"): "redeliver_event",
    ("EventDeliveryViewSet", "list"): "list_event_deliveries",
}


class ApiSchema(AutoSchema):
    def get_operation_id(self):
        name, action = type(self.view).__name__, getattr(self.view, "action", None)
        explicit = OPERATION_IDS.get((name, action, self.method)) or OPERATION_IDS.get((name, action))
        return explicit or super().get_operation_id()

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        has_body = self.method in ("POST", "PUT", "PATCH")
        for code, description in ERRORS.items():
            if code in responses or (code in BODY_ONLY and not has_body):
                continue
            if code == "409" and self.method == "GET":
                continue
            responses[code] = {
                "content": {"application/json": {"schema": self.resolve_serializer(ErrorSerializer, direction).ref}},
                "description": description,
            }
        return responses


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "experiments_app.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A team API token: `Authorization: Bearer <token>`."}
