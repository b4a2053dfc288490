"""Experiments: settings, scope, baseline, lifecycle, results; and the variant tree."""

from django.db.models import OuterRef, Prefetch, Subquery
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from experiments_app import actions, decisions, report, results, runs
from experiments_app.api.base import ApiViewSet, query, validated
from experiments_app.api.renderers import CSVRenderer, FastJSONRenderer, MarkdownRenderer
from experiments_app.errors import ValidationFailed
from experiments_app.models import Application, Experiment, InferenceStep, Role, Run, Task, Variant
from experiments_app.permissions import get_visible, require_role, scoped
from experiments_app.schema_fields import VARIANT_CREATE_SCHEMA
from experiments_app.serializers import (
    BaselineSerializer,
    CompleteSerializer,
    ControlCreateSerializer,
    DryRunSerializer,
    ExperimentCreateSerializer,
    ExperimentQuerySerializer,
    ExperimentSerializer,
    ExperimentUpdateSerializer,
    GateQuerySerializer,
    GateSerializer,
    ReportQuerySerializer,
    ResultsSerializer,
    RunQuerySerializer,
    RunSerializer,
    VariantCreateSerializer,
    VariantRunSerializer,
    VariantSerializer,
)


def experiment_queryset():
    baseline = Variant.objects.filter(experiment=OuterRef("pk"), parent__isnull=True).values("pk")[:1]
    return Experiment.objects.annotate(baseline_id=Subquery(baseline)).prefetch_related(
        Prefetch("inference_steps", queryset=InferenceStep.objects.only("id", "external_id").order_by("external_id")),
        Prefetch("tasks", queryset=Task.objects.only("id", "external_id").order_by("external_id")),
    )


def effective_configs(variants, baseline_config):
    """{variant id: effective config} for variants of one experiment, without a query per ancestor."""
    by_id = {variant.pk: variant for variant in variants}
    for variant in variants:
        if variant.parent_id in by_id:
            variant.parent = by_id[variant.parent_id]
    return {variant.pk: actions.variant_effective_config(variant, baseline_config) for variant in variants}


def variant_response(variant, *, status_code=200):
    baseline = variant.experiment.variants.get(parent__isnull=True)
    chain = list(variant.experiment.variants.select_related("inference_step"))
    configs = effective_configs(chain, baseline.config or {})
    return Response(VariantSerializer(variant, context={"effective_configs": configs}).data, status=status_code)


