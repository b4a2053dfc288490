"""API tokens: hashed at rest, only the prefix readable, printed once by the command."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIRequestFactory

from experiments_app.auth import BearerTokenAuthentication
from experiments_app.models import ApiToken, Role, Team
from tests.factories import make_team

pytestmark = pytest.mark.django_db


def authenticate(header):
    request = APIRequestFactory().get("/api/v1/experiments/", HTTP_AUTHORIZATION=header)
    from rest_framework.request import Request

    return BearerTokenAuthentication().authenticate(Request(request))


def test_raw_token_is_not_stored():
    token, raw = ApiToken.issue(make_team())
    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert raw not in {str(value) for value in stored.values()}
    assert stored["token_hash"] == ApiToken.hash(raw)
    assert stored["prefix"] == raw[: ApiToken.PREFIX_LENGTH]


def test_token_authenticates_with_its_team_and_role():
    team = make_team()
    _, raw = ApiToken.issue(team, role=Role.VIEWER)
    principal, _ = authenticate(f"Bearer {raw}")
    assert principal.team == team
    assert principal.role == Role.VIEWER


def test_wrong_token_does_not_authenticate():
    _, raw = ApiToken.issue(make_team())
    from rest_framework.exceptions import AuthenticationFailed

    with pytest.raises(AuthenticationFailed):
        authenticate(f"Bearer {raw}x")


def test_revoked_token_does_not_authenticate():
    token, raw = ApiToken.issue(make_team())
    from django.utils import timezone
    from rest_framework.exceptions import AuthenticationFailed

    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    with pytest.raises(AuthenticationFailed):
        authenticate(f"Bearer {raw}")


def test_missing_header_leaves_request_anonymous():
    request = APIRequestFactory().get("/")
    from rest_framework.request import Request

    assert BearerTokenAuthentication().authenticate(Request(request)) is None


def test_command_prints_the_token_alone_on_its_line():
    team = make_team(slug="acme")
    out = io.StringIO()
    call_command("create_api_token", "--team", "acme", "--role", "admin", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    token = ApiToken.find(lines[0])
    assert token.team == team
    assert token.role == Role.ADMIN


def test_command_creates_the_team_when_asked():
    out = io.StringIO()
    call_command("create_api_token", "--team", "newco", "--create-team", stdout=out)
    assert Team.objects.filter(slug="newco").exists()
    assert ApiToken.find(out.getvalue().strip()).role == Role.EDITOR


def test_command_refuses_unknown_team_with_exit_code_2():
    with pytest.raises(CommandError) as caught:
        call_command("create_api_token", "--team", "ghost", stdout=io.StringIO())
    assert caught.value.returncode == 2
    assert "ghost" in str(caught.value)
