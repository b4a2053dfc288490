"""API authentication: `Authorization: Bearer <token>` with team tokens hashed at rest."""

from django.utils import timezone
from rest_framework import authentication, exceptions

from experiments_app.models import ApiToken


class TokenPrincipal:
    """The identity a team API token gives: one team, one role, no user."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, token):
        self.token = token
        self.team = token.team
        self.role = token.role

    def __str__(self):
        return f"token {self.token.prefix}…"


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected `Bearer <token>`.")
        token = ApiToken.find(parts[1])
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return TokenPrincipal(token), token

    def authenticate_header(self, request):
        return self.keyword
