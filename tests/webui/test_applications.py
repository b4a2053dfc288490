"""Applications: list, create (secret shown once), webhook settings, rotate, test delivery, failures."""

import html as htmllib
import re

import pytest
from django.utils import timezone

from experiments_app import actions, runs
from experiments_app.models import Application, DeliveryAttempt, Role, Test
from tests.docs.example_servers import load_module, werkzeug_server
from tests.engine_fixtures import Reply
from tests.factories import make_application, make_experiment, make_step, make_team, make_user
from tests.webui.conftest import PASSWORD, make_with_results
from tests.webui.test_browser import settled, sign_in

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


# --- Connect your application ----------------------------------------------------


def connect_panel(html):
    start = html.index('id="connect-panel"')
    return html[start : html.index("</section>", start)]


def handler_text(html):
    return htmllib.unescape(re.search(r'<code id="connect-handler">(.*?)</code>', html, re.S).group(1))


def test_the_connect_panel_shows_the_url_the_variable_a_handler_and_the_doc(viewer):
    application = make_application(viewer.team, webhook_url="https://bot.example.com/hooks/experiments")
    make_step(application, external_id="answer_writer")
    panel = connect_panel(viewer.get(f"/applications/{application.pk}/").content.decode())
    assert "Connect your application" in panel and "https://bot.example.com/hooks/experiments" in panel
    assert 'id="connect-variable">EXPERIMENTS_WEBHOOK_SECRET<' in panel
    handler = handler_text(panel)
    assert '@app.post("/hooks/experiments")' in handler and 'os.environ["EXPERIMENTS_WEBHOOK_SECRET"]' in handler
    assert '.get("answer_writer", {})' in handler and "--port 443" in handler
    assert 15 <= len(handler.strip().splitlines()) <= 25
    assert 'data-copy="connect-handler"' in panel and 'href="/docs/integrating/"' in panel
    assert "not connected yet" in panel and "connected ✓" not in panel
    assert '<button type="submit">Send test delivery</button>' not in panel  # a viewer cannot ping


def test_a_successful_test_delivery_swaps_in_connected(editor, receiver):
    application = make_application(editor.team, webhook_url=receiver.url)
    html = editor.post(f"/applications/{application.pk}/ping/", HTTP_HX_REQUEST="true").content.decode()
    assert html.lstrip().startswith('<div id="connection"') and "<html" not in html
    assert "connected ✓" in html and "HTTP 200 in" in html
    assert "connected ✓" in connect_panel(editor.get(f"/applications/{application.pk}/").content.decode())


def test_a_failed_test_delivery_leaves_it_not_connected(editor, receiver):
    receiver.handler = lambda received, count: Reply(401, {"detail": "bad signature"})
    application = make_application(editor.team, webhook_url=receiver.url)
    html = editor.post(f"/applications/{application.pk}/ping/", HTTP_HX_REQUEST="true").content.decode()
    assert "not connected yet" in html and "HTTP 401" in html
    assert "not connected yet" in connect_panel(editor.get(f"/applications/{application.pk}/").content.decode())


def test_rotating_the_secret_swaps_the_connection_out_of_band(admin, receiver):
    application = make_application(admin.team, webhook_url=receiver.url)
    admin.post(f"/applications/{application.pk}/ping/")
    html = admin.post(f"/applications/{application.pk}/rotate-secret/", HTTP_HX_REQUEST="true").content.decode()
    assert '<div id="secret">' in html or 'id="secret"' in html
    assert 'id="connection" aria-live="polite" hx-swap-oob="true"' in html and "not connected yet" in html


def test_the_handler_to_copy_runs_and_records_a_real_delivery(editor, receiver, monkeypatch, tmp_path):
    """The panel's handler, copied as shown, connects the application and answers a baseline."""
    application = make_application(editor.team, webhook_url="http://127.0.0.1:9/hooks/experiments")
    make_step(application, external_id="answer_writer", config={"model": "gpt-4o-mini", "temperature": 0.7})
    path = tmp_path / "receiver.py"
    path.write_text(handler_text(editor.get(f"/applications/{application.pk}/").content.decode()))
    receiver_module = load_module(path, application.webhook_secret, monkeypatch)
    with werkzeug_server(receiver_module.app) as base:
        Application.objects.filter(pk=application.pk).update(webhook_url=base + "/hooks/experiments")
        html = editor.post(f"/applications/{application.pk}/ping/", HTTP_HX_REQUEST="true").content.decode()
        assert "connected ✓" in html
        experiment = make_experiment(application, steps=list(application.inference_steps.all()), n_tasks=2)
        actions.set_baseline_config(experiment, {"answer_writer": {"model": "gpt-4o", "temperature": 0.2}})
        run = runs.start_baseline_run(experiment)
        runs.dispatch_application(application.pk)
    for test in Test.objects.filter(run=run):
        assert test.output == {"echo": test.task_input, "model": "gpt-4o", "temperature": 0.2}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_test_delivery_in_the_browser_shows_connected(page, live_server, receiver):
    team = make_team()
    user = make_user(team, Role.EDITOR, password=PASSWORD)
    application = make_application(team, webhook_url=receiver.url)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/applications/{application.pk}/")
    assert "not connected yet" in page.locator("#connection").inner_text()
    assert "EXPERIMENTS_WEBHOOK_SECRET" in page.locator("#connect-handler").inner_text()
    settled(page)
    page.click("#connection button:has-text('Send test delivery')")
    page.wait_for_selector("#connection:has-text('connected ✓')")
    assert "HTTP 200 in" in page.locator("#ping-result").inner_text()
    assert receiver.requests[-1].json["type"] == "webhook.ping"
    receiver.requests[-1].verify(application.webhook_secret)
    page.reload()
    page.wait_for_selector("#connection:has-text('connected ✓')")


def test_the_list_links_the_integration_guide_where_an_application_is_added(admin):
    html = admin.get("/applications/").content.decode()
    form = html[html.index('id="new-application"') :]
    assert 'href="/docs/integrating/"' in form
