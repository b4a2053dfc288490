"""docs/examples/: each copy-ready receiver, served for real, gets real deliveries from the engine.

The engine dispatches from this process to the example's server; callbacks come back to
the live server of this test process. The baseline config differs from the examples'
production parameters, so an output carrying it proves the overrides arrived and were applied.
"""

import httpx
import pytest

from experiments_app import actions, runs, webhooks
from experiments_app.models import Run, RunStatus, new_webhook_secret
from experiments_app.models import TestStatus as Status
from tests.docs.example_servers import django_server, fastapi_server, flask_server
from tests.engine_fixtures import wait_for
from tests.factories import make_application, make_experiment, make_step, make_task

pytestmark = pytest.mark.django_db(transaction=True)

OVERRIDES = {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 300}
PATHS = {"flask": ("/webhook", "/webhook/async"), "fastapi": ("/webhook", "/webhook/async"), "django": ("/webhook/", "/webhook/async/")}


@pytest.fixture
def engine_settings(settings, live_server):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.PUBLIC_URL = live_server.url  # callbackUrl: this process's live server
    return settings


@pytest.fixture(params=["flask", "fastapi", "django"])
def example(request, monkeypatch, tmp_path):
    """(framework, base URL, secret) of a running example receiver."""
    secret = new_webhook_secret()
    if request.param == "flask":
        server = flask_server(secret, monkeypatch)
    elif request.param == "fastapi":
        server = fastapi_server(secret, monkeypatch)
    else:
        server = django_server(secret, monkeypatch, tmp_path)
    with server as url:
        yield request.param, url, secret


def start_baseline(url, secret, n_tasks=3):
    """A baseline on `url` whose config overrides the examples' production parameters.

    Each task expects the overridden parameters in the output (json_subset), so a test
    passes only if the receiver applied the overrides it was sent."""
    application = make_application(webhook_url=url, webhook_secret=secret)
    step = make_step(application, external_id="response_generator", config={"model": "gpt-4o-mini", "temperature": 0.7})
    tasks = [make_task(application, input={"question": f"q{n}"}, expected={"model": "gpt-4o", "temperature": 0.2}) for n in range(n_tasks)]
    experiment = make_experiment(application, steps=[step], tasks=tasks)
    actions.update_experiment(experiment, evaluators=[{"type": "json_subset"}])
    actions.set_baseline_config(experiment, {"response_generator": OVERRIDES})
    return runs.start_baseline_run(experiment)


def run_through_the_engine(run):
    runs.dispatch_application(run.experiment.application_id)
    return wait_for(
        lambda: Run.objects.filter(pk=run.pk).exclude(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).first(), 30, message="the run"
    )


def test_the_example_answers_synchronously_with_the_overrides_applied(example, engine_settings):
    framework, url, secret = example
    run = run_through_the_engine(start_baseline(url + PATHS[framework][0], secret))
    assert (run.status, run.total, run.passed, run.errored) == (RunStatus.SUCCEEDED, 3, 3, 0)
    for test in run.tests.all():
        assert test.output == {"echo": test.task_input, **OVERRIDES}
        assert test.metrics["latency_ms"] >= 0
        assert list(test.delivery_attempts.values_list("status_code", flat=True)) == [200]


def test_the_example_answers_202_and_its_signed_callback_is_recorded(example, engine_settings):
    framework, url, secret = example
    run = run_through_the_engine(start_baseline(url + PATHS[framework][1], secret))
    assert (run.status, run.total, run.passed, run.errored) == (RunStatus.SUCCEEDED, 3, 3, 0)
    for test in run.tests.all():
        assert test.status == Status.PASSED
        assert test.output == {"echo": test.task_input, **OVERRIDES}
        # the result came through callbackUrl: the only answer to the delivery was a 202
        assert list(test.delivery_attempts.values_list("status_code", flat=True)) == [202]


def test_the_example_answers_a_ping_and_refuses_a_wrong_signature(example, engine_settings):
    framework, url, secret = example
    for path in PATHS[framework]:
        application = make_application(webhook_url=url + path, webhook_secret=secret)
        assert actions.ping_application(application)["status_code"] == 200
        stranger = make_application(webhook_url=url + path)  # signs with a secret of its own
        answer = actions.ping_application(stranger)
        assert (answer["ok"], answer["status_code"]) == (False, 401)


def test_the_example_refuses_a_delivery_whose_body_was_changed(example, engine_settings):
    framework, url, secret = example
    body = webhooks.encode({"type": "webhook.ping", "timestamp": webhooks.iso_now(), "data": {}})
    headers = webhooks.signed_headers(secret, "msg_tampered", body)
    assert httpx.post(url + PATHS[framework][0], content=body, headers=headers).status_code == 200
    assert httpx.post(url + PATHS[framework][0], content=body.replace(b"{}", b'{"x":1}'), headers=headers).status_code == 401
