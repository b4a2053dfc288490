"""API shapes (SPEC §8). Input serializers check the shape only; the rules live in the actions."""

import uuid

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from experiments_app import jsonlimits, overrides, step_detail, webhooks
from experiments_app.models import (
    ApiToken,
    Application,
    Delivery,
    DeliveryAttempt,
    EventAttempt,
    EventDelivery,
    EventEndpoint,
    EventType,
    Experiment,
    InferenceStep,
    Role,
    Run,
    RunStatus,
    Task,
    Test,
    TestStatus,
    Variant,
)
from experiments_app.overrides import PARAMETERS
from experiments_app.runs import live, pull
from experiments_app.schema_fields import ConfigField, EvaluatorField, MetricsField, StepConfigField, WebhookUrlField
from experiments_app.states import State


class AnyJSONField(serializers.JSONField):
    """Any JSON value (documented as such) that can be stored (jsonlimits)."""

    def to_internal_value(self, data):
        # DRF's own check json.dumps the value, which recurses: refuse what is too deep first.
        reason = jsonlimits.problem(data, max_depth=jsonlimits.MAX_DEPTH)
        if reason:
            raise serializers.ValidationError(f"Cannot be stored: {reason}.")
        return super().to_internal_value(data)


STEP_DETAIL_SCHEMA = {
    "type": "object",
    "description": "What one inference step did for this test (SPEC §5).",
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 200, "nullable": True},
        "output": {"description": "Any JSON: what the step produced.", "nullable": True},
        "latency_ms": {"type": "number", "minimum": 0, "nullable": True},
        "prompt_tokens": {"type": "integer", "minimum": 0, "nullable": True},
        "completion_tokens": {"type": "integer", "minimum": 0, "nullable": True},
        "cost_usd": {"type": "number", "minimum": 0, "nullable": True},
    },
    "additionalProperties": False,
}


@extend_schema_field(
    {
        "type": "object",
        "description": "Per-step detail keyed by inference step external_id. A step outside the run's scope is kept but flagged.",
        "additionalProperties": STEP_DETAIL_SCHEMA,
        "maxProperties": step_detail.MAX_STEPS,
    }
)
class StepsField(serializers.JSONField):
    """`steps` of a result, stored as reported (validated by ingest.parse_result)."""


# ---------------------------------------------------------------- errors


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
    status = serializers.CharField(required=False, allow_null=True)


# ---------------------------------------------------------------- applications


class ApplicationSerializer(serializers.ModelSerializer):
    webhook_url = serializers.CharField(help_text="An http(s) URL; empty for a pull application without one.")

    class Meta:
        model = Application
        fields = [
            "id",
            "team",
            "name",
            "webhook_url",
            "delivery",
            "timeout_seconds",
            "result_timeout_seconds",
            "max_concurrency",
            "disabled_at",
            "disabled_reason",
            "dispatch_stalled_since",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ApplicationWithSecretSerializer(ApplicationSerializer):
    class Meta(ApplicationSerializer.Meta):
        fields = [*ApplicationSerializer.Meta.fields, "webhook_secret"]
        read_only_fields = fields


class ApplicationInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    webhook_url = WebhookUrlField(
        max_length=2000, required=False, allow_blank=True, help_text="Required for push delivery; a pull application may leave it empty."
    )
    delivery = serializers.ChoiceField(
        choices=Delivery.choices,
        required=False,
        help_text="push (default): tests are POSTed to webhook_url. pull: the application leases them from pending-tests/. "
        "Cannot change while a run of the application is active.",
    )
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=600, required=False)
    result_timeout_seconds = serializers.IntegerField(min_value=1, max_value=7 * 24 * 3600, required=False)
    max_concurrency = serializers.IntegerField(min_value=1, max_value=1000, required=False)


class PingSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True)
    duration_ms = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_null=True, allow_blank=True)


# ---------------------------------------------------------------- steps and tasks


