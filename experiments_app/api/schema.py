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


class ApiSchema(AutoSchema):
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
