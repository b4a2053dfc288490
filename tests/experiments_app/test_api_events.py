"""event-endpoints/ (SPEC §8): admins register and manage endpoints; deliveries are listed with their attempts."""

import pytest

from experiments_app import runs
from experiments_app.events import deliver
from experiments_app.models import EventDelivery, EventEndpoint, Role
from tests.api_fixtures import client_for, ready_experiment
from tests.factories import make_application, make_token


@pytest.fixture
def hooks(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


def create(client, **body):
    body.setdefault("url", "http://127.0.0.1:9/events")
    body.setdefault("events", ["run.completed"])
    return client.post("/api/v1/event-endpoints/", body, format="json")


def test_create_answers_the_secret_once(admin, hooks):
    response = create(admin, description="CI")
    assert response.status_code == 201
    body = response.json()
    assert body["secret"].startswith("whsec_") and body["enabled"] is True and body["application"] is None
    shown = admin.get(f"/api/v1/event-endpoints/{body['id']}/").json()
    assert "secret" not in shown and shown["events"] == ["run.completed"]
    assert admin.get("/api/v1/event-endpoints/").json()["count"] == 1


def test_create_names_the_bad_fields(admin, hooks, settings):
    response = create(admin, events=["run.finished"])
    assert response.status_code == 400 and set(response.json()["errors"]) == {"events[0]"}
    scheme = create(admin, url="ftp://example.com/x")
    assert scheme.status_code == 400 and "http:// or https://" in scheme.json()["errors"]["url"][0]
    settings.WEBHOOK_ALLOWED_HOSTS = []
    refused = create(admin)
    assert refused.status_code == 400 and "loopback" in refused.json()["errors"]["url"][0]


def test_an_endpoint_may_be_narrowed_to_one_application_of_the_team(admin, hooks, team, stranger):
    application = make_application(team)
    assert create(admin, application=str(application.pk)).json()["application"] == str(application.pk)
    other_team_app = make_application()
    assert create(admin, application=str(other_team_app.pk)).json()["errors"].keys() == {"application"}


def test_only_admins_manage_endpoints(team, hooks):
    editor = client_for(make_token(team, Role.EDITOR))
    assert create(editor).status_code == 403


def test_patch_rotate_and_delete(admin, hooks):
    endpoint_id = create(admin).json()["id"]
    url = f"/api/v1/event-endpoints/{endpoint_id}/"
    changed = admin.patch(url, {"events": ["variant.regressed", "experiment.completed"], "enabled": False}, format="json").json()
    assert changed["events"] == ["variant.regressed", "experiment.completed"]
    assert changed["enabled"] is False and changed["disabled_reason"] == "Disabled by hand."
    assert admin.patch(url, {"enabled": True}, format="json").json()["enabled"] is True
    old = EventEndpoint.objects.get(pk=endpoint_id).secret
    rotated = admin.post(f"{url}rotate-secret/").json()["secret"]
    assert rotated != old and rotated.startswith("whsec_")
    assert admin.delete(url).status_code == 204
    assert admin.get(url).status_code == 404


def test_another_teams_endpoint_is_404(admin, hooks, stranger):
    endpoint_id = create(admin).json()["id"]
    assert stranger.get(f"/api/v1/event-endpoints/{endpoint_id}/").status_code == 404
    assert stranger.get("/api/v1/event-endpoints/").json()["count"] == 0


def test_deliveries_list_attempts_and_redeliver_by_hand(admin, team, receiver):
    application = make_application(team)
    endpoint_id = create(admin, url=receiver.url).json()["id"]
    runs.cancel_run(runs.start_baseline_run(ready_experiment(application)))
    deliver.deliver(EventDelivery.objects.get().pk)
    listed = admin.get(f"/api/v1/event-endpoints/{endpoint_id}/deliveries/").json()
    (delivery,) = listed["results"]
    assert delivery["type"] == "run.completed" and delivery["status"] == "delivered"
    assert [attempt["status_code"] for attempt in delivery["attempt_log"]] == [200]
    assert delivery["payload"]["data"]["run"]["status"] == "cancelled"
    again = admin.post(f"/api/v1/event-endpoints/{endpoint_id}/deliveries/{delivery['id']}/redeliver/")
    assert again.status_code == 202
    assert again.json()["manual"] is True and again.json()["webhook_id"] == delivery["webhook_id"]
    assert admin.get(f"/api/v1/event-endpoints/{endpoint_id}/deliveries/").json()["count"] == 2