class StepSerializer(serializers.ModelSerializer):
    config = StepConfigField(child=AnyJSONField())
    unvalidated = serializers.SerializerMethodField(help_text="Config keys passed through without a check (not a known parameter).")

    class Meta:
        model = InferenceStep
        fields = ["id", "application", "external_id", "name", "description", "config", "unvalidated", "created_at"]
        read_only_fields = fields

    def get_unvalidated(self, step) -> list[str]:
        return overrides.unvalidated_keys(step.config, nested=False)


class StepInputSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=200)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(max_length=20_000, required=False, allow_blank=True, trim_whitespace=False)
    config = StepConfigField(
        child=AnyJSONField(), required=False, help_text='Production parameters, e.g. {"model": "gpt-4o-mini", "temperature": 0.7}.'
    )


class TaskSerializer(serializers.ModelSerializer):
    expected = AnyJSONField(allow_null=True)

    class Meta:
        model = Task
        fields = ["id", "application", "external_id", "name", "input", "expected", "tags", "created_at", "updated_at"]
        read_only_fields = fields


class TaskInputSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=200)
    name = serializers.CharField(max_length=500, required=False, allow_blank=True, trim_whitespace=False)
    input = serializers.DictField(child=AnyJSONField(allow_null=True))
    expected = AnyJSONField(required=False, allow_null=True)
    tags = serializers.ListField(child=serializers.CharField(min_length=1, max_length=100), required=False)


class CreatedCountSerializer(serializers.Serializer):
    created = serializers.IntegerField()


# ---------------------------------------------------------------- experiments


class ExperimentSerializer(serializers.ModelSerializer):
    inference_steps = serializers.SerializerMethodField()
    tasks = serializers.SerializerMethodField()
    evaluators = serializers.ListField(child=EvaluatorField(child=AnyJSONField()))
    baseline = serializers.SerializerMethodField(help_text="The baseline variant's id.")

    class Meta:
        model = Experiment
        fields = [
            "id",
            "application",
            "name",
            "description",
            "status",
            "inference_steps",
            "tasks",
            "evaluators",
            "repetitions",
            "max_error_rate",
            "alpha",
            "guardrails",
            "baseline",
            "locked_at",
            "winner",
            "completed_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_inference_steps(self, experiment) -> list[str]:
        return [step.external_id for step in experiment.inference_steps.all()]

    def get_tasks(self, experiment) -> list[uuid.UUID]:
        return [str(task.pk) for task in experiment.tasks.all()]

    def get_baseline(self, experiment) -> uuid.UUID | None:
        baseline_id = getattr(experiment, "baseline_id", None)
        if baseline_id is None:
            baseline_id = experiment.variants.filter(parent__isnull=True).values_list("pk", flat=True).first()
        return str(baseline_id) if baseline_id else None


class ExperimentCreateSerializer(serializers.Serializer):
    application = serializers.UUIDField()
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=20_000, required=False, allow_blank=True, trim_whitespace=False)


class ExperimentUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=20_000, required=False, allow_blank=True, trim_whitespace=False)
    inference_steps = serializers.ListField(child=serializers.CharField(max_length=200), required=False, help_text="Step external ids.")
    tasks = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=100_000, help_text="Task ids.")
    evaluators = serializers.ListField(child=EvaluatorField(child=AnyJSONField()), required=False, max_length=100)
    repetitions = serializers.IntegerField(min_value=1, max_value=20, required=False)
    max_error_rate = serializers.FloatField(min_value=0, max_value=1, required=False)
    alpha = serializers.FloatField(min_value=0.001, max_value=0.2, required=False, help_text="Significance level of every comparison.")
    guardrails = serializers.ListField(
        child=serializers.DictField(child=AnyJSONField()),
        required=False,
        max_length=20,
        help_text="Non-inferiority margins (SPEC §7): {name?, metric, statistic: mean|p95, margin, higher_is_better?} "
        "or {name?, evaluator, margin_pp}.",
    )


class BaselineSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    name = serializers.CharField(read_only=True)
    config = ConfigField(child=serializers.DictField(child=AnyJSONField()), help_text="{step external_id: {parameter: value}}")
    unvalidated = serializers.SerializerMethodField(help_text="`step.key` of config keys passed through without a check.")

    def get_unvalidated(self, baseline) -> list[str]:
        return overrides.unvalidated_keys(baseline.config)


class ExperimentQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=State.choices, required=False)


