"""Pull mode (SPEC §8): `applications/{id}/pending-tests/`, where a pull application leases its tests."""

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from experiments_app import runs, webhooks
from experiments_app.api.base import ApiViewSet, validated
from experiments_app.api.runs import SIGNATURE_HEADERS
from experiments_app.auth import BearerTokenAuthentication, TokenPrincipal
from experiments_app.models import Application, Role, role_at_least
from experiments_app.serializers import PendingTestsInputSerializer, PendingTestsSerializer


@extend_schema(tags=["applications"])
class PendingTestsViewSet(ApiViewSet):
    """Called by the application itself: a team token (editor or admin) or a Standard Webhooks
    signature over the request body made with the application's secret. No session, so no
    browser path; another team's token sees a 404 and the signature only opens its own application."""

    authentication_classes = []
    permission_classes = []

    @extend_schema(
        request=PendingTestsInputSerializer,
        responses={200: PendingTestsSerializer},
        auth=[{"bearerAuth": []}, {"webhookSignature": []}],
        description="Lease due tests of a pull application. Each item is the `data` object of the outbound webhook "
        "(SPEC §4): apply its `overrides`, then post the result to `callbackUrl`. With `wait`, a long poll answered "
        "as soon as a test is due. A lease that ends without a result offers the test again with one more attempt; "
        "leased tests never exceed the application's max_concurrency across all pullers. 409 when the application "
        "is in push mode.",
    )
    def create(self, request, id):
        body = request.body  # read first: the signature covers the raw bytes
        application = self.authorize(request, id, body)
        options = validated(PendingTestsInputSerializer, request.data or {})
        answer = runs.pull_tests(
            application.pk,
            limit=options["max"],
            wait=options["wait"],
            lease_seconds=options.get("lease_seconds") or application.timeout_seconds,
        )
        return Response(answer)

    def authorize(self, request, id, body):
        if request.headers.get("Authorization"):
            principal = BearerTokenAuthentication().authenticate(request)
            if principal is None:
                raise exceptions.NotAuthenticated("Send `Authorization: Bearer <token>` or signature headers.")
            user = principal[0]
            application = Application.objects.filter(pk=id).first()
            if application is None or not isinstance(user, TokenPrincipal) or application.team_id != user.team.pk:
                raise exceptions.NotFound()
            if not role_at_least(user.role, Role.EDITOR):
                raise exceptions.PermissionDenied(f"Leasing tests needs the editor role; this token is {user.role}.")
            return application
        if all(request.headers.get(name) for name in SIGNATURE_HEADERS):
            application = Application.objects.filter(pk=id).first()
            if application is None:
                raise exceptions.NotFound()
            if not webhooks.verify_signature(application.webhook_secret, request.headers, body):
                raise exceptions.AuthenticationFailed("The webhook signature does not match the application's secret.")
            return application
        raise exceptions.NotAuthenticated("Send `Authorization: Bearer <token>` or the webhook signature headers.")

    def get_authenticate_header(self, request):
        return "Bearer"
