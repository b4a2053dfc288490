"""Every route: 401 without a token, 404 for another team, 403 for a viewer where it writes."""

import uuid

import pytest
from django.urls import reverse

from experiments_app.models import ApiToken, Role
from tests.api_fixtures import client_for
from tests.factories import make_team, make_token, make_user

# (method, url name, kwargs from the world, needed role)
ROUTES = [
    ("get", "application-list", {}, None),
    ("post", "application-list", {}, Role.ADMIN),
    ("get", "application-detail", {"id": "application"}, Role.VIEWER),
    ("patch", "application-detail", {"id": "application"}, Role.ADMIN),
    ("delete", "application-detail", {"id": "application"}, Role.ADMIN),
    ("post", "application-rotate-secret", {"id": "application"}, Role.ADMIN),
    ("post", "application-ping", {"id": "application"}, Role.EDITOR),
    ("get", "step-list", {"id": "application"}, Role.VIEWER),
    ("post", "step-list", {"id": "application"}, Role.EDITOR),
    ("get", "step-detail", {"id": "application", "step_id": "step"}, Role.VIEWER),
    ("patch", "step-detail", {"id": "application", "step_id": "step"}, Role.EDITOR),
    ("delete", "step-detail", {"id": "application", "step_id": "step"}, Role.EDITOR),
    ("get", "task-list", {"id": "application"}, Role.VIEWER),
    ("post", "task-list", {"id": "application"}, Role.EDITOR),
    ("post", "task-bulk", {"id": "application"}, Role.EDITOR),
    ("get", "task-detail", {"id": "application", "task_id": "task"}, Role.VIEWER),
    ("patch", "task-detail", {"id": "application", "task_id": "task"}, Role.EDITOR),
    ("delete", "task-detail", {"id": "application", "task_id": "task"}, Role.EDITOR),
    ("get", "experiment-list", {}, None),
    ("post", "experiment-list", {}, None),
    ("get", "experiment-detail", {"id": "experiment"}, Role.VIEWER),
    ("patch", "experiment-detail", {"id": "experiment"}, Role.EDITOR),
    ("delete", "experiment-detail", {"id": "experiment"}, Role.EDITOR),
    ("get", "experiment-baseline", {"id": "experiment"}, Role.VIEWER),
    ("put", "experiment-baseline", {"id": "experiment"}, Role.EDITOR),
    ("post", "experiment-run-baseline", {"id": "experiment"}, Role.EDITOR),
    ("get", "experiment-results", {"id": "experiment"}, Role.VIEWER),
    ("get", "experiment-runs", {"id": "experiment"}, Role.VIEWER),
    ("post", "experiment-reopen", {"id": "experiment"}, Role.EDITOR),
    ("post", "experiment-complete", {"id": "experiment"}, Role.EDITOR),
    ("post", "experiment-archive", {"id": "experiment"}, Role.EDITOR),
    ("get", "variant-list", {"id": "experiment"}, Role.VIEWER),
    ("post", "variant-list", {"id": "experiment"}, Role.EDITOR),
    ("get", "variant-detail", {"id": "variant"}, Role.VIEWER),
    ("delete", "variant-detail", {"id": "variant"}, Role.EDITOR),
    ("post", "variant-run", {"id": "variant"}, Role.EDITOR),
    ("get", "run-detail", {"id": "run"}, Role.VIEWER),
    ("get", "run-tests", {"id": "run"}, Role.VIEWER),
    ("post", "run-cancel", {"id": "run"}, Role.EDITOR),
    ("get", "run-compare", {"new": "run", "old": "run"}, Role.VIEWER),
    ("get", "test-detail", {"id": "test"}, Role.VIEWER),
    ("post", "test-result", {"id": "test"}, None),
    ("get", "token-list", {}, Role.ADMIN),
    ("post", "token-list", {}, Role.ADMIN),
    ("get", "token-detail", {"id": "token"}, Role.ADMIN),
    ("delete", "token-detail", {"id": "token"}, Role.ADMIN),
]
IDS = [f"{method} {name}" for method, name, _, _ in ROUTES]


def url_of(world, name, kwargs):
    return reverse(f"api:{name}", kwargs={key: getattr(world, attr).pk for key, attr in kwargs.items()})


def send(client, method, url, data=None):
    return getattr(client, method)(url, data if data is not None else {}, format="json")