class CompleteSerializer(serializers.Serializer):
    winner = serializers.UUIDField(required=False, allow_null=True)


# ---------------------------------------------------------------- variants


class ChangeSerializer(serializers.Serializer):
    step = serializers.CharField()
    parameter = serializers.ChoiceField(choices=list(PARAMETERS))
    value = AnyJSONField()


class VariantSerializer(serializers.ModelSerializer):
    is_baseline = serializers.BooleanField(read_only=True)
    parameter = serializers.ChoiceField(choices=list(PARAMETERS), allow_blank=True, read_only=True, help_text="Empty for the baseline.")
    inference_step = serializers.SerializerMethodField()
    value = AnyJSONField(allow_null=True)
    change = serializers.SerializerMethodField()
    effective_config = serializers.SerializerMethodField()

    class Meta:
        model = Variant
        fields = [
            "id",
            "experiment",
            "parent",
            "name",
            "is_baseline",
            "is_control",
            "inference_step",
            "parameter",
            "value",
            "change",
            "effective_config",
            "created_at",
        ]
        read_only_fields = fields

    def get_inference_step(self, variant) -> str | None:
        return variant.inference_step.external_id if variant.inference_step_id else None

    def get_change(self, variant) -> ChangeSerializer(allow_null=True):
        return variant.change()

    def get_effective_config(self, variant) -> dict[str, dict]:
        return self.context["effective_configs"][variant.pk]


class VariantCreateSerializer(serializers.Serializer):
    parent = serializers.UUIDField()
    inference_step = serializers.CharField(max_length=200, help_text="External id of an in-scope step.")
    parameter = serializers.ChoiceField(choices=list(PARAMETERS))
    value = AnyJSONField()
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class ControlCreateSerializer(serializers.Serializer):
    is_control = serializers.BooleanField()
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)

    def validate_is_control(self, value):
        if value is not True:
            raise serializers.ValidationError(
                "Only true: a variant that changes something names parent, inference_step, parameter and value."
            )
        return value


# ---------------------------------------------------------------- pull mode (SPEC §8)


class PendingTestsInputSerializer(serializers.Serializer):
    max = serializers.IntegerField(min_value=1, max_value=pull.MAX_ITEMS, default=pull.DEFAULT_ITEMS, help_text="At most this many tests.")
    wait = serializers.FloatField(
        min_value=0,
        max_value=pull.MAX_WAIT_SECONDS,
        default=0,
        help_text="Long poll: when no test is due, wait up to this many seconds and answer as soon as one is.",
    )
    lease_seconds = serializers.IntegerField(
        min_value=1,
        max_value=pull.MAX_LEASE_SECONDS,
        required=False,
        help_text="How long the tests are yours (default: the application's timeout_seconds). Without a result by then, "
        "each is offered again (same testId, one more attempt).",
    )


class PendingTaskSerializer(serializers.Serializer):
    id = serializers.UUIDField(allow_null=True)
    externalId = serializers.CharField()
    input = serializers.DictField(child=AnyJSONField())


class PendingVariantSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    isBaseline = serializers.BooleanField()
    parentId = serializers.UUIDField(allow_null=True)
    change = ChangeSerializer(allow_null=True)


class PendingExperimentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    variant = PendingVariantSerializer()
    overrides = serializers.DictField(
        child=serializers.DictField(child=AnyJSONField()), help_text="The effective config of every in-scope step, keyed by step."
    )


class PendingTestSerializer(serializers.Serializer):
    """The `data` object of the outbound webhook body (SPEC §4)."""

    testId = serializers.UUIDField()
    repetition = serializers.IntegerField()
    callbackUrl = serializers.URLField(help_text="Where the result goes (SPEC §5): tests/{testId}/result/.")
    task = PendingTaskSerializer()
    experiment = PendingExperimentSerializer()


class PendingTestsSerializer(serializers.Serializer):
    tests = PendingTestSerializer(many=True)
    lease_until = serializers.DateTimeField(allow_null=True, help_text="When the lease of these tests ends.")


# ---------------------------------------------------------------- runs and tests


