"""Issue 14: secrets encrypted at rest, secret rotation with a window, CSRF on htmx posts,
rate-limited sign-in and result ingestion, check --deploy, and who changed an experiment."""

import importlib
import io
import json
import subprocess
import sys
from datetime import timedelta

import pytest
import standardwebhooks
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from experiments_app import runs, secrets_at_rest, webhooks
from experiments_app.apps import check_secrets_key
from experiments_app.models import Application, Role, Transition
from experiments_app.states import State
from tests.api_fixtures import client_for, ready_experiment
from tests.engine_fixtures import BASE_DIR, Reply, start_baseline
from tests.factories import make_application, make_token, make_user

pytestmark = pytest.mark.django_db


def stored_secret(application):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT webhook_secret FROM experiments_app_application WHERE id = %s",
            [application.pk.hex if connection.vendor == "sqlite" else application.pk],
        )
        return cursor.fetchone()[0]


# ------------------------------------------------------------------ encrypted at rest


def test_the_webhook_secret_is_stored_encrypted_and_read_in_clear(team):
    application = make_application(team)
    secret = Application.objects.get(pk=application.pk).webhook_secret
    assert secret.startswith("whsec_")
    raw = stored_secret(application)
    assert raw.startswith("fernet:") and secret not in raw and secret[6:] not in raw


def test_rotating_the_encryption_key_keeps_secrets_readable(team, settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRETS_ENCRYPTION_KEYS = [old_key]
    application = make_application(team)
    secret = Application.objects.get(pk=application.pk).webhook_secret
    settings.SECRETS_ENCRYPTION_KEYS = [new_key, old_key]  # step 1: the new key first, the old one still decrypts
    assert Application.objects.get(pk=application.pk).webhook_secret == secret
    call_command("reencrypt_secrets", stdout=io.StringIO())  # step 2: everything encrypted with the new key
    settings.SECRETS_ENCRYPTION_KEYS = [new_key]  # step 3: the old key is dropped
    assert Application.objects.get(pk=application.pk).webhook_secret == secret
    settings.SECRETS_ENCRYPTION_KEYS = [old_key]
    with pytest.raises(secrets_at_rest.UndecryptableSecret):
        Application.objects.get(pk=application.pk)


def test_plaintext_from_before_encryption_is_read_and_encrypted_by_the_migration(team):
    migration = importlib.import_module("experiments_app.migrations.0007_faults_health_secrets_audit")
    application = make_application(team)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE experiments_app_application SET webhook_secret = %s", ["whsec_plain"])
    assert Application.objects.get(pk=application.pk).webhook_secret == "whsec_plain"
    migration.encrypt_secrets(apps, None)
    assert stored_secret(application).startswith("fernet:")
    assert Application.objects.get(pk=application.pk).webhook_secret == "whsec_plain"


def test_without_a_key_a_development_key_is_derived_and_check_deploy_says_so(settings):
    settings.SECRETS_ENCRYPTION_KEYS = []
    token = secrets_at_rest.encrypt("whsec_x")
    assert secrets_at_rest.decrypt(token) == "whsec_x"
    assert [warning.id for warning in check_secrets_key(None)] == ["experiments_app.W001"]
    settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    assert check_secrets_key(None) == []


# ------------------------------------------------------------------ secret rotation window


def test_during_a_rotation_deliveries_carry_both_signatures_each_verified(receiver, fast_engine):
    receiver.handler = lambda received, count: Reply(200, {"output": "ok"})
    run = start_baseline(receiver.url, n_tasks=1)
    application = Application.objects.get(pk=run.experiment.application_id)
    old = application.webhook_secret
    new = application.rotate_secret()
    runs.dispatch_application(application.pk)
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):  # the application may verify with either while it updates its config
        assert standardwebhooks.Webhook(secret).verify(request.body, request.headers)["data"]["testId"]
    assert application.previous_secret_expires_at - timezone.now() > timedelta(hours=23)


