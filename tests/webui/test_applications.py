"""Applications: list, create (secret shown once), webhook settings, rotate, test delivery, failures."""

import pytest
from django.utils import timezone

from experiments_app.models import Application, DeliveryAttempt, Test
from tests.engine_fixtures import Reply
from tests.factories import make_application
from tests.webui.conftest import make_with_results

pytestmark = pytest.mark.django_db


@pytest.fixture
def loopback_allowed(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


def new_application(client, **fields):
    data = {
        "name": "Support bot",
        "webhook_url": "http://127.0.0.1:9/hook",
        "timeout_seconds": 30,
        "result_timeout_seconds": 300,
        "max_concurrency": 20,
    }
    return client.post("/applications/", {**data, **fields})


def test_list_shows_applications_with_step_and_task_counts(editor):
    make_application(editor.team, name="Support bot")
    html = editor.get("/applications/").content.decode()
    assert "Support bot" in html and 'id="application-table"' in html


def test_admin_creates_an_application_and_sees_the_secret_once(admin, loopback_allowed):
    response = new_application(admin)
    application = Application.objects.get(name="Support bot")
    assert response["Location"] == f"/applications/{application.pk}/"
    first = admin.get(response["Location"]).content.decode()
    assert application.webhook_secret in first and "shown only once" in first
    again = admin.get(response["Location"]).content.decode()
    assert application.webhook_secret not in again and "whsec_••••" in again


def test_create_names_the_bad_field(admin, loopback_allowed):
    response = new_application(admin, webhook_url="ftp://nowhere", timeout_seconds=0)
    assert response.status_code == 400
    assert not Application.objects.exists()
    assert response.content.decode().count("errorlist") >= 2


def test_create_refuses_a_private_address(admin, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    response = new_application(admin, webhook_url="http://10.0.0.8/hook")
    assert response.status_code == 400 and not Application.objects.exists()


def test_editor_cannot_create_or_edit_applications(editor, loopback_allowed):
    assert new_application(editor).status_code == 403
    application = make_application(editor.team)
    assert editor.post(f"/applications/{application.pk}/", {"name": "x", "webhook_url": "http://127.0.0.1:9/"}).status_code == 403
    assert b'name="name" value' in editor.get(f"/applications/{application.pk}/").content
    assert b"disabled" in editor.get(f"/applications/{application.pk}/").content


def test_admin_edits_webhook_settings(admin, loopback_allowed):
    application = make_application(admin.team)
    data = {
        "name": "Renamed",
        "webhook_url": "http://127.0.0.1:8100/webhook",
        "timeout_seconds": 10,
        "result_timeout_seconds": 60,
        "max_concurrency": 5,
    }
    response = admin.post(f"/applications/{application.pk}/", data)
    assert response.status_code == 302
    application.refresh_from_db()
    assert (application.name, application.timeout_seconds, application.max_concurrency) == ("Renamed", 10, 5)


def test_rotate_secret_shows_the_new_one_once(admin):
    application = make_application(admin.team)
    old = application.webhook_secret
    response = admin.post(f"/applications/{application.pk}/rotate-secret/", HTTP_HX_REQUEST="true")
    application.refresh_from_db()
    assert application.webhook_secret != old
    html = response.content.decode()
    assert 'id="secret"' in html and application.webhook_secret in html and "<html" not in html


def test_rotate_secret_without_htmx_redirects_and_shows_it_once(admin):
    application = make_application(admin.team)
    response = admin.post(f"/applications/{application.pk}/rotate-secret/", follow=True)
    application.refresh_from_db()
    assert application.webhook_secret in response.content.decode()


def test_rotate_secret_needs_the_admin_role(editor):
    application = make_application(editor.team)
    old = application.webhook_secret
    assert editor.post(f"/applications/{application.pk}/rotate-secret/").status_code == 403
    application.refresh_from_db()
    assert application.webhook_secret == old


def test_send_test_delivery_shows_status_and_duration(editor, receiver):
    application = make_application(editor.team, webhook_url=receiver.url)
    response = editor.post(f"/applications/{application.pk}/ping/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert 'id="ping-result"' in html and "HTTP 200 in" in html and " ms" in html
    assert receiver.requests[0].json["type"] == "webhook.ping"
    receiver.requests[0].verify(application.webhook_secret)


def test_send_test_delivery_reports_a_failure(editor, receiver):
    receiver.handler = lambda received, count: Reply(500, {"error": "boom"})
    application = make_application(editor.team, webhook_url=receiver.url)
    response = editor.post(f"/applications/{application.pk}/ping/", follow=True)
    assert "Test delivery: HTTP 500" in response.content.decode()


def test_viewer_cannot_send_a_test_delivery(viewer):
    application = make_application(viewer.team)
    assert viewer.post(f"/applications/{application.pk}/ping/").status_code == 403


def test_detail_lists_recent_delivery_failures(editor):
    experiment, _, _, run = make_with_results(editor.team)
    test = Test.objects.filter(run=run).first()
    DeliveryAttempt.objects.create(
        test=test, number=2, started_at=timezone.now(), status_code=None, duration_ms=3, error="connection refused"
    )
    html = editor.get(f"/applications/{experiment.application_id}/").content.decode()
    failures = html[html.index('id="delivery-failures"') :]
    assert "connection refused" in failures and test.task_external_id in failures
    assert failures.count("<tr>") == 2  # header + the one failure; the 200s are not failures


def test_detail_fragment_for_htmx_tab_switch(editor):
    application = make_application(editor.team)
    html = editor.get(f"/applications/{application.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="tab"' in html and "<html" not in html


def test_admin_deletes_an_application(admin):
    application = make_application(admin.team)
    response = admin.post(f"/applications/{application.pk}/delete/")
    assert response.status_code == 302 and not Application.objects.filter(pk=application.pk).exists()