class MetricSummarySerializer(serializers.Serializer):
    count = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True)
    median = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)
    sum = serializers.FloatField(allow_null=True)


class StepDeltaSerializer(serializers.Serializer):
    """A variant's step figure minus the baseline's same step figure; null where either is missing."""

    latency_ms_mean = serializers.FloatField(allow_null=True)
    latency_ms_p95 = serializers.FloatField(allow_null=True)
    tokens_mean = serializers.FloatField(allow_null=True)
    cost_usd_mean = serializers.FloatField(allow_null=True)
    cost_usd_sum = serializers.FloatField(allow_null=True)


class StepAggregateSerializer(serializers.Serializer):
    """One inference step over a run's tests (SPEC §5 `steps`, aggregated per run)."""

    count = serializers.IntegerField(help_text="Tests that reported this step.")
    models = serializers.DictField(child=serializers.IntegerField(), help_text="Tests per reported model.")
    latency_ms = MetricSummarySerializer()
    prompt_tokens = MetricSummarySerializer()
    completion_tokens = MetricSummarySerializer()
    tokens = MetricSummarySerializer(help_text="prompt + completion tokens.")
    cost_usd = MetricSummarySerializer()
    delta = StepDeltaSerializer(required=False, help_text="Against the baseline's same step (variants only).")


class LiveSerializer(serializers.Serializer):
    done = serializers.IntegerField(help_text="Tasks compared so far.")
    total = serializers.IntegerField()
    delta_pp = serializers.FloatField(allow_null=True)
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    decided = serializers.ChoiceField(choices=["better", "worse"], allow_null=True)


class RunSerializer(serializers.ModelSerializer):
    webhook_url = serializers.CharField(read_only=True, help_text="Where this run's tests were sent; empty: the application's webhook_url.")
    dry_run = serializers.BooleanField(help_text="A dry run (variants/{id}/dry-run/): outside the lifecycle, never a result.")
    steps = serializers.SerializerMethodField(help_text="Per inference step over the run's tests; stored when the run ends.")
    live = serializers.SerializerMethodField(
        help_text="A variant run's always-valid confidence sequence on the paired difference with the baseline (SPEC §7); "
        "null for the baseline, dry runs and without a baseline result."
    )

    class Meta:
        model = Run
        fields = [
            "id",
            "experiment",
            "variant",
            "dry_run",
            "status",
            "total",
            "passed",
            "failed",
            "errored",
            "skipped",
            "stop_when_decided",
            "stopped_early",
            "started_at",
            "completed_at",
            "created_at",
            "webhook_url",
            "steps",
            "live",
        ]
        read_only_fields = fields

    @extend_schema_field(LiveSerializer(allow_null=True))
    def get_live(self, run):
        return live.summary(run)

    @extend_schema_field(serializers.DictField(child=StepAggregateSerializer()))
    def get_steps(self, run):
        return (run.aggregates or {}).get("steps", {})


class DryRunSerializer(serializers.Serializer):
    tasks = serializers.IntegerField(
        min_value=1, max_value=100, required=False, help_text="How many selected tasks to try, chosen at random (default 1)."
    )
    task_ids = serializers.ListField(
        child=serializers.UUIDField(), min_length=1, max_length=100, required=False, help_text="Or exactly these tasks (ids)."
    )


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "started_at", "status_code", "duration_ms", "error", "retry_at", "pulled"]
        read_only_fields = fields


