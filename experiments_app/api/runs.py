"""Runs, their tests, comparison of two runs, and result ingestion (SPEC §5)."""

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from experiments_app import results, runs, webhooks
from experiments_app.api.base import ApiViewSet, query
from experiments_app.auth import BearerTokenAuthentication, TokenPrincipal
from experiments_app.errors import ValidationFailed
from experiments_app.models import DeliveryAttempt, Role, Run, Test
from experiments_app.permissions import get_visible, require_role
from experiments_app.serializers import (
    CompareSerializer,
    ResultInputSerializer,
    RunSerializer,
    TestQuerySerializer,
    TestSerializer,
)

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def test_queryset():
    return Test.objects.prefetch_related(Prefetch("delivery_attempts", queryset=DeliveryAttempt.objects.order_by("number")))


@extend_schema(tags=["runs"])
class RunViewSet(ApiViewSet):
    serializer_class = RunSerializer

    def load(self, pk, needed=Role.VIEWER):
        run = get_visible(self.request, Run.objects.select_related("experiment"), pk, team_field="experiment__team")
        self.experiment = run.experiment
        require_role(self.request, run.experiment.team_id, needed)
        return run

    @extend_schema(responses=RunSerializer)
    def retrieve(self, request, id):
        return Response(RunSerializer(self.load(id)).data)

    @extend_schema(parameters=[TestQuerySerializer], responses=TestSerializer)
    def list(self, request, id):
        run = self.load(id)
        tests = test_queryset().filter(run=run).order_by("task_external_id", "repetition", "pk")
        wanted = query(request, TestQuerySerializer).get("status")
        if wanted:
            tests = tests.filter(status=wanted)
        return self.paginated(tests, TestSerializer, scope=list(run.config or {}))

    @extend_schema(request=None, responses=RunSerializer)
    def cancel(self, request, id):
        return Response(RunSerializer(runs.cancel_run(self.load(id, Role.EDITOR), by=request.user)).data)

    @extend_schema(responses=CompareSerializer)
    def compare(self, request, new, old):
        new_run, old_run = self.load(new), self.load(old)
        if new_run.experiment_id != old_run.experiment_id:
            raise ValidationFailed({"old": "Both runs must belong to the same experiment."})
        return Response(results.compare_runs(new_run, old_run))


def signed_by_application(request, test):
    secret = test.run.experiment.application.webhook_secret
    return webhooks.verify_signature(secret, request.headers, request.body)


@extend_schema(tags=["tests"])
class TestViewSet(ApiViewSet):
    serializer_class = TestSerializer

    @extend_schema(responses=TestSerializer)
    def retrieve(self, request, id):
        test = get_visible(request, test_queryset().select_related("run__experiment"), id, team_field="run__experiment__team")
        self.experiment = test.run.experiment
        return Response(TestSerializer(test).data)


@extend_schema(tags=["tests"])
class ResultViewSet(ApiViewSet):
    """Results come from the application under test: a team token or a Standard Webhooks
    signature made with the application's secret. No session: no CSRF-able browser path."""

    authentication_classes = []
    permission_classes = []

    @extend_schema(
        request=ResultInputSerializer,
        responses={200: TestSerializer},
        auth=[{"bearerAuth": []}, {"webhookSignature": []}],
        description="Report the result of a test. Authenticate with a team token or sign the body "
        "like the outbound webhook (headers webhook-id, webhook-timestamp, webhook-signature).",
    )
    def create(self, request, id):

        body = request.body  # read first: the signature covers the raw bytes
        test = self.authorize(request, id, body)
        self.experiment = test.run.experiment
        runs.record_result(test.pk, request.data, source="callback")
        return Response(TestSerializer(test_queryset().get(pk=test.pk)).data)

    def authorize(self, request, id, body):
        tests = Test.objects.select_related("run__experiment__application")
        if request.headers.get("Authorization"):
            principal = BearerTokenAuthentication().authenticate(request)
            if principal is None:
                raise exceptions.NotAuthenticated("Send `Authorization: Bearer <token>` or signature headers.")
            user = principal[0]
            test = tests.filter(pk=id).first()
            if test is None or not isinstance(user, TokenPrincipal) or test.run.experiment.team_id != user.team.pk:
                raise exceptions.NotFound()
            return test
        if all(request.headers.get(name) for name in SIGNATURE_HEADERS):
            test = tests.filter(pk=id).first()
            if test is None:
                raise exceptions.NotFound()
            if not signed_by_application(request, test):
                raise exceptions.AuthenticationFailed("The webhook signature does not match the application's secret.")
            return test
        raise exceptions.NotAuthenticated("Send `Authorization: Bearer <token>` or the webhook signature headers.")

    def get_authenticate_header(self, request):
        return "Bearer"