@pytest.mark.parametrize(("method", "name", "kwargs", "role"), ROUTES, ids=IDS)
def test_every_route_answers_401_without_a_token(anonymous, world, method, name, kwargs, role):
    response = send(anonymous, method, url_of(world, name, kwargs))
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "name", "kwargs", "role"), ROUTES, ids=IDS)
def test_every_route_answers_401_for_an_unknown_token(world, method, name, kwargs, role):
    response = send(client_for("edt_not-a-real-token"), method, url_of(world, name, kwargs))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "name", "kwargs", "role"), [r for r in ROUTES if r[2]], ids=[i for i, r in zip(IDS, ROUTES, strict=False) if r[2]]
)
def test_every_object_route_answers_404_to_another_team(stranger, world, method, name, kwargs, role):
    response = send(stranger, method, url_of(world, name, kwargs))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "name", "kwargs", "role"), [r for r in ROUTES if r[3] in (Role.EDITOR, Role.ADMIN) and r[1] != "test-result"]
)
def test_every_write_answers_403_to_a_viewer(viewer, world, method, name, kwargs, role):
    response = send(viewer, method, url_of(world, name, kwargs))
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize(("method", "name", "kwargs", "role"), [r for r in ROUTES if r[3] == Role.ADMIN])
def test_application_management_answers_403_to_an_editor(team, world, method, name, kwargs, role):
    response = send(client_for(make_token(team, Role.EDITOR)), method, url_of(world, name, kwargs))
    assert response.status_code == 403


def test_a_viewer_cannot_create_an_experiment(viewer, world):
    response = viewer.post(reverse("api:experiment-list"), {"application": str(world.application.pk), "name": "x"}, format="json")
    assert response.status_code == 403


def test_experiment_for_another_teams_application_is_refused_naming_the_field(stranger, world):
    response = stranger.post(reverse("api:experiment-list"), {"application": str(world.application.pk), "name": "x"}, format="json")
    assert response.status_code == 400
    assert "application" in response.json()["errors"]


def test_lists_show_nothing_of_another_team(stranger, world):
    for name in ("application-list", "experiment-list"):
        response = stranger.get(reverse(f"api:{name}"))
        assert response.status_code == 200
        assert response.json()["count"] == 0


def test_a_revoked_token_is_refused(team, world):
    token, raw = ApiToken.issue(team, role=Role.ADMIN)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at="2020-01-01T00:00:00Z")
    assert client_for(raw).get(reverse("api:application-list")).status_code == 401


def test_a_malformed_authorization_header_is_401(world):
    client = client_for()
    client.credentials(HTTP_AUTHORIZATION="Bearer two parts")
    assert client.get(reverse("api:application-list")).status_code == 401


def test_unknown_ids_answer_404(admin, world):
    assert admin.get(reverse("api:experiment-detail", kwargs={"id": uuid.uuid4()})).status_code == 404
    assert admin.get("/api/v1/experiments/not-a-uuid/").status_code == 404


def test_a_session_user_sees_the_objects_of_their_teams(client, team, world):
    user = make_user(team, Role.VIEWER)
    make_team()  # a team the user is not in
    client.force_login(user)
    response = client.get(reverse("api:application-list"))
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(world.application.pk)]


def test_a_session_user_gets_their_membership_role(client, team, world):
    client.force_login(make_user(team, Role.VIEWER))
    response = client.patch(
        reverse("api:experiment-detail", kwargs={"id": world.experiment.pk}), {"name": "x"}, content_type="application/json"
    )
    assert response.status_code == 403


def test_a_session_post_needs_the_csrf_token(team, world):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(team, Role.ADMIN))
    response = client.post(reverse("api:experiment-archive", kwargs={"id": world.experiment.pk}), content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_a_session_user_in_two_teams_picks_the_team_for_a_new_application(client, settings, team, world):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    other = make_team()
    user = make_user(team, Role.ADMIN)
    from experiments_app.models import Membership

    Membership.objects.create(team=other, user=user, role=Role.ADMIN)
    client.force_login(user)
    body = {"name": "Bot", "webhook_url": "http://127.0.0.1:9/hook"}
    refused = client.post(reverse("api:application-list"), body, content_type="application/json")
    assert refused.status_code == 400
    assert "team" in refused.json()["errors"]
    created = client.post(f"{reverse('api:application-list')}?team={other.slug}", body, content_type="application/json")
    assert created.status_code == 201, created.json()
    assert created.json()["team"] == str(other.pk)


def test_schema_and_docs_need_no_authentication(anonymous):
    schema = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/v1/experiments/{id}/run-baseline/" in schema.json()["paths"]
    docs = anonymous.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower()