class TestSerializer(serializers.ModelSerializer):
    input = AnyJSONField(source="task_input")
    expected = AnyJSONField(source="task_expected", allow_null=True)
    output = AnyJSONField(allow_null=True)
    passed = serializers.BooleanField(source="reported_passed", allow_null=True, help_text="What the application reported.")
    metrics = serializers.DictField(child=serializers.FloatField())
    evaluations = serializers.ListField(child=serializers.DictField(child=AnyJSONField()))
    delivery_attempts = DeliveryAttemptSerializer(many=True)
    callback_url = serializers.SerializerMethodField(help_text="Where the application posts this test's result (SPEC §5).")
    steps = StepsField()
    steps_out_of_scope = serializers.SerializerMethodField(
        help_text="Reported steps that are not in the run's scope: kept, but not one of the experiment's steps."
    )

    class Meta:
        model = Test
        fields = [
            "id",
            "run",
            "task",
            "task_external_id",
            "repetition",
            "input",
            "expected",
            "status",
            "attempts",
            "output",
            "passed",
            "metrics",
            "error",
            "trace_id",
            "evaluations",
            "steps",
            "steps_out_of_scope",
            "delivery_attempts",
            "callback_url",
            "created_at",
            "dispatched_at",
            "accepted_at",
            "result_due_at",
            "completed_at",
        ]
        read_only_fields = fields

    def get_callback_url(self, test) -> str:
        return webhooks.callback_url(test.pk)

    def get_steps_out_of_scope(self, test) -> list[str]:
        if not test.steps:
            return []
        scope = self.context.get("scope")
        if scope is None:  # a list passes its run's scope once; one test reads its own run's
            scope = test.run.config
        return step_detail.out_of_scope(test.steps, scope)


class RunWaitQuerySerializer(serializers.Serializer):
    wait = serializers.IntegerField(
        min_value=1, max_value=60, required=False, help_text="Long poll: wait up to this many seconds for the run to end."
    )


class VariantRunSerializer(serializers.Serializer):
    webhook_url = WebhookUrlField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="Send this run's tests here instead of the application's webhook_url (e.g. a preview deployment); same SSRF rules.",
    )
    stop_when_decided = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Stop sending new tests once the always-valid verdict against the baseline is settled; unsent tests are skipped.",
    )


TEST_LABELS = ("stable_pass", "stable_fail", "flaky", "improved", "regressed")


class TestQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=TestStatus.choices, required=False)
    label = serializers.ChoiceField(
        choices=TEST_LABELS,
        required=False,
        help_text="The tests of tasks with this label: stable_pass, stable_fail, flaky (over the task's repetitions), "
        "improved or regressed (against the baseline).",
    )


class RunQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)


class TaskQuerySerializer(serializers.Serializer):
    tag = serializers.CharField(max_length=100, required=False)


class ResultInputSerializer(serializers.Serializer):
    output = AnyJSONField(allow_null=True)
    passed = serializers.BooleanField(required=False, allow_null=True)
    metrics = MetricsField(child=serializers.FloatField(), required=False)
    error = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    traceId = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    steps = StepsField(required=False, allow_null=True)


# ---------------------------------------------------------------- results


class EvaluatorSummarySerializer(serializers.Serializer):
    passed = serializers.IntegerField()
    failed = serializers.IntegerField()
    pass_rate = serializers.FloatField(allow_null=True)


class VerdictSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=["better", "worse", "no_difference", "inconclusive", "pending"])
    text = serializers.CharField()


class WarningSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=["error_rate_mismatch", "identical_repetitions", "baseline_drift"])
    detail = serializers.CharField()


class GuardrailResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    baseline = serializers.FloatField(allow_null=True)
    variant = serializers.FloatField(allow_null=True)
    delta = serializers.FloatField(allow_null=True)
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    non_inferior = serializers.BooleanField()


class SplitHalfSerializer(serializers.Serializer):
    common = serializers.IntegerField()
    delta_pp = serializers.FloatField(allow_null=True)
    delta_ci_low = serializers.FloatField(allow_null=True)
    delta_ci_high = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    flip_rate = serializers.FloatField(allow_null=True)


class NoiseSerializer(serializers.Serializer):
    k = serializers.IntegerField(help_text="Repetitions per task.")
    between_var = serializers.FloatField(allow_null=True, help_text="Variance of the tasks' true pass rates.")
    within_var = serializers.FloatField(allow_null=True, help_text="Per-repetition variance within a task.")
    se = serializers.FloatField(allow_null=True, required=False, help_text="Standard error of delta (fraction).")
    se_floor = serializers.FloatField(allow_null=True, required=False, help_text="The standard error more repetitions cannot beat.")
    split_half = SplitHalfSerializer(allow_null=True, help_text="The run against itself: repetitions split in two halves (k ≥ 2).")
    flip_rate = serializers.FloatField(allow_null=True, help_text="The control: share of tasks whose outcome differs from the baseline.")


