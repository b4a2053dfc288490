"""variants/{id}/run/ with `webhook_url`: that run's tests go to a preview deployment, the application's URL stays."""

import pytest

from experiments_app import actions, runs
from experiments_app.models import Role, Run
from tests.api_fixtures import client_for, finish_run
from tests.engine_fixtures import Receiver, Reply
from tests.factories import make_application, make_ready_experiment, make_token, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_engine")]


@pytest.fixture
def preview(receiver):
    server = Receiver().start()
    yield server
    server.stop()


def experiment_on(url, team=None):
    application = make_application(team, webhook_url=url) if team else make_application(webhook_url=url)
    experiment = make_ready_experiment(application=application, n_tasks=2)
    finish_run(runs.start_baseline_run(experiment))
    experiment.refresh_from_db()
    baseline = experiment.variants.get(parent__isnull=True)
    return experiment, actions.create_variant(experiment, parent=baseline, inference_step="main", parameter="temperature", value=0.2)


def test_a_run_with_its_own_webhook_url_is_dispatched_there_only(receiver, preview):
    preview.handler = lambda received, count: Reply(200, {"output": "x"})
    experiment, variant = experiment_on(receiver.url)
    run = runs.start_variant_run(variant, webhook_url=preview.url)
    runs.dispatch_application(experiment.application_id)
    assert len(preview.requests) == 2 and receiver.requests == []
    preview.requests[0].verify(experiment.application.webhook_secret)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.webhook_url == preview.url
    experiment.application.refresh_from_db()
    assert experiment.application.webhook_url == receiver.url


def test_the_api_takes_webhook_url_and_shows_it_on_the_run(team, receiver, preview):
    _, variant = experiment_on(receiver.url, team)
    editor = client_for(make_token(team, Role.EDITOR))
    response = editor.post(f"/api/v1/variants/{variant.pk}/run/", {"webhook_url": preview.url}, format="json")
    assert response.status_code == 202 and response.json()["webhook_url"] == preview.url
    assert Run.objects.get(pk=response.json()["id"]).webhook_url == preview.url


def test_a_private_webhook_url_is_refused_naming_the_field(team, receiver, settings):
    _, variant = experiment_on(receiver.url, team)
    settings.WEBHOOK_ALLOWED_HOSTS = []
    editor = client_for(make_token(team, Role.EDITOR))
    response = editor.post(f"/api/v1/variants/{variant.pk}/run/", {"webhook_url": "http://10.0.0.1/hook"}, format="json")
    assert response.status_code == 400 and "private" in response.json()["errors"]["webhook_url"][0]
    assert not Run.objects.filter(variant=variant).exists()


def test_a_run_without_a_body_still_starts(team, receiver):
    _, variant = experiment_on(receiver.url, team)
    editor = client_for(make_token(team, Role.EDITOR))
    response = editor.post(f"/api/v1/variants/{variant.pk}/run/")
    assert response.status_code == 202 and response.json()["webhook_url"] == ""


def test_the_run_page_shows_where_the_run_was_sent(client, team, receiver, preview):
    _, variant = experiment_on(receiver.url, team)
    run = runs.start_variant_run(variant, webhook_url=preview.url)
    client.force_login(make_user(team, Role.VIEWER))
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert f"sent to <code>{preview.url}</code>" in page
