"""Issue 14: nothing let in. SSRF spellings refused when saved and when sent, viewers
cannot post results."""

import json

import pytest
from django.urls import reverse

from experiments_app import runs, webhooks
from experiments_app.errors import ValidationFailed
from experiments_app.models import Role, Run, RunStatus, Test
from experiments_app.models import TestStatus as Status
from tests.api_fixtures import client_for, ready_experiment
from tests.engine_fixtures import start_baseline
from tests.factories import make_application, make_token


def refusal(url):
    with pytest.raises(ValidationFailed) as caught:
        webhooks.check_webhook_url(url)
    return caught.value.errors["webhook_url"][0]


# ------------------------------------------------------------------ SSRF when saved


@pytest.mark.parametrize(
    "url",
    [
        "http://100.64.0.1/hook",  # carrier-grade NAT (shared address space): not "private" to Python
        "http://100.127.255.254/hook",
        "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 of 169.254.169.254
        "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
        "http://[2002:c0a8:1::1]/hook",  # 6to4 of 192.168.0.1
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
        "http://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
        "http://[64:ff9b:1::a00:1]/hook",  # local-use NAT64 of 10.0.0.1
        "http://[::127.0.0.1]/hook",  # IPv4-compatible loopback
        "http://[::ffff:100.64.0.1]/hook",
        "http://198.18.0.1/hook",  # benchmarking range
    ],
)
def test_non_public_spellings_are_refused_when_saved(url, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    assert "private, loopback or link-local" in refusal(url) or "metadata" in refusal(url)


@pytest.mark.parametrize("url", ["http://user:pass@8.8.8.8/hook", "http://user@8.8.8.8/hook", "http://:@8.8.8.8/hook"])
def test_urls_with_userinfo_are_refused(url):
    assert "user name or password" in refusal(url)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://[fd00:ec2::254]/latest/meta-data", "fd00:ec2::254"),
        ("http://100.100.100.200/latest/meta-data", "100.100.100.200"),
        ("http://[2002:a9fe:a9fe::1]/latest", "2002:a9fe:a9fe::1"),
        ("http://[64:ff9b::a9fe:a9fe]/latest", "64:ff9b::a9fe:a9fe"),
        ("http://[::ffff:169.254.169.254]/latest", "::ffff:169.254.169.254"),
    ],
)
def test_metadata_addresses_stay_refused_when_allowlisted(url, host, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = [host, "127.0.0.1"]
    assert "cloud metadata address" in refusal(url)


def test_public_translated_addresses_are_accepted(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    assert webhooks.check_webhook_url("http://[2002:808:808::1]/hook") is None  # 6to4 of 8.8.8.8
    assert webhooks.check_webhook_url("http://[64:ff9b::808:808]/hook") is None  # NAT64 of 8.8.8.8


@pytest.mark.django_db
def test_the_api_refuses_a_cgnat_webhook_url_with_a_400_naming_it(team, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    admin = client_for(make_token(team, Role.ADMIN))
    response = admin.post(reverse("api:application-list"), {"name": "x", "webhook_url": "http://100.64.0.1/"}, format="json")
    assert response.status_code == 400 and "webhook_url" in response.json()["errors"]


# ------------------------------------------------------------------ SSRF when sent (after DNS)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "allowed", "reason"),
    [
        ("100.64.0.1", [], "private, loopback or link-local"),
        ("64:ff9b::7f00:1", [], "private, loopback or link-local"),
        ("169.254.169.254", ["hook.example"], "cloud metadata address"),
        ("2002:a9fe:a9fe::1", ["hook.example"], "cloud metadata address"),
    ],
)
def test_a_name_that_resolves_to_a_refused_address_at_send_time_errors_the_test(
    address, allowed, reason, settings, fast_engine, monkeypatch
):
    """The URL was fine when saved; by the time it is sent its name resolves elsewhere (DNS rebinding)."""
    settings.WEBHOOK_ALLOWED_HOSTS = allowed
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: [address])  # the one DNS look-up
    run = start_baseline("http://hook.example/hook", n_tasks=2, max_error_rate=1.0)
    runs.dispatch_application(run.experiment.application_id)
    run = Run.objects.get(pk=run.pk)
    assert (run.status, run.errored) == (RunStatus.SUCCEEDED, 2)
    for test in Test.objects.filter(run=run):
        assert test.status == Status.ERRORED and reason in test.error
        assert test.attempts == 1  # refused addresses are not retried


# ------------------------------------------------------------------ results need an editor


def running_test(team):
    application = make_application(team)
    return runs.start_baseline_run(ready_experiment(application)).tests.first()


@pytest.mark.django_db
def test_a_viewer_token_cannot_post_a_result(team):
    test = running_test(team)
    viewer = client_for(make_token(team, Role.VIEWER))
    response = viewer.post(reverse("api:test-result", kwargs={"id": test.pk}), {"output": "x"}, format="json")
    assert response.status_code == 403
    assert "editor" in response.json()["detail"]
    test.refresh_from_db()
    assert test.status == Status.PENDING and not test.has_output


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.EDITOR, Role.ADMIN])
def test_editor_and_admin_tokens_post_results(team, role):
    test = running_test(team)
    client = client_for(make_token(team, role))
    assert client.post(reverse("api:test-result", kwargs={"id": test.pk}), {"output": "x"}, format="json").status_code == 200


@pytest.mark.django_db
def test_the_application_signature_posts_results(team, client):
    test = running_test(team)
    body = json.dumps({"output": "x"}).encode()
    secret = test.run.experiment.application.webhook_secret
    headers = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in webhooks.signed_headers(secret, "msg_1", body).items()}
    headers.pop("HTTP_CONTENT_TYPE")
    response = client.post(reverse("api:test-result", kwargs={"id": test.pk}), body, content_type="application/json", **headers)
    assert response.status_code == 200