class ResultSerializer(serializers.Serializer):
    variant = serializers.UUIDField()
    name = serializers.CharField()
    parent = serializers.UUIDField(allow_null=True)
    is_baseline = serializers.BooleanField()
    change = ChangeSerializer(allow_null=True)
    run = serializers.UUIDField(allow_null=True)
    status = serializers.ChoiceField(choices=RunStatus.choices, allow_null=True)
    pass_rate = serializers.FloatField(allow_null=True)
    pass_rate_vs_baseline = serializers.FloatField(allow_null=True)
    delta_pp = serializers.FloatField(allow_null=True)
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    total = serializers.IntegerField(allow_null=True)
    passed = serializers.IntegerField(allow_null=True)
    failed = serializers.IntegerField(allow_null=True)
    errored = serializers.IntegerField(allow_null=True)
    improved = serializers.ListField(child=serializers.UUIDField(), help_text="Task ids that went fail → pass.")
    regressed = serializers.ListField(child=serializers.UUIDField(), help_text="Task ids that went pass → fail.")
    completed_at = serializers.DateTimeField(allow_null=True)
    metrics = serializers.DictField(child=MetricSummarySerializer())
    evaluators = serializers.DictField(child=EvaluatorSummarySerializer())
    cost_per_test = serializers.FloatField(allow_null=True, help_text="Mean cost (USD) of the tests that reported one; null when none did.")
    cost_per_passed = serializers.FloatField(
        allow_null=True, help_text="What the run spent (USD, as reported) per passed test; null without a reported cost or a passed test."
    )
    steps = serializers.DictField(child=StepAggregateSerializer(), help_text="Per inference step, with deltas against the baseline.")
    is_control = serializers.BooleanField(help_text="The control variant: the baseline configuration run again (SPEC §3).")
    delta_ci_low = serializers.FloatField(allow_null=True, help_text="(1 − alpha) interval of the paired delta_pp.")
    delta_ci_high = serializers.FloatField(allow_null=True)
    p_value_adjusted = serializers.FloatField(allow_null=True, help_text="Holm-adjusted over every variant compared with the baseline.")
    significant = serializers.BooleanField(help_text="p_value_adjusted < alpha.")
    verdict = VerdictSerializer(allow_null=True, help_text="null for the baseline.")
    mde_pp = serializers.FloatField(allow_null=True, help_text="The smallest difference (pp) this comparison detects with 80% power.")
    tasks_needed = serializers.IntegerField(allow_null=True, help_text="Tasks needed to detect the observed difference with 80% power.")
    flaky = serializers.IntegerField(allow_null=True, help_text="Tasks that passed in some but not all repetitions (null at k = 1).")
    pass_at_k = serializers.FloatField(allow_null=True)
    pass_hat_k = serializers.FloatField(allow_null=True)
    warnings = WarningSerializer(many=True)
    guardrails = GuardrailResultSerializer(many=True)
    ship = serializers.BooleanField(allow_null=True, help_text="Better and non-inferior on every guardrail; null without guardrails.")
    stopped_early = serializers.BooleanField(allow_null=True)
    skipped = serializers.IntegerField(allow_null=True)
    noise = NoiseSerializer(allow_null=True, help_text="Noise of the comparison (beyond SPEC §7): variance split, SE floor, A/A figures.")


class ResultsSerializer(serializers.Serializer):
    baseline = ResultSerializer()
    variants = ResultSerializer(many=True)


class MetricDeltaSerializer(serializers.Serializer):
    old = serializers.FloatField(allow_null=True)
    new = serializers.FloatField(allow_null=True)
    delta = serializers.FloatField(allow_null=True)


class CompareSerializer(serializers.Serializer):
    new_run = serializers.UUIDField()
    old_run = serializers.UUIDField()
    common = serializers.IntegerField()
    new_only = serializers.IntegerField()
    old_only = serializers.IntegerField()
    improved = serializers.ListField(child=serializers.UUIDField(), help_text="Task ids that went fail → pass.")
    regressed = serializers.ListField(child=serializers.UUIDField(), help_text="Task ids that went pass → fail.")
    p_value = serializers.FloatField(allow_null=True)
    delta_pp = serializers.FloatField(allow_null=True, help_text="Paired difference of pass rates over the common tasks (pp).")
    delta_ci_low = serializers.FloatField(allow_null=True)
    delta_ci_high = serializers.FloatField(allow_null=True)
    metrics = serializers.DictField(child=MetricDeltaSerializer())


