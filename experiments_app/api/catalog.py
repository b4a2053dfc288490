"""Applications, their inference steps and their tasks."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from experiments_app import actions
from experiments_app.api.base import ApiViewSet, query, validated
from experiments_app.models import Application, InferenceStep, Role, Task
from experiments_app.permissions import acting_team, get_visible, require_role, scoped
from experiments_app.runs import health
from experiments_app.serializers import (
    ApplicationInputSerializer,
    ApplicationSerializer,
    ApplicationWithSecretSerializer,
    CreatedCountSerializer,
    PingSerializer,
    StepInputSerializer,
    StepSerializer,
    TaskInputSerializer,
    TaskQuerySerializer,
    TaskSerializer,
)

NO_CONTENT = OpenApiResponse(description="Deleted.")


@extend_schema(tags=["applications"])
class ApplicationViewSet(ApiViewSet):
    serializer_class = ApplicationSerializer

    def load(self, pk):
        return get_visible(self.request, Application.objects.all(), pk)

    @extend_schema(responses=ApplicationSerializer)
    def list(self, request):
        return self.paginated(scoped(request, Application.objects.order_by("name", "pk")), ApplicationSerializer)

    @extend_schema(request=ApplicationInputSerializer, responses={201: ApplicationWithSecretSerializer})
    def create(self, request):
        team = acting_team(request, Role.ADMIN)
        application = actions.create_application(team, validated(ApplicationInputSerializer, request.data))
        return Response(ApplicationWithSecretSerializer(application).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ApplicationSerializer)
    def retrieve(self, request, id):
        return Response(ApplicationSerializer(self.load(id)).data)

    @extend_schema(request=ApplicationInputSerializer(partial=True), responses=ApplicationSerializer)
    def partial_update(self, request, id):
        application = self.load(id)
        require_role(request, application.team_id, Role.ADMIN)
        data = validated(ApplicationInputSerializer, request.data, partial=True)
        return Response(ApplicationSerializer(actions.update_application(application, data)).data)

    @extend_schema(responses={204: NO_CONTENT})
    def destroy(self, request, id):
        application = self.load(id)
        require_role(request, application.team_id, Role.ADMIN)
        actions.delete_application(application)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=ApplicationWithSecretSerializer)
    def rotate_secret(self, request, id):
        application = self.load(id)
        require_role(request, application.team_id, Role.ADMIN)
        application.rotate_secret()
        return Response(ApplicationWithSecretSerializer(application).data)

    @extend_schema(
        request=None, responses=ApplicationSerializer, description="Re-enable an application disabled after failing every delivery."
    )
    def enable(self, request, id):
        application = self.load(id)
        require_role(request, application.team_id, Role.ADMIN)
        return Response(ApplicationSerializer(health.enable_application(application)).data)

    @extend_schema(request=None, responses=PingSerializer)
    def ping(self, request, id):
        application = self.load(id)
        require_role(request, application.team_id, Role.EDITOR)
        return Response(PingSerializer(actions.ping_application(application)).data)


class ApplicationChildViewSet(ApiViewSet):
    """Steps and tasks: read with any role, changed by editors."""

    model = None

    def load_application(self, application_id, needed=Role.VIEWER):
        application = get_visible(self.request, Application.objects.all(), application_id)
        require_role(self.request, application.team_id, needed)
        return application

    def load(self, application_id, pk, needed=Role.VIEWER):
        application = self.load_application(application_id, needed)
        obj = self.model.objects.filter(application=application, pk=pk).first()
        if obj is None:
            raise NotFound()
        return obj


@extend_schema(tags=["inference steps"])
class StepViewSet(ApplicationChildViewSet):
    model = InferenceStep
    serializer_class = StepSerializer

    @extend_schema(responses=StepSerializer)
    def list(self, request, id):
        application = self.load_application(id)
        return self.paginated(application.inference_steps.order_by("external_id", "pk"), StepSerializer)

    @extend_schema(request=StepInputSerializer, responses={201: StepSerializer})
    def create(self, request, id):
        application = self.load_application(id, Role.EDITOR)
        step = actions.create_step(application, validated(StepInputSerializer, request.data))
        return Response(StepSerializer(step).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=StepSerializer)
    def retrieve(self, request, id, step_id):
        return Response(StepSerializer(self.load(id, step_id)).data)

    @extend_schema(request=StepInputSerializer(partial=True), responses=StepSerializer)
    def partial_update(self, request, id, step_id):
        step = self.load(id, step_id, Role.EDITOR)
        data = validated(StepInputSerializer, request.data, partial=True)
        return Response(StepSerializer(actions.update_step(step, data)).data)

    @extend_schema(responses={204: NO_CONTENT})
    def destroy(self, request, id, step_id):
        actions.delete_step(self.load(id, step_id, Role.EDITOR))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["tasks"])
class TaskViewSet(ApplicationChildViewSet):
    model = Task
    serializer_class = TaskSerializer

    @extend_schema(parameters=[TaskQuerySerializer], responses=TaskSerializer)
    def list(self, request, id):
        application = self.load_application(id)
        tasks = application.tasks.order_by("external_id", "pk")
        tag = query(request, TaskQuerySerializer).get("tag")
        if tag:
            tasks = tasks.with_tag(tag)
        return self.paginated(tasks, TaskSerializer)

    @extend_schema(request=TaskInputSerializer, responses={201: TaskSerializer})
    def create(self, request, id):
        application = self.load_application(id, Role.EDITOR)
        task = actions.create_task(application, validated(TaskInputSerializer, request.data))
        return Response(TaskSerializer(task).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=TaskInputSerializer(many=True),
        responses={201: CreatedCountSerializer},
        description="Create up to 10,000 tasks at once, all or nothing. Errors name rows: `tasks[3].input`.",
    )
    def bulk(self, request, id):
        application = self.load_application(id, Role.EDITOR)
        rows = request.data
        if isinstance(rows, dict) and set(rows) == {"tasks"}:
            rows = rows["tasks"]
        created = actions.import_tasks(application, rows)
        return Response({"created": created}, status=status.HTTP_201_CREATED)

    @extend_schema(responses=TaskSerializer)
    def retrieve(self, request, id, task_id):
        return Response(TaskSerializer(self.load(id, task_id)).data)

    @extend_schema(request=TaskInputSerializer(partial=True), responses=TaskSerializer)
    def partial_update(self, request, id, task_id):
        task = self.load(id, task_id, Role.EDITOR)
        data = validated(TaskInputSerializer, request.data, partial=True)
        return Response(TaskSerializer(actions.update_task(task, data)).data)

    @extend_schema(responses={204: NO_CONTENT})
    def destroy(self, request, id, task_id):
        actions.delete_task(self.load(id, task_id, Role.EDITOR))
        return Response(status=status.HTTP_204_NO_CONTENT)
