"""The team's API tokens page: every member sees the list, admins issue (shown once) and revoke."""

import re

import pytest

from experiments_app.models import ApiToken, Membership, Role
from tests.factories import make_team
from webui.views.tokens import SESSION_NEW_TOKEN_KEY

pytestmark = pytest.mark.django_db

PAGE = "/teams/tokens/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def revoke_url(token):
    return f"/teams/tokens/{token.pk}/revoke/"


def shown_raw_token(html):
    match = re.search(r'id="token-value">([^<]+)<', html)
    return match.group(1) if match else None


def test_page_lists_the_current_teams_tokens(viewer):
    ApiToken.issue(viewer.team, role=Role.VIEWER, name="CI bot")
    hidden, _ = ApiToken.issue(make_team(), name="Elsewhere")
    response = viewer.get(PAGE)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and 'id="token-table"' in html
    assert "CI bot" in html and "Elsewhere" not in html and hidden.prefix not in html
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_htmx_request_gets_only_the_tokens_fragment(admin):
    token, _ = ApiToken.issue(admin.team, name="CI bot")
    html = admin.get(PAGE, **HTMX).content.decode()
    assert html.lstrip().startswith('<div id="tokens">')
    assert "<html" not in html and token.prefix in html


def test_page_never_shows_a_hash(admin):
    token, _ = ApiToken.issue(admin.team, name="CI bot")
    assert token.token_hash not in admin.get(PAGE).content.decode()


def test_non_admins_see_the_list_without_buttons(editor):
    ApiToken.issue(editor.team, name="CI bot")
    html = editor.get(PAGE).content.decode()
    assert "CI bot" in html
    assert "/revoke/" not in html and ">Revoke</button>" not in html
    assert "Issue token" not in html and 'id="new-token-form"' not in html


def test_admin_sees_the_form_and_a_revoke_button_with_confirmation(admin):
    token, _ = ApiToken.issue(admin.team, name="CI bot")
    html = admin.get(PAGE).content.decode()
    assert "Issue token" in html
    assert f'action="{revoke_url(token)}"' in html and "hx-confirm" in html


def test_admin_issue_redirects_and_the_next_page_shows_the_token_once(admin):
    response = admin.post(PAGE, {"name": "CI", "role": "viewer"})
    assert response.status_code == 302 and response["Location"] == PAGE
    assert shown_raw_token(response.content.decode()) is None
    shown = admin.get(PAGE)
    raw = shown_raw_token(shown.content.decode())
    token = ApiToken.find(raw)
    assert (token.team, token.role, token.name) == (admin.team, Role.VIEWER, "CI")
    assert "no-store" in shown["Cache-Control"]
    again = admin.get(PAGE)
    assert raw not in again.content.decode() and token.prefix in again.content.decode()
    assert "no-store" not in again.get("Cache-Control", "")


def test_refreshing_after_issuing_does_not_issue_a_second_token(admin):
    admin.post(PAGE, {"name": "CI", "role": "editor"}, follow=True)
    admin.get(PAGE)
    admin.get(PAGE)
    assert ApiToken.objects.count() == 1


def test_the_raw_token_leaves_the_session_once_shown(admin):
    admin.post(PAGE, {"name": "CI", "role": "editor"})
    assert SESSION_NEW_TOKEN_KEY in admin.session
    admin.get(PAGE)
    assert SESSION_NEW_TOKEN_KEY not in admin.session


def test_a_token_issued_for_one_team_is_not_shown_in_another(admin):
    other = make_team(name="Other team")
    Membership.objects.create(team=other, user=admin.user, role=Role.ADMIN)
    admin.post("/teams/switch/", {"team": str(admin.team.pk), "next": PAGE})
    admin.post(PAGE, {"name": "CI", "role": "editor"})
    assert ApiToken.objects.get().team == admin.team
    admin.post("/teams/switch/", {"team": str(other.pk), "next": PAGE})
    assert shown_raw_token(admin.get(PAGE).content.decode()) is None
    assert SESSION_NEW_TOKEN_KEY not in admin.session


def test_htmx_issue_answers_the_fragment_with_the_token(admin):
    response = admin.post(PAGE, {"name": "CI", "role": "editor"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert ApiToken.find(shown_raw_token(html)).role == Role.EDITOR
    assert "no-store" in response["Cache-Control"]
    assert SESSION_NEW_TOKEN_KEY not in admin.session
    assert shown_raw_token(admin.get(PAGE).content.decode()) is None


def test_issue_with_a_bad_role_is_a_form_error(admin):
    response = admin.post(PAGE, {"name": "CI", "role": "owner"})
    assert response.status_code == 400
    assert "errorlist" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_htmx_issue_with_a_long_name_answers_the_fragment_with_the_error(admin):
    response = admin.post(PAGE, {"name": "x" * 201, "role": "editor"}, **HTMX)
    assert response.status_code == 400
    assert "errorlist" in response.content.decode() and "<html" not in response.content.decode()
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("role_client", ["viewer", "editor"])
def test_non_admins_cannot_issue(request, role_client):
    client = request.getfixturevalue(role_client)
    assert client.post(PAGE, {"name": "CI", "role": "admin"}).status_code == 403
    assert not ApiToken.objects.exists()


def test_admin_revokes_a_token_and_it_stops_authenticating(admin):
    token, raw = ApiToken.issue(admin.team, name="CI bot")
    response = admin.post(revoke_url(token))
    assert response.status_code == 302 and response["Location"] == PAGE
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert ApiToken.find(raw) is None
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/applications/").status_code == 401


def test_htmx_revoke_answers_the_fragment_without_the_button(admin):
    token, _ = ApiToken.issue(admin.team, name="CI bot")
    response = admin.post(revoke_url(token), **HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<div id="tokens">')
    assert revoke_url(token) not in html


@pytest.mark.parametrize("role_client", ["viewer", "editor"])
def test_non_admins_cannot_revoke(request, role_client):
    client = request.getfixturevalue(role_client)
    token, raw = ApiToken.issue(client.team)
    assert client.post(revoke_url(token)).status_code == 403
    assert ApiToken.find(raw) is not None


def test_another_teams_token_cannot_be_revoked(admin, outsider):
    token, raw = ApiToken.issue(outsider.team)
    assert admin.post(revoke_url(token)).status_code == 404
    assert ApiToken.find(raw) is not None


def test_revoke_needs_post(admin):
    token, _ = ApiToken.issue(admin.team)
    assert admin.get(revoke_url(token)).status_code == 405


def test_the_page_follows_the_team_switcher(admin):
    other = make_team(name="Other team")
    Membership.objects.create(team=other, user=admin.user, role=Role.VIEWER)
    ApiToken.issue(other, name="Other bot")
    admin.post("/teams/switch/", {"team": str(other.pk), "next": PAGE})
    html = admin.get(PAGE).content.decode()
    assert "Other bot" in html and "Issue token" not in html
    assert admin.post(PAGE, {"name": "CI", "role": "editor"}).status_code == 403


def test_anonymous_users_are_sent_to_sign_in(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_applications_page_links_to_the_tokens_page(viewer):
    assert f'href="{PAGE}"' in viewer.get("/applications/").content.decode()