def test_after_the_rotation_window_only_the_new_secret_signs(receiver, fast_engine):
    receiver.handler = lambda received, count: Reply(200, {"output": "ok"})
    run = start_baseline(receiver.url, n_tasks=1)
    application = Application.objects.get(pk=run.experiment.application_id)
    old = application.webhook_secret
    new = application.rotate_secret()
    Application.objects.filter(pk=application.pk).update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    runs.dispatch_application(application.pk)
    [request] = receiver.requests
    assert standardwebhooks.Webhook(new).verify(request.body, request.headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(old).verify(request.body, request.headers)


def post_signed(client, test, secret, body):
    headers = {
        f"HTTP_{k.upper().replace('-', '_')}": v for k, v in webhooks.signed_headers(secret, "msg_r", body).items() if k != "content-type"
    }
    return client.post(reverse("api:test-result", kwargs={"id": test.pk}), body, content_type="application/json", **headers)


def test_results_signed_with_the_old_secret_are_accepted_within_the_window_only(team, client):
    application = make_application(team)
    tests = list(runs.start_baseline_run(ready_experiment(application, n_tasks=2)).tests.all())
    old = application.webhook_secret
    application.rotate_secret()
    assert post_signed(client, tests[0], old, json.dumps({"output": "x"}).encode()).status_code == 200
    Application.objects.filter(pk=application.pk).update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    assert post_signed(client, tests[1], old, json.dumps({"output": "x"}).encode()).status_code == 401


# ------------------------------------------------------------------ CSRF on htmx posts


def test_an_htmx_post_without_its_csrf_token_is_refused(team):
    application = make_application(team)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user(team, Role.ADMIN))
    url = reverse("webui:application-rotate-secret", kwargs={"pk": application.pk})
    refused = browser.post(url, HTTP_HX_REQUEST="true")
    assert refused.status_code == 403
    assert Application.objects.get(pk=application.pk).webhook_secret == application.webhook_secret
    browser.get(reverse("webui:application-detail", kwargs={"pk": application.pk}))
    token = browser.cookies["csrftoken"].value
    assert browser.post(url, HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token).status_code == 200


# ------------------------------------------------------------------ rate limits


def test_sign_in_attempts_are_limited_with_429_and_retry_after(settings, client):
    settings.RATE_LIMIT_LOGIN = "3/60"
    username = f"limited-{timezone.now().timestamp()}"
    codes = [client.post("/accounts/login/", {"username": username, "password": "wrong"}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = client.post("/accounts/login/", {"username": username, "password": "wrong"})
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 60
    other = client.post("/accounts/login/", {"username": username + "-other", "password": "wrong"})
    assert other.status_code == 200  # another user name is not held back


def test_result_ingestion_is_limited_per_application_with_429_and_retry_after(team, settings):
    settings.RATE_LIMIT_RESULTS = "2/60"
    application = make_application(team)
    tests = list(runs.start_baseline_run(ready_experiment(application, n_tasks=3)).tests.all())
    editor = client_for(make_token(team, Role.EDITOR))
    answers = [editor.post(reverse("api:test-result", kwargs={"id": test.pk}), {"output": "x"}, format="json") for test in tests]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert 1 <= int(answers[2]["Retry-After"]) <= 60
    assert answers[2].json()["code"] == "throttled"


# ------------------------------------------------------------------ check --deploy


def test_check_deploy_passes_with_the_production_settings(tmp_path):
    environment = {
        "PATH": "/usr/bin:/bin",
        "VAR_DIR": str(tmp_path),
        "HTTPS": "true",
        "SECRET_KEY": Fernet.generate_key().decode() * 2,
        "ALLOWED_HOSTS": "dashboard.example",
        "SECRETS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ audit


def test_every_state_change_records_who_made_it_and_the_page_shows_it(team, client):
    application = make_application(team)
    experiment = ready_experiment(application)  # draft → baseline_pending, by nobody (a factory)
    raw = make_token(team, Role.EDITOR)
    client_for(raw).post(reverse("api:experiment-run-baseline", kwargs={"id": experiment.pk}))
    person = make_user(team, Role.EDITOR)
    run = experiment.runs.get()
    client.force_login(person)
    client.post(reverse("webui:run-cancel", kwargs={"pk": run.pk}))
    rows = list(Transition.objects.filter(experiment=experiment).order_by("at", "id"))
    assert [(row.to_status, row.actor()) for row in rows[-2:]] == [
        (State.RUNNING_BASELINE, f"API token {raw[:12]}… (editor)"),
        (State.BASELINE_FAILED, person.username),
    ]
    page = client.get(reverse("webui:experiment-detail", kwargs={"pk": experiment.pk})).content.decode()
    assert 'id="history"' in page and person.username in page and f"API token {raw[:12]}" in page
