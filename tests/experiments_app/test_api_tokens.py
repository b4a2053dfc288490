"""API tokens through the API: admins of a team list, issue and revoke its tokens (an addition to SPEC §8)."""

import uuid

import pytest
from django.urls import reverse

from experiments_app import actions
from experiments_app.errors import ValidationFailed
from experiments_app.models import ApiToken, Membership, Role
from tests.api_fixtures import client_for
from tests.factories import make_team, make_user

pytestmark = pytest.mark.django_db

LIST = "/api/v1/tokens/"
FIELDS = {"id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at"}


def detail(token):
    return reverse("api:token-detail", kwargs={"id": token.pk})


# ---------------------------------------------------------------- actions


def test_issue_token_returns_a_token_that_authenticates(team):
    token, raw = actions.issue_token(team, role=Role.VIEWER, name="CI")
    assert ApiToken.find(raw) == token
    assert (token.team, token.role, token.name) == (team, Role.VIEWER, "CI")


def test_issue_token_rejects_an_unknown_role_naming_the_field(team):
    with pytest.raises(ValidationFailed) as caught:
        actions.issue_token(team, role="owner", name="CI")
    assert set(caught.value.errors) == {"role"}
    assert not ApiToken.objects.exists()


def test_issue_token_rejects_a_name_over_200_characters(team):
    with pytest.raises(ValidationFailed) as caught:
        actions.issue_token(team, role=Role.EDITOR, name="x" * 201)
    assert set(caught.value.errors) == {"name"}


def test_revoke_token_stops_it_authenticating(team):
    token, raw = actions.issue_token(team, role=Role.EDITOR, name="")
    actions.revoke_token(token)
    assert token.revoked_at is not None
    assert ApiToken.find(raw) is None


def test_revoking_twice_is_a_no_op_that_keeps_the_first_time(team):
    token, _ = actions.issue_token(team, role=Role.EDITOR, name="")
    first = actions.revoke_token(token).revoked_at
    again = actions.revoke_token(ApiToken.objects.get(pk=token.pk)).revoked_at
    assert again == first


# ---------------------------------------------------------------- list and create


def test_admin_lists_the_teams_tokens_without_their_hash(admin, team):
    ApiToken.issue(make_team(), role=Role.ADMIN)  # another team's token is not listed
    response = admin.get(LIST)
    assert response.status_code == 200
    rows = response.json()["results"]
    assert len(rows) == 1  # the admin's own token
    assert set(rows[0]) == FIELDS
    assert ApiToken.objects.get(pk=rows[0]["id"]).token_hash not in response.content.decode()


def test_admin_creates_a_token_and_sees_the_raw_value_in_that_answer_only(admin, team):
    response = admin.post(LIST, {"name": "CI", "role": "viewer"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == FIELDS | {"token"}
    token = ApiToken.find(body["token"])
    assert (str(token.pk), token.team, token.role, token.name) == (body["id"], team, Role.VIEWER, "CI")
    assert body["prefix"] == body["token"][: ApiToken.PREFIX_LENGTH]
    assert body["token"] not in admin.get(LIST).content.decode()
    assert body["token"] not in admin.get(detail(token)).content.decode()


def test_a_created_token_defaults_to_editor_and_works(admin):
    raw = admin.post(LIST, {}, format="json").json()["token"]
    new = client_for(raw)
    assert new.get("/api/v1/applications/").status_code == 200
    assert new.get(LIST).status_code == 403  # editor, not admin


def test_create_rejects_a_bad_role_naming_the_field(admin):
    response = admin.post(LIST, {"role": "owner"}, format="json")
    assert response.status_code == 400
    assert "role" in response.json()["errors"]


def test_create_rejects_a_long_name_naming_the_field(admin):
    response = admin.post(LIST, {"name": "x" * 201}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["errors"]


@pytest.mark.parametrize("method", ["get", "post"])
def test_list_and_create_answer_401_without_a_token(anonymous, method):
    response = getattr(anonymous, method)(LIST, {}, format="json")
    assert response.status_code == 401


@pytest.mark.parametrize("role_client", ["viewer", "editor"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_list_and_create_answer_403_below_admin(request, role_client, method):
    client = request.getfixturevalue(role_client)
    response = getattr(client, method)(LIST, {"name": "x"}, format="json")
    assert response.status_code == 403
    assert ApiToken.objects.count() == 1  # only the caller's own


def test_a_session_admin_in_two_teams_picks_the_team(client, team):
    other = make_team()
    user = make_user(team, Role.ADMIN)
    Membership.objects.create(team=other, user=user, role=Role.ADMIN)
    client.force_login(user)
    refused = client.post(LIST, {"name": "CI"}, content_type="application/json")
    assert refused.status_code == 400
    assert "team" in refused.json()["errors"]
    created = client.post(f"{LIST}?team={other.slug}", {"name": "CI"}, content_type="application/json")
    assert created.status_code == 201
    assert ApiToken.find(created.json()["token"]).team == other


def test_a_session_user_who_is_only_a_viewer_is_refused(client, team):
    client.force_login(make_user(team, Role.VIEWER))
    assert client.post(LIST, {"name": "CI"}, content_type="application/json").status_code == 403


# ---------------------------------------------------------------- detail and revoke


def test_admin_reads_one_token(admin, team):
    token, _ = ApiToken.issue(team, role=Role.VIEWER, name="CI")
    response = admin.get(detail(token))
    assert response.status_code == 200
    assert response.json()["name"] == "CI" and set(response.json()) == FIELDS


def test_admin_revokes_a_token_and_it_no_longer_authenticates(admin, team):
    token, raw = ApiToken.issue(team, role=Role.EDITOR)
    assert client_for(raw).get("/api/v1/applications/").status_code == 200
    response = admin.delete(detail(token))
    assert response.status_code == 204
    assert client_for(raw).get("/api/v1/applications/").status_code == 401
    listed = {row["id"]: row for row in admin.get(LIST).json()["results"]}
    assert listed[str(token.pk)]["revoked_at"] is not None


def test_revoking_twice_answers_204_again(admin, team):
    token, _ = ApiToken.issue(team)
    assert admin.delete(detail(token)).status_code == 204
    assert admin.delete(detail(token)).status_code == 204


def test_an_admin_may_revoke_its_own_token(team):
    token, raw = ApiToken.issue(team, role=Role.ADMIN)
    own = client_for(raw)
    assert own.delete(detail(token)).status_code == 204
    assert own.get(LIST).status_code == 401


@pytest.mark.parametrize("method", ["get", "delete"])
def test_another_teams_token_answers_404(stranger, team, method):
    token, raw = ApiToken.issue(team)
    assert getattr(stranger, method)(detail(token)).status_code == 404
    assert ApiToken.find(raw) is not None


@pytest.mark.parametrize("role_client", ["viewer", "editor"])
@pytest.mark.parametrize("method", ["get", "delete"])
def test_detail_answers_403_below_admin(request, team, role_client, method):
    token, raw = ApiToken.issue(team)
    response = getattr(request.getfixturevalue(role_client), method)(detail(token))
    assert response.status_code == 403
    assert ApiToken.find(raw) is not None


@pytest.mark.parametrize("method", ["get", "delete"])
def test_detail_answers_401_without_a_token(anonymous, team, method):
    token, _ = ApiToken.issue(team)
    assert getattr(anonymous, method)(detail(token)).status_code == 401


def test_an_unknown_token_id_answers_404(admin):
    assert admin.get(f"{LIST}{uuid.uuid4()}/").status_code == 404
