"""A team's API tokens: issue one (the raw value is returned once) and revoke it."""

from django.db import transaction
from django.utils import timezone

from experiments_app.errors import ValidationFailed
from experiments_app.models import ApiToken, Role

MAX_NAME_LENGTH = 200


def issue_token(team, *, role=Role.EDITOR, name=""):
    """Create a token of `team`; return (ApiToken, raw). Raises ValidationFailed naming `role` or `name`."""
    errors = {}
    if not isinstance(role, str) or role not in Role.values:
        errors["role"] = f"Must be one of: {', '.join(Role.values)}."
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
        errors["name"] = f"Must be a string of at most {MAX_NAME_LENGTH} characters."
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        return ApiToken.issue(team, role=role, name=name.strip())


def revoke_token(token):
    """Revoke `token` so it no longer authenticates; return it.

    Revoking an already revoked token changes nothing (its first revocation time is kept),
    so a retried DELETE is harmless.
    """
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    return token