@extend_schema(tags=["experiments"])
class ExperimentViewSet(ApiViewSet):
    serializer_class = ExperimentSerializer

    def load(self, pk, needed=Role.VIEWER, queryset=None):
        # Only the experiment's own representation needs its steps and tasks prefetched
        # (thousands of rows); every other route loads the row alone.
        self.experiment = get_visible(self.request, Experiment.objects.all() if queryset is None else queryset, pk)
        require_role(self.request, self.experiment.team_id, needed)
        return self.experiment

    def answer(self, experiment, status_code=200):
        fresh = experiment_queryset().get(pk=experiment.pk)
        return Response(ExperimentSerializer(fresh).data, status=status_code)

    @extend_schema(parameters=[ExperimentQuerySerializer], responses=ExperimentSerializer)
    def list(self, request):
        experiments = scoped(request, experiment_queryset()).order_by("-created_at", "pk")
        wanted = query(request, ExperimentQuerySerializer).get("status")
        if wanted:
            experiments = experiments.filter(status=wanted)
        return self.paginated(experiments, ExperimentSerializer)

    @extend_schema(request=ExperimentCreateSerializer, responses={201: ExperimentSerializer})
    def create(self, request):
        data = validated(ExperimentCreateSerializer, request.data)
        application = scoped(request, Application.objects.all()).filter(pk=data["application"]).first()
        if application is None:
            raise ValidationFailed({"application": "No such application in your teams."})
        require_role(request, application.team_id, Role.EDITOR)
        experiment = actions.create_experiment(application, name=data["name"], description=data.get("description", ""), by=request.user)
        return self.answer(experiment, status.HTTP_201_CREATED)

    @extend_schema(responses=ExperimentSerializer)
    def retrieve(self, request, id):
        return Response(ExperimentSerializer(self.load(id, queryset=experiment_queryset())).data)

    @extend_schema(request=ExperimentUpdateSerializer, responses=ExperimentSerializer)
    def partial_update(self, request, id):
        experiment = self.load(id, Role.EDITOR)
        changes = dict(validated(ExperimentUpdateSerializer, request.data))
        actions.update_experiment(experiment, by=request.user, **changes)
        return self.answer(experiment)

    @extend_schema(responses={204: OpenApiResponse(description="Deleted.")})
    def destroy(self, request, id):
        actions.delete_experiment(self.load(id, Role.EDITOR))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["GET"], responses=BaselineSerializer)
    @extend_schema(methods=["PUT"], request=BaselineSerializer, responses=BaselineSerializer)
    def baseline(self, request, id):
        experiment = self.load(id, Role.EDITOR if request.method == "PUT" else Role.VIEWER)
        if request.method == "PUT":
            baseline = actions.set_baseline_config(experiment, validated(BaselineSerializer, request.data)["config"], by=request.user)
        else:
            baseline = experiment.variants.get(parent__isnull=True)
        return Response(BaselineSerializer(baseline).data)

    @extend_schema(request=None, responses={202: RunSerializer})
    def run_baseline(self, request, id):
        run = runs.start_baseline_run(self.load(id, Role.EDITOR), by=request.user)
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=ResultsSerializer)
    def results(self, request, id):
        return Response(results.experiment_results(self.load(id), task_ids="json"))

    @extend_schema(
        parameters=[GateQuerySerializer],
        responses=GateSerializer,
        description="Pass or fail for one variant, with the reason: fails when its latest result is significantly worse than "
        "the baseline, or worse by more than `max_regression_pp` at the upper confidence bound of its difference (its point "
        "estimate where the results carry no interval), or when it has no result.",
    )
    def gate(self, request, id):
        experiment = self.load(id)
        asked = query(request, GateQuerySerializer)
        table = results.experiment_results(experiment)
        row = next((row for row in table["variants"] if row["variant"] == str(asked["variant"])), None)
        if row is None:
            raise ValidationFailed({"variant": "Must be a variant of this experiment (not the baseline)."})
        judgement = decisions.judge(
            row,
            alpha=asked.get("alpha"),
            default_alpha=decisions.experiment_alpha(experiment),
            max_regression_pp=asked["max_regression_pp"],
        )
        body = {"pass": judgement.passed, "reason": judgement.reason, "verdict": judgement.verdict, "variant": row["variant"]}
        return Response({**body, "run": row["run"], "result": row})

    @extend_schema(
        parameters=[ReportQuerySerializer],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/markdown"): OpenApiTypes.STR,
            (200, "text/csv"): OpenApiTypes.STR,
        },
        description="The decision report: hypothesis, scope and lock time, each variant's configuration diff against its "
        "parent and the baseline, pass rate and Δ with intervals, adjusted p and verdict, flipped tasks with links, metric "
        "and guardrail trade-offs, warnings, and the winner with who picked it and when. `?format=md` is GitHub Markdown, "
        "`?format=csv` one row per variant.",
    )
    def report(self, request, id):
        experiment = self.load(id)
        query(request, ReportQuerySerializer)
        data = report.build_report(experiment)
        fmt = request.accepted_renderer.format
        if fmt == "md":
            return Response(report.to_markdown(data), content_type="text/markdown; charset=utf-8")
        if fmt == "csv":
            response = Response(report.to_csv(data), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="experiment-{experiment.pk}-report.csv"'
            return response
        return Response(data)

    def get_renderers(self):
        if getattr(self, "action", None) == "report":
            return [FastJSONRenderer(), MarkdownRenderer(), CSVRenderer()]
        return super().get_renderers()

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if getattr(self.request, "accepted_renderer", None) is not None and self.request.accepted_renderer.format != "json":
            # An error answers JSON ({"code", "detail"}), whatever format the report was asked in.
            self.request.accepted_renderer, self.request.accepted_media_type = FastJSONRenderer(), "application/json"
        return response

    @extend_schema(request=None, responses=ExperimentSerializer)
    def reopen(self, request, id):
        return self.answer(actions.reopen_experiment(self.load(id, Role.EDITOR), by=request.user))

    @extend_schema(request=CompleteSerializer, responses=ExperimentSerializer)
    def complete(self, request, id):
        experiment = self.load(id, Role.EDITOR)
        winner_id = validated(CompleteSerializer, request.data).get("winner")
        winner = None
        if winner_id is not None:
            winner = experiment.variants.filter(pk=winner_id).first()
            if winner is None:
                raise ValidationFailed({"winner": "Must be a variant of this experiment."})
        return self.answer(actions.complete_experiment(experiment, winner=winner, by=request.user))

    @extend_schema(request=None, responses=ExperimentSerializer)
    def archive(self, request, id):
        return self.answer(actions.archive_experiment(self.load(id, Role.EDITOR), by=request.user))


@extend_schema(tags=["runs"])
class ExperimentRunViewSet(ApiViewSet):
    serializer_class = RunSerializer

    @extend_schema(parameters=[RunQuerySerializer], responses=RunSerializer)
    def list(self, request, id):
        self.experiment = get_visible(request, Experiment.objects.all(), id)
        runs = Run.objects.filter(experiment=self.experiment).order_by("-created_at", "pk")
        wanted = query(request, RunQuerySerializer).get("status")
        if wanted:
            runs = runs.filter(status=wanted)
        return self.paginated(runs, RunSerializer)


@extend_schema(tags=["variants"])
class VariantViewSet(ApiViewSet):
    serializer_class = VariantSerializer

    def load_experiment(self, pk, needed=Role.VIEWER):
        self.experiment = get_visible(self.request, Experiment.objects.all(), pk)
        require_role(self.request, self.experiment.team_id, needed)
        return self.experiment

    def load(self, pk, needed=Role.VIEWER):
        queryset = Variant.objects.select_related("experiment", "inference_step")
        variant = get_visible(self.request, queryset, pk, team_field="experiment__team")
        self.experiment = variant.experiment
        require_role(self.request, variant.experiment.team_id, needed)
        return variant

    @extend_schema(responses=VariantSerializer)
    def list(self, request, id):
        experiment = self.load_experiment(id)
        variants = list(experiment.variants.select_related("inference_step").order_by("created_at", "pk"))
        baseline = next((variant for variant in variants if variant.is_baseline), None)
        configs = effective_configs(variants, (baseline.config if baseline else None) or {})
        return self.paginated(variants, VariantSerializer, effective_configs=configs)

    @extend_schema(request=VARIANT_CREATE_SCHEMA, responses={201: VariantSerializer})
    def create(self, request, id):
        experiment = self.load_experiment(id, Role.EDITOR)
        if isinstance(request.data, dict) and "is_control" in request.data:
            control = validated(ControlCreateSerializer, request.data)
            variant = actions.create_control_variant(experiment, name=control.get("name", ""), by=request.user)
            return variant_response(variant, status_code=status.HTTP_201_CREATED)
        data = validated(VariantCreateSerializer, request.data)
        parent = experiment.variants.filter(pk=data["parent"]).first()
        if parent is None:
            raise ValidationFailed({"parent": "Must be a variant of this experiment."})
        variant = actions.create_variant(
            experiment,
            parent=parent,
            inference_step=data["inference_step"],
            parameter=data["parameter"],
            value=data["value"],
            name=data.get("name", ""),
            by=request.user,
        )
        return variant_response(variant, status_code=status.HTTP_201_CREATED)

    @extend_schema(responses=VariantSerializer)
    def retrieve(self, request, id):
        return variant_response(self.load(id))

    @extend_schema(responses={204: OpenApiResponse(description="Deleted.")})
    def destroy(self, request, id):
        actions.delete_variant(self.load(id, Role.EDITOR))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=VariantRunSerializer, responses={202: RunSerializer})
    def run(self, request, id):
        variant = self.load(id, Role.EDITOR)
        data = validated(VariantRunSerializer, request.data or {})
        run = runs.start_variant_run(
            variant, by=request.user, webhook_url=data.get("webhook_url", ""), stop_when_decided=data.get("stop_when_decided", False)
        )
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=DryRunSerializer,
        responses={202: RunSerializer},
        description="Try the variant (or the baseline, also before it has run) on a few tasks: `tasks` chosen at random "
        "among the selected ones (default 1) or exactly `task_ids`, once each. Allowed in every status but archived and "
        "beside another run; the run is marked `dry_run`, never moves the lifecycle and is never a result.",
    )
    def dry_run(self, request, id):
        variant = self.load(id, Role.EDITOR)
        data = validated(DryRunSerializer, request.data)
        run = runs.start_dry_run(variant, tasks=data.get("tasks"), task_ids=data.get("task_ids"), by=request.user)
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
