"""Fields whose OpenAPI schema states the constraints the API enforces, so that generated
clients (and schemathesis) send what the API accepts: the parameter table of SPEC §2 for
configs, one schema per evaluator type discriminated by `type`, and one variant body per
parameter discriminated by `parameter`. The rules themselves stay in overrides.py and the
actions; these fields only describe them (and validate shape, as every input serializer does).
"""

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from experiments_app.overrides import PARAMETERS


def parameter_schema(parameter):
    """The JSON Schema of one parameter's value (SPEC §2's table)."""
    if parameter.kind == "choice":
        return {"type": "string", "enum": list(parameter.choices)}
    if parameter.kind == "string":
        return {"type": "string", "minLength": int(parameter.minimum), "maxLength": int(parameter.maximum)}
    schema = {"type": "integer" if parameter.kind == "integer" else "number", "maximum": parameter.maximum}
    schema["exclusiveMinimum" if parameter.exclusive_minimum else "minimum"] = parameter.minimum
    return schema


STEP_CONFIG_SCHEMA = {
    "type": "object",
    "description": "Parameters of one step. The six known ones are checked against SPEC §2's table; a key within edit "
    "distance 2 of one (`temprature`) is refused with “did you mean temperature?”; any other key passes through "
    "unvalidated (it is listed in `unvalidated`).",
    "properties": {name: parameter_schema(parameter) for name, parameter in PARAMETERS.items()},
    "additionalProperties": True,
}


@extend_schema_field(STEP_CONFIG_SCHEMA)
class StepConfigField(serializers.DictField):
    """{parameter: value} of one inference step."""


@extend_schema_field(
    {"type": "object", "additionalProperties": STEP_CONFIG_SCHEMA, "description": "{step external_id: {parameter: value}}"}
)
class ConfigField(serializers.DictField):
    """{step external_id: {parameter: value}}, the baseline's config."""


# --- evaluators (SPEC §6) -------------------------------------------------------------


class EvaluatorBase(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=200, help_text="Unique within the experiment; defaults to the type.")


class ReportedEvaluator(EvaluatorBase):
    type = serializers.ChoiceField(choices=["reported"])


class ExactMatchEvaluator(EvaluatorBase):
    type = serializers.ChoiceField(choices=["exact_match"])
    field = serializers.CharField(required=False, help_text="Compare output[field] with expected[field].")


class ContainsEvaluator(EvaluatorBase):
    type = serializers.ChoiceField(choices=["contains"])
    value = serializers.CharField()
    case_insensitive = serializers.BooleanField(required=False)


class RegexEvaluator(EvaluatorBase):
    type = serializers.ChoiceField(choices=["regex"])
    pattern = serializers.CharField()
    case_insensitive = serializers.BooleanField(required=False)


class JsonSubsetEvaluator(EvaluatorBase):
    type = serializers.ChoiceField(choices=["json_subset"])
    field = serializers.CharField(required=False)


class MetricThresholdEvaluator(EvaluatorBase):
    type = serializers.ChoiceField(choices=["metric_threshold"])
    metric = serializers.CharField()
    min = serializers.FloatField(required=False, help_text="Give min, max or both.")
    max = serializers.FloatField(required=False)


EVALUATOR_SERIALIZERS = {
    "reported": ReportedEvaluator,
    "exact_match": ExactMatchEvaluator,
    "contains": ContainsEvaluator,
    "regex": RegexEvaluator,
    "json_subset": JsonSubsetEvaluator,
    "metric_threshold": MetricThresholdEvaluator,
}


@extend_schema_field(
    PolymorphicProxySerializer(component_name="Evaluator", serializers=EVALUATOR_SERIALIZERS, resource_type_field_name="type")
)
class EvaluatorField(serializers.DictField):
    """One evaluator object; the action checks its keys (experiments.validate_evaluators)."""


# --- a variant's one change (SPEC §2) ---------------------------------------------------


def variant_body(name, parameter):
    """The body of POST experiments/{id}/variants/ for one parameter: its value's type and range stated."""

    @extend_schema_field(parameter_schema(parameter))
    class ValueField(serializers.JSONField):
        pass

    fields = {
        "parent": serializers.UUIDField(),
        "inference_step": serializers.CharField(max_length=200, help_text="External id of an in-scope step."),
        "parameter": serializers.ChoiceField(choices=[name]),
        "value": ValueField(),
        "name": serializers.CharField(max_length=200, required=False, allow_blank=True),
    }
    title = "".join(part.capitalize() for part in name.split("_"))
    return type(f"{title}VariantCreate", (serializers.Serializer,), fields)


class ControlVariantCreate(serializers.Serializer):
    """The control variant (SPEC §3): the baseline configuration run again, the noise floor."""

    is_control = serializers.ChoiceField(choices=[True], help_text="true: add the control (at most one per experiment).")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


VARIANT_CREATE_SCHEMA = PolymorphicProxySerializer(
    component_name="VariantCreate",
    serializers=[*(variant_body(name, parameter) for name, parameter in PARAMETERS.items()), ControlVariantCreate],
    resource_type_field_name=None,
)


# --- URLs and metric names ----------------------------------------------------------------

URL_SCHEMA = {
    "type": "string",
    "format": "uri",
    "pattern": "^https?://[^/?#@\\s]+",
    "maxLength": 2000,
    "description": "An http(s) URL whose host resolves to a public address, or to a host listed in WEBHOOK_ALLOWED_HOSTS "
    "(private, loopback and link-local addresses are refused).",
}


@extend_schema_field(URL_SCHEMA)
class WebhookUrlField(serializers.CharField):
    """An outbound URL; the SSRF rules are checked by the action (webhooks.check_webhook_url)."""


@extend_schema_field({"type": "object", "propertyNames": {"minLength": 1, "maxLength": 100}, "additionalProperties": {"type": "number"}})
class MetricsField(serializers.DictField):
    """{metric name (1–100 characters): number}."""
