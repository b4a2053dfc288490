"""Standard Webhooks signing and verification, the SSRF guard and ping."""

import time
from datetime import UTC, datetime

import pytest
import standardwebhooks

from experiments_app import webhooks
from experiments_app.errors import ValidationFailed
from experiments_app.models import new_webhook_secret
from tests.engine_fixtures import Reply
from tests.factories import make_application

SECRET = new_webhook_secret()
BODY = b'{"type":"experiment.test","data":{"testId":"abc"}}'


def test_our_signature_verifies_with_the_standardwebhooks_library():
    headers = webhooks.signed_headers(SECRET, "msg_1", BODY)
    assert standardwebhooks.Webhook(SECRET).verify(BODY, headers)["data"]["testId"] == "abc"


def test_a_library_signature_verifies_with_ours():
    stamp = datetime.now(UTC)
    signature = standardwebhooks.Webhook(SECRET).sign("msg_2", stamp, BODY.decode())
    headers = {"Webhook-Id": "msg_2", "Webhook-Timestamp": str(int(stamp.timestamp())), "Webhook-Signature": signature}
    assert webhooks.verify_signature(SECRET, headers, BODY)


def test_verification_accepts_any_of_several_signatures():
    headers = webhooks.signed_headers(SECRET, "msg_3", BODY)
    headers["webhook-signature"] = "v1,bm9wZQ== " + headers["webhook-signature"]
    assert webhooks.verify_signature(SECRET, headers, BODY)


def test_verification_rejects_a_changed_body():
    headers = webhooks.signed_headers(SECRET, "msg_4", BODY)
    assert not webhooks.verify_signature(SECRET, headers, BODY + b" ")


def test_verification_rejects_another_secret():
    headers = webhooks.signed_headers(new_webhook_secret(), "msg_5", BODY)
    assert not webhooks.verify_signature(SECRET, headers, BODY)


def test_verification_rejects_a_stale_timestamp():
    headers = webhooks.signed_headers(SECRET, "msg_6", BODY, timestamp=time.time() - 301)
    assert not webhooks.verify_signature(SECRET, headers, BODY)


def test_verification_accepts_a_timestamp_within_tolerance():
    headers = webhooks.signed_headers(SECRET, "msg_7", BODY, timestamp=time.time() - 200)
    assert webhooks.verify_signature(SECRET, headers, BODY)


def test_verification_rejects_missing_or_garbled_headers():
    headers = webhooks.signed_headers(SECRET, "msg_8", BODY)
    assert not webhooks.verify_signature(SECRET, {k: v for k, v in headers.items() if k != "webhook-id"}, BODY)
    assert not webhooks.verify_signature(SECRET, {**headers, "webhook-timestamp": "soon"}, BODY)
    assert not webhooks.verify_signature(SECRET, {**headers, "webhook-signature": "v2,abc"}, BODY)
    assert not webhooks.verify_signature("", headers, BODY)


def refusal(url):
    with pytest.raises(ValidationFailed) as caught:
        webhooks.check_webhook_url(url)
    assert list(caught.value.errors) == ["webhook_url"]
    return caught.value.errors["webhook_url"][0]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8100/webhook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://localhost/hook",
    ],
)
def test_private_loopback_and_link_local_targets_are_refused(url, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    reason = refusal(url)
    assert "private, loopback or link-local" in reason or "cloud metadata address" in reason


def test_public_addresses_are_accepted(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    assert webhooks.check_webhook_url("https://8.8.8.8/hook") is None


def test_allowed_hosts_may_be_private(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    assert webhooks.check_webhook_url("http://127.0.0.1:8100/webhook") is None
    assert webhooks.check_webhook_url("http://LOCALHOST:8100/webhook") is None


def test_other_schemes_are_refused():
    assert "http://" in refusal("ftp://8.8.8.8/hook")


def test_unresolvable_hosts_are_refused():
    assert "could not be resolved" in refusal("http://no-such-host.invalid/hook")


def test_a_url_without_host_is_refused():
    assert refusal("http:///hook")


def test_targets_are_pinned_to_the_checked_address(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["localhost"]
    target = webhooks.resolve_target("http://localhost:8100/webhook?x=1")
    assert target.url.startswith(("http://127.0.0.1:", "http://[::1]:"))
    assert target.url.endswith(":8100/webhook?x=1")
    assert target.host_header == "localhost:8100"


@pytest.mark.django_db
def test_ping_sends_a_signed_ping(receiver):
    application = make_application(webhook_url=receiver.url)
    answer = webhooks.ping(application)
    assert answer["ok"] is True and answer["status_code"] == 200 and answer["error"] == ""
    assert answer["duration_ms"] >= 0
    [request] = receiver.requests
    body = request.verify(application.webhook_secret)
    assert body["type"] == "webhook.ping" and body["data"] == {}


@pytest.mark.django_db
def test_ping_reports_an_error_status(receiver):
    receiver.handler = lambda received, count: Reply(500)
    answer = webhooks.ping(make_application(webhook_url=receiver.url))
    assert (answer["ok"], answer["status_code"], answer["error"]) == (False, 500, "HTTP 500")


@pytest.mark.django_db
def test_ping_refuses_a_private_address(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    answer = webhooks.ping(make_application(webhook_url="http://127.0.0.1:9/hook"))
    assert answer["ok"] is False and answer["status_code"] is None
    assert "private, loopback or link-local" in answer["error"]


@pytest.mark.django_db
def test_ping_reports_a_refused_connection(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    answer = webhooks.ping(make_application(webhook_url="http://127.0.0.1:9/hook"))
    assert answer["ok"] is False and answer["status_code"] is None and "ConnectError" in answer["error"]
