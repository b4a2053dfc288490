"""The event endpoints pages (admins manage, members read, the secret shown once, attempts and
redelivery) and the print-friendly decision report page."""

import pytest

from experiments_app import actions, runs
from experiments_app.events import deliver
from experiments_app.models import EventDelivery, EventEndpoint, Role
from tests.api_fixtures import experiment_with_baseline, ready_experiment
from tests.engine_fixtures import Reply
from tests.factories import make_application, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, team):
    client.force_login(make_user(team, Role.ADMIN))
    return client


def add(client, url, events=("run.completed",)):
    return client.post("/teams/events/", {"url": url, "events": list(events), "application": "", "description": "CI"})


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(admin_client, receiver):
    response = add(admin_client, receiver.url)
    endpoint = EventEndpoint.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/teams/events/{endpoint.pk}/"
    first = admin_client.get(response["Location"])
    assert endpoint.secret in first.content.decode() and first["Cache-Control"] == "no-store"
    assert endpoint.secret not in admin_client.get(response["Location"]).content.decode()
    assert receiver.url in admin_client.get("/teams/events/").content.decode()


def test_a_refused_url_is_a_form_error(admin_client, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    response = add(admin_client, "http://127.0.0.1:9/x")
    assert response.status_code == 400 and "loopback" in response.content.decode()
    assert not EventEndpoint.objects.exists()


def test_an_editor_reads_but_cannot_add(client, team, receiver):
    client.force_login(make_user(team, Role.EDITOR))
    page = client.get("/teams/events/").content.decode()
    assert "Only admins" in page
    assert add(client, receiver.url).status_code == 403


def test_the_page_shows_every_attempt_the_disabled_reason_and_redelivers(admin_client, team, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.EVENT_DISABLE_AFTER_FAILURES = 1
    receiver.handler = lambda received, count: Reply(500)
    add(admin_client, receiver.url)
    endpoint = EventEndpoint.objects.get()
    runs.cancel_run(runs.start_baseline_run(ready_experiment(make_application(team))))
    deliver.deliver(EventDelivery.objects.get().pk)
    page = admin_client.get(f"/teams/events/{endpoint.pk}/").content.decode()
    assert "Disabled after 1 failed deliveries in a row." in page
    assert "HTTP 500 from the endpoint." in page and "run.completed" in page
    receiver.handler = lambda received, count: Reply(200)
    delivery = EventDelivery.objects.get()
    response = admin_client.post(f"/teams/events/{endpoint.pk}/deliveries/{delivery.pk}/redeliver/")
    assert response.status_code == 302
    again = EventDelivery.objects.exclude(pk=delivery.pk).get()
    assert deliver.deliver(again.pk) == "delivered"
    assert "by hand" in admin_client.get(f"/teams/events/{endpoint.pk}/").content.decode()
    admin_client.post(f"/teams/events/{endpoint.pk}/enable/")
    endpoint.refresh_from_db()
    assert endpoint.is_enabled and endpoint.failed_deliveries == 0


def test_rotate_shows_the_new_secret_once_and_delete_removes(admin_client, receiver):
    add(admin_client, receiver.url)
    endpoint = EventEndpoint.objects.get()
    old = endpoint.secret
    admin_client.post(f"/teams/events/{endpoint.pk}/rotate/")
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret in admin_client.get(f"/teams/events/{endpoint.pk}/").content.decode()
    assert admin_client.post(f"/teams/events/{endpoint.pk}/delete/").status_code == 302
    assert not EventEndpoint.objects.exists()


def test_another_teams_endpoint_is_404(client, receiver):
    other = make_user(None)
    add_admin = make_user(make_application().team, Role.ADMIN)
    client.force_login(add_admin)
    add(client, receiver.url)
    client.force_login(other)
    assert client.get(f"/teams/events/{EventEndpoint.objects.get().pk}/").status_code in (403, 404)


def test_the_report_page_prints_the_decision(client, team):
    experiment = experiment_with_baseline(make_application(team), n_tasks=3)
    actions.update_experiment(experiment, description="Cooler is better.")
    baseline = experiment.variants.get(parent__isnull=True)
    person = make_user(team, Role.EDITOR, username="grace")
    experiment.refresh_from_db()
    actions.complete_experiment(experiment, winner=baseline, by=person)
    client.force_login(person)
    page = client.get(f"/experiments/{experiment.pk}/report/").content.decode()
    assert "Decision report: " in page and "Cooler is better." in page
    assert "picked by grace" in page and "report.css" in page and "window.print()" in page
    assert f"/experiments/{experiment.pk}/report/" in client.get(f"/experiments/{experiment.pk}/").content.decode()
