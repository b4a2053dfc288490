"""Event endpoints (SPEC §4, §8): a team's admins register them; deliveries are listed with their attempts."""

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from experiments_app.api.base import ApiViewSet, validated
from experiments_app.events import endpoints
from experiments_app.models import EventAttempt, EventDelivery, EventEndpoint, Role
from experiments_app.permissions import acting_team, get_visible, require_role, scoped
from experiments_app.serializers import (
    EventDeliverySerializer,
    EventEndpointInputSerializer,
    EventEndpointSerializer,
    EventEndpointUpdateSerializer,
    EventEndpointWithSecretSerializer,
)

TEAM_NOTE = "A session user in several teams picks one with `?team=<slug>` or an `X-Team` header."


def delivery_queryset():
    return EventDelivery.objects.select_related("event").prefetch_related(
        Prefetch("attempt_log", queryset=EventAttempt.objects.order_by("number"))
    )


@extend_schema(tags=["event endpoints"])
class EventEndpointViewSet(ApiViewSet):
    serializer_class = EventEndpointSerializer

    def load(self, pk, needed=Role.ADMIN):
        endpoint = get_visible(self.request, EventEndpoint.objects.select_related("team"), pk)
        require_role(self.request, endpoint.team_id, needed)
        return endpoint

    @extend_schema(responses=EventEndpointSerializer, description=f"The team's event endpoints. {TEAM_NOTE}")
    def list(self, request):
        return self.paginated(scoped(request, EventEndpoint.objects.order_by("created_at", "pk")), EventEndpointSerializer)

    @extend_schema(
        request=EventEndpointInputSerializer,
        responses={201: EventEndpointWithSecretSerializer},
        description=f"Register an endpoint (admin). Its `secret` (`whsec_…`) is shown only in this answer and after a rotation. {TEAM_NOTE}",
    )
    def create(self, request):
        team = acting_team(request, Role.ADMIN)
        endpoint = endpoints.create_endpoint(team, dict(validated(EventEndpointInputSerializer, request.data)))
        return Response(EventEndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=EventEndpointSerializer)
    def retrieve(self, request, id):
        return Response(EventEndpointSerializer(self.load(id, Role.VIEWER)).data)

    @extend_schema(request=EventEndpointUpdateSerializer, responses=EventEndpointSerializer)
    def partial_update(self, request, id):
        endpoint = self.load(id)
        data = dict(validated(EventEndpointUpdateSerializer, request.data))
        return Response(EventEndpointSerializer(endpoints.update_endpoint(endpoint, data)).data)

    @extend_schema(responses={204: OpenApiResponse(description="Deleted, with its deliveries.")})
    def destroy(self, request, id):
        endpoints.delete_endpoint(self.load(id))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=None, responses=EventEndpointWithSecretSerializer, description="A new secret (admin); the old one signs nothing more."
    )
    def rotate_secret(self, request, id):
        return Response(EventEndpointWithSecretSerializer(endpoints.rotate_secret(self.load(id))).data)

    @extend_schema(
        request=None,
        responses={202: EventDeliverySerializer},
        description="Send the delivery's event again (admin), even to a disabled endpoint: a new delivery with the same `webhook-id`.",
    )
    def redeliver(self, request, id, delivery_id):
        endpoint = self.load(id)
        delivery = EventDelivery.objects.filter(endpoint=endpoint, pk=delivery_id).first()
        if delivery is None:
            raise NotFound()
        again = endpoints.redeliver(delivery)
        return Response(EventDeliverySerializer(delivery_queryset().get(pk=again.pk)).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["event endpoints"])
class EventDeliveryViewSet(EventEndpointViewSet):
    serializer_class = EventDeliverySerializer

    @extend_schema(responses=EventDeliverySerializer, description="Each event delivery of the endpoint, newest first, with its attempts.")
    def list(self, request, id):
        endpoint = self.load(id, Role.VIEWER)
        return self.paginated(delivery_queryset().filter(endpoint=endpoint).order_by("-created_at", "pk"), EventDeliverySerializer)
