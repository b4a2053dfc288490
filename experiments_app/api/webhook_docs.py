"""What the product sends out, described in the schema's `webhooks` section (OpenAPI 3.1), so an
application's developer can generate types for the bodies they receive: the test delivery and
ping of SPEC §4 (camelCase keys) and the events of "Events out of the product"."""

from drf_spectacular.utils import OpenApiResponse, OpenApiWebhook, extend_schema
from rest_framework import serializers

from experiments_app.models import EventType, RunStatus
from experiments_app.schema_fields import ConfigField
from experiments_app.serializers import AnyJSONField, ChangeSerializer, ResultInputSerializer, ResultSerializer
from experiments_app.states import State

SIGNED = (
    "Signed with Standard Webhooks headers: `webhook-id` (the same for every retry), `webhook-timestamp` (Unix seconds) "
    "and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed with the base64-decoded part "
    "of the `whsec_` secret)."
)


# Field names are the payload's own camelCase keys (SPEC §4).
class DeliveredTaskSerializer(serializers.Serializer):
    id = serializers.UUIDField(allow_null=True)
    externalId = serializers.CharField()
    input = serializers.DictField(child=AnyJSONField())


class DeliveredVariantSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    isBaseline = serializers.BooleanField()
    parentId = serializers.UUIDField(allow_null=True)
    change = ChangeSerializer(allow_null=True)


class DeliveredExperimentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    variant = DeliveredVariantSerializer()
    overrides = ConfigField(child=serializers.DictField(child=AnyJSONField()), help_text="The variant's effective config.")


class TestDeliveryDataSerializer(serializers.Serializer):
    testId = serializers.UUIDField()
    repetition = serializers.IntegerField(min_value=1, max_value=20)
    callbackUrl = serializers.URLField()
    task = DeliveredTaskSerializer()
    experiment = DeliveredExperimentSerializer()


class TestDeliverySerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["experiment.test"])
    timestamp = serializers.DateTimeField()
    data = TestDeliveryDataSerializer()


class PingDataSerializer(serializers.Serializer):
    pass


class PingDeliverySerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["webhook.ping"])
    timestamp = serializers.DateTimeField()
    data = PingDataSerializer()


class EventExperimentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=State.choices)


class EventVariantSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    is_baseline = serializers.BooleanField()
    is_control = serializers.BooleanField()


class EventRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=RunStatus.choices)
    total = serializers.IntegerField()
    passed = serializers.IntegerField()
    failed = serializers.IntegerField()
    errored = serializers.IntegerField()
    skipped = serializers.IntegerField()
    completed_at = serializers.DateTimeField(allow_null=True)


class EventDataSerializer(serializers.Serializer):
    experiment = EventExperimentSerializer()
    variant = EventVariantSerializer(allow_null=True, help_text="Null for experiment.completed without a winner.")
    run = EventRunSerializer(allow_null=True)
    result = ResultSerializer(allow_null=True, help_text="R of SPEC §8; null where there is none (a cancelled run).")


class EventSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=EventType.choices)
    timestamp = serializers.DateTimeField()
    version = serializers.IntegerField(help_text="The body's shape version (1).")
    data = EventDataSerializer()


test_delivery = OpenApiWebhook(
    name="experiment.test",
    decorator=extend_schema(
        summary="One test, sent to the application's webhook_url",
        description=f"{SIGNED} Answer 200 with the result, or 202 and post it to `callbackUrl` later. 408, 429, 5xx, timeouts "
        "and connection errors are retried (honouring `Retry-After`); other 4xx error the test.",
        request=TestDeliverySerializer,
        responses={
            200: OpenApiResponse(ResultInputSerializer, description="The result, synchronously."),
            202: OpenApiResponse(description="Accepted; the result comes through callbackUrl."),
        },
    ),
)

ping = OpenApiWebhook(
    name="webhook.ping",
    decorator=extend_schema(
        summary="A test delivery (applications/{id}/ping/)",
        description=SIGNED,
        request=PingDeliverySerializer,
        responses={200: OpenApiResponse(description="Any 2xx counts as reachable.")},
    ),
)

event = OpenApiWebhook(
    name="event",
    decorator=extend_schema(
        summary="An event, sent to each event endpoint that subscribed to its type",
        description=f"{SIGNED} The secret is the endpoint's own. Types: run.completed (any run ends, cancelled included), "
        "baseline.completed, variant.completed, variant.regressed (significantly worse than the baseline), "
        "experiment.completed (variant, run and result are the winner's). Retried like test deliveries; any 2xx acknowledges it.",
        request=EventSerializer,
        responses={200: OpenApiResponse(description="Received (any 2xx).")},
    ),
)


def simplify_nullable_any(generator, request, public, result):
    """OpenAPI 3.1 writes a nullable any-value as `oneOf: [{}, {type: null}]`, where null matches both
    branches (invalid under oneOf). Any value already includes null: write `{}`."""

    def walk(node):
        if isinstance(node, dict):
            branches = node.get("oneOf")
            if isinstance(branches, list) and len(branches) == 2 and {} in branches and {"type": "null"} in branches:
                del node["oneOf"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(result)
    return result


NO_NUL = "^[^\\u0000]*$"


def state_request_limits(generator, request, public, result):
    """Two limits every request body has: strings may not contain NUL (PostgreSQL cannot store it;
    the parser refuses it anywhere in a body), and keys a body's schema does not name are not
    taken (the API ignores or refuses them), so request objects are closed."""

    def close(node):
        if isinstance(node, dict):
            if node.get("type") == "string" and not ({"pattern", "format", "enum"} & set(node)):
                node["pattern"] = NO_NUL
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    schemas = result.get("components", {}).get("schemas", {})
    for name, component in schemas.items():
        if name.endswith("Request"):
            close(component)
    # A new application needs a webhook URL unless it is created in pull mode; a PATCH may leave both out.
    creating = schemas.get("ApplicationInputRequest")
    if creating is not None:
        url = next(option for option in creating["properties"]["webhook_url"]["oneOf"] if option.get("format") == "uri")
        creating["anyOf"] = [
            {"required": ["webhook_url"], "properties": {"webhook_url": url, "delivery": {"enum": ["push"]}}},
            {"required": ["delivery"], "properties": {"delivery": {"enum": ["pull"]}}},
        ]
    return result
