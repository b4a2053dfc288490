"""Runs, their tests, comparison of two runs, and result ingestion (SPEC §5)."""

from django.conf import settings
from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from experiments_app import ratelimit, results, runs, waiting, webhooks
from experiments_app.api.base import ApiViewSet, query
from experiments_app.auth import BearerTokenAuthentication, TokenPrincipal
from experiments_app.errors import ValidationFailed
from experiments_app.models import Application, DeliveryAttempt, Experiment, Role, Run, Test, role_at_least
from experiments_app.permissions import get_visible, require_role
from experiments_app.serializers import (
    CompareSerializer,
    DeliveryAttemptSerializer,
    ResultInputSerializer,
    RunSerializer,
    RunWaitQuerySerializer,
    TestQuerySerializer,
    TestSerializer,
)


class RecordedTestSerializer(TestSerializer):
    """The answer to a result post: TestSerializer's fields, the delivery attempts read after the
    commit into `recorded_attempts` beforehand (by runs.record_result or runs.attempts_of)."""

    delivery_attempts = DeliveryAttemptSerializer(many=True, source="recorded_attempts")


# One serializer for every recorded result: building a ModelSerializer's fields took a tenth of a
# result post's CPU; reading through it keeps no state.
RECORDED = RecordedTestSerializer()
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# What Application.signing_secrets reads.
SECRET_FIELDS = ("webhook_secret", "previous_webhook_secret", "previous_secret_expires_at")


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

    @extend_schema(
        parameters=[RunWaitQuerySerializer],
        responses=RunSerializer,
        description="The run. With `?wait=N` (1–60) a long poll: answers as soon as the run ends, or after N seconds with "
        "its current state. The header `X-Wait` says `ended`, `timeout`, or `busy` (the server's waiting places were "
        "all taken, so it answered at once: ask again).",
    )
    def retrieve(self, request, id):
        run = self.load(id)
        seconds = query(request, RunWaitQuerySerializer).get("wait")
        outcome = None
        if seconds and run.is_active():
            outcome = waiting.wait_for_run_end(run.pk, seconds)
            run.refresh_from_db()
        response = Response(RunSerializer(run).data)
        if outcome:
            response["X-Wait"] = outcome
        return response

    @extend_schema(parameters=[TestQuerySerializer], responses=TestSerializer)
    def list(self, request, id):
        run = self.load(id)
        tests = test_queryset().filter(run=run).order_by("task_external_id", "repetition", "pk")
        filters = query(request, TestQuerySerializer)
        if filters.get("status"):
            tests = tests.filter(status=filters["status"])
        if filters.get("label"):
            tests = tests.filter(task_id__in=results.tasks_labelled(run, filters["label"]))
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
        "like the outbound webhook (headers webhook-id, webhook-timestamp, webhook-signature).\n\n"
        "**The same result.** Posting again is safe: a result counts as the same when its `output`, `passed`, `metrics` "
        "(compared as JSON values, so key order and `1` vs `1.0` do not matter), `error` and `traceId` all equal what the "
        "test already holds (a missing `error`/`traceId` equals an empty one). The same result answers 200 and changes "
        "nothing; a different one for a finished test answers 409; any result for a test of a cancelled run answers 409.",
    )
    def create(self, request, id):
        body = request.body  # read first: the signature covers the raw bytes
        check, secret_fields = self.owner_check(request, body)

        def accept(owner):
            """Inside record_result's transaction, the test locked: the sender, the rate, the body."""
            check(owner)
            self.experiment = Experiment(pk=owner["experiment_id"])  # a 409 reports its fresh status
            wait = ratelimit.hit("results", owner["application_id"], settings.RATE_LIMIT_RESULTS)
            if wait:
                allowed, window = ratelimit.parse(settings.RATE_LIMIT_RESULTS)
                raise exceptions.Throttled(wait, f"This application sent more than {allowed} results in {window} s.")
            return request.data

        test = runs.record_result(id, None, source="callback", accept=accept, secret_fields=secret_fields)
        # The test as recorded (record_result holds it with its run), with its attempts read after
        # the commit (by record_result where it could fold the read into its last round trip).
        if not hasattr(test, "recorded_attempts"):
            test.recorded_attempts = runs.attempts_of(test.pk)
        return Response(RECORDED.to_representation(test))

    def owner_check(self, request, body):
        """(check(owner), the application's fields it needs) for the sender of this post: a token
        (checked now) or signature headers. `check` raises unless the test's owner (runs.ingest.owner's
        dict, None for an unknown test) is the token's team with an editor's role or the
        application whose secret signed the body. The owner is read with the test's lock
        (runs.record_result's `accept`): this is the busiest route of all."""
        if request.headers.get("Authorization"):
            principal = BearerTokenAuthentication().authenticate(request)
            if principal is None:
                raise exceptions.NotAuthenticated("Send `Authorization: Bearer <token>` or signature headers.")
            user = principal[0]

            def check_token(owner):
                if owner is None or not isinstance(user, TokenPrincipal) or owner["team_id"] != user.team.pk:
                    raise exceptions.NotFound()
                if not role_at_least(user.role, Role.EDITOR):
                    raise exceptions.PermissionDenied(
                        f"Posting results needs an editor or admin token (or the signature); this token is a {user.role}'s."
                    )

            return check_token, ()
        if all(request.headers.get(name) for name in SIGNATURE_HEADERS):

            def check_signature(owner):
                if owner is None:
                    raise exceptions.NotFound()
                application = Application(**{name: owner[name] for name in SECRET_FIELDS})
                if not webhooks.verify_signature(application.signing_secrets(), request.headers, body):
                    raise exceptions.AuthenticationFailed("The webhook signature does not match the application's secret.")

            return check_signature, SECRET_FIELDS
        raise exceptions.NotAuthenticated("Send `Authorization: Bearer <token>` or the webhook signature headers.")

    def get_authenticate_header(self, request):
        return "Bearer"
