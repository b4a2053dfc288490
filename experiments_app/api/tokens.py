"""A team's API tokens, managed by its admins. The raw token appears once, in the answer to POST."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from experiments_app import actions
from experiments_app.api.base import ApiViewSet, validated
from experiments_app.models import ApiToken, Role
from experiments_app.permissions import acting_team, get_visible, require_role
from experiments_app.serializers import TokenInputSerializer, TokenSerializer, TokenWithSecretSerializer

TEAM_NOTE = "A session user in several teams picks one with `?team=<slug>` or an `X-Team` header."


@extend_schema(tags=["tokens"])
class TokenViewSet(ApiViewSet):
    serializer_class = TokenSerializer

    def load(self, pk):
        token = get_visible(self.request, ApiToken.objects.select_related("team"), pk)
        require_role(self.request, token.team_id, Role.ADMIN)
        return token

    @extend_schema(responses=TokenSerializer, description=f"The team's tokens, revoked ones included (admin). {TEAM_NOTE}")
    def list(self, request):
        team = acting_team(request, Role.ADMIN)
        return self.paginated(ApiToken.objects.filter(team=team).order_by("-created_at", "pk"), TokenSerializer)

    @extend_schema(
        request=TokenInputSerializer,
        responses={201: TokenWithSecretSerializer},
        description=f"Issue a token (admin). `token` is shown only in this answer. {TEAM_NOTE}",
    )
    def create(self, request):
        team = acting_team(request, Role.ADMIN)
        data = validated(TokenInputSerializer, request.data)
        token, raw = actions.issue_token(team, role=data.get("role", Role.EDITOR), name=data.get("name", ""))
        token.raw = raw
        return Response(TokenWithSecretSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=TokenSerializer)
    def retrieve(self, request, id):
        return Response(TokenSerializer(self.load(id)).data)

    @extend_schema(
        responses={204: OpenApiResponse(description="Revoked (again: no change).")},
        description="Revoke the token (admin); it stays listed with `revoked_at`.",
    )
    def destroy(self, request, id):
        actions.revoke_token(self.load(id))
        return Response(status=status.HTTP_204_NO_CONTENT)