# ---------------------------------------------------------------- API tokens


class TokenSerializer(serializers.ModelSerializer):
    """A token as listed: the readable prefix, never the hash."""

    class Meta:
        model = ApiToken
        fields = ["id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class TokenWithSecretSerializer(TokenSerializer):
    token = serializers.CharField(
        source="raw", read_only=True, help_text="The raw token. Shown only in this answer; only its hash is stored."
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class TokenInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    role = serializers.ChoiceField(choices=Role.choices, required=False, help_text="Defaults to editor.")


# ---------------------------------------------------------------- event endpoints (SPEC §4, §8)


class EventEndpointSerializer(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=EventType.choices))
    enabled = serializers.BooleanField(source="is_enabled", read_only=True)

    class Meta:
        model = EventEndpoint
        fields = [
            "id",
            "team",
            "application",
            "url",
            "events",
            "description",
            "enabled",
            "disabled_at",
            "disabled_reason",
            "failed_deliveries",
            "failing_since",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class EventEndpointWithSecretSerializer(EventEndpointSerializer):
    class Meta(EventEndpointSerializer.Meta):
        fields = [*EventEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class EventEndpointInputSerializer(serializers.Serializer):
    url = WebhookUrlField(max_length=2000, help_text="An http(s) URL; the SSRF rules of an application's webhook_url apply.")
    events = serializers.ListField(child=serializers.ChoiceField(choices=EventType.choices), min_length=1, max_length=len(EventType.values))
    application = serializers.UUIDField(required=False, allow_null=True, help_text="Null (default): every application of the team.")
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class EventEndpointUpdateSerializer(EventEndpointInputSerializer):
    enabled = serializers.BooleanField(required=False, help_text="true re-enables a disabled endpoint; false disables it.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, partial=True, **kwargs)


class EventAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = EventAttempt
        fields = ["number", "started_at", "status_code", "duration_ms", "error", "retry_at"]
        read_only_fields = fields


class EventDeliverySerializer(serializers.ModelSerializer):
    event = serializers.UUIDField(source="event_id")
    type = serializers.ChoiceField(source="event.type", choices=EventType.choices)
    webhook_id = serializers.CharField(source="event.webhook_id")
    payload = serializers.DictField(source="event.payload", child=AnyJSONField())
    attempt_log = EventAttemptSerializer(many=True)

    class Meta:
        model = EventDelivery
        fields = [
            "id",
            "endpoint",
            "event",
            "type",
            "webhook_id",
            "status",
            "manual",
            "attempts",
            "next_attempt_at",
            "last_error",
            "created_at",
            "completed_at",
            "payload",
            "attempt_log",
        ]
        read_only_fields = fields


# ---------------------------------------------------------------- gate and report (SPEC §8)


class GateQuerySerializer(serializers.Serializer):
    variant = serializers.UUIDField(help_text="The variant to judge.")
    max_regression_pp = serializers.FloatField(
        min_value=0, max_value=100, required=False, default=0.0, help_text="Tolerated drop in percentage points (default 0)."
    )
    alpha = serializers.FloatField(
        min_value=0.001, max_value=0.2, required=False, help_text="Significance level; default the experiment's."
    )


class GateSerializer(serializers.Serializer):
    # `pass` is a Python keyword: the field is declared below under its JSON name.
    reason = serializers.CharField()
    verdict = VerdictSerializer()
    variant = serializers.UUIDField()
    run = serializers.UUIDField(allow_null=True, help_text="The run judged: the variant's latest succeeded-or-failed run.")
    result = ResultSerializer(help_text="The variant's results row (R of SPEC §8).")


GateSerializer._declared_fields = {
    "pass": serializers.BooleanField(help_text="Whether the gate passes."),
    **GateSerializer._declared_fields,
}


class ReportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["json", "md", "csv"], required=False, default="json")
