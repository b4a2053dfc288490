"""docs/integrating.md says what the product does: its example body, recipes, rules and links are checked here."""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from experiments_app import actions, runs, webhooks
from experiments_app.models import Test
from experiments_app.runs import policy
from tests.engine_fixtures import BASE_DIR, start_baseline
from tests.factories import make_experiment, make_step, make_task

GUIDE = BASE_DIR / "docs" / "integrating.md"


def guide():
    return GUIDE.read_text()


def code_blocks(language):
    return re.findall(rf"^```{language}\n(.*?)^```", guide(), re.S | re.M)


def shape(value):
    """The keys of nested objects, values left out."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__ if value is None else "value"


@pytest.mark.django_db
def test_the_example_body_has_exactly_the_fields_of_a_real_delivery(receiver):
    application = start_baseline(receiver.url, n_tasks=1).experiment.application
    runs.dispatch_application(application.pk)
    experiment = application.experiments.get()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    runs.start_variant_run(variant)
    runs.dispatch_application(application.pk)
    real = receiver.requests[-1].json
    [documented] = [json.loads(block) for block in code_blocks("json") if '"experiment.test"' in block]
    # overrides is keyed by the application's own steps: compare it as "an object of objects"
    for body in (real, documented):
        body["data"]["experiment"]["overrides"] = {"<step>": {"<parameter>": "value"}}
    assert shape(documented) == shape(real)
    for field in re.findall(r"^\| `data\.([\w.]+)`", guide(), re.M):
        node = real["data"]
        for key in field.split("."):
            node = node[key]  # every field the table explains is in a real body


@pytest.mark.django_db
def test_the_raw_hmac_recipe_accepts_a_real_signature_and_refuses_a_changed_body(receiver):
    [recipe] = [block for block in code_blocks("python") if "def is_valid" in block]
    namespace = {}
    exec(recipe, namespace)  # the recipe exactly as documented
    run = start_baseline(receiver.url, n_tasks=1)
    runs.dispatch_application(run.experiment.application_id)
    [request] = receiver.requests
    secret = run.experiment.application.webhook_secret
    assert namespace["is_valid"](secret, request.headers, request.body)
    assert not namespace["is_valid"](secret, request.headers, request.body + b" ")
    assert not namespace["is_valid"]("whsec_" + "QUJD" * 8, request.headers, request.body)  # another secret


def test_the_retry_schedule_in_the_guide_is_the_policy(settings):
    """The guide states the production policy: the settings' defaults, which the test run does not change."""
    text = guide()
    attempts = settings.WEBHOOK_MAX_ATTEMPTS
    assert f"up to **{attempts} attempts**" in text
    for attempt in range(2, attempts + 1):
        low = policy.retry_delay(attempt - 1, rng=lambda: 0.0)
        high = policy.retry_delay(attempt - 1, rng=lambda: 1.0)
        assert f"| {attempt} | {low:g}–{high:g} s |" in text
    assert f"capped at {settings.WEBHOOK_RETRY_AFTER_MAX_SECONDS:g} s" in text
    assert f"at most {settings.RESULT_MAX_BYTES // 2**20} MiB" in text


def signed_post(client, test, body):
    raw = json.dumps(body).encode()
    headers = webhooks.signed_headers(test.run.experiment.application.webhook_secret, "msg_mine", raw)
    meta = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items() if name.startswith("webhook-")}
    return client.post(f"/api/v1/tests/{test.pk}/result/", raw, content_type="application/json", **meta)


@pytest.mark.django_db
def test_posting_again_follows_the_documented_same_result_rule():
    application = make_step(external_id="main").application
    experiment = make_experiment(application, steps=list(application.inference_steps.all()), tasks=[make_task(application)])
    run = runs.start_baseline_run(experiment)
    test = Test.objects.select_related("run__experiment__application").get(run=run)
    client = APIClient()
    first = {"output": {"answer": "Paris", "sources": [1, 2]}, "metrics": {"latency_ms": 420}}
    assert signed_post(client, test, first).status_code == 200
    same = [
        {"metrics": {"latency_ms": 420.0}, "output": {"sources": [1, 2], "answer": "Paris"}},  # key order, 420 vs 420.0
        {**first, "passed": None, "error": None, "traceId": None},  # absent and null
        {**first, "error": "", "traceId": ""},  # absent and ""
    ]
    for body in same:
        assert signed_post(client, test, body).status_code == 200, body
    different = [
        {**first, "traceId": "abc"},
        {**first, "passed": True},
        {**first, "metrics": {"latency_ms": 421}},
        {**first, "metrics": {}},
        {**first, "output": {"answer": "Paris"}},
    ]
    test.refresh_from_db()
    for body in different:
        response = signed_post(client, test, body)
        assert (response.status_code, response.json()["status"]) == (409, test.status), body
    test.refresh_from_db()
    assert test.output == first["output"] and test.metrics == {"latency_ms": 420}
    assert "a *new* computation for the same test" in guide()


@pytest.mark.django_db
def test_the_guide_page_renders_with_working_anchors_and_example_links(client):
    response = client.get("/docs/integrating/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1" in html and "Integrating your application" in html and "<table>" in html and "```" not in html
    ids = set(re.findall(r'id="([^"]+)"', html))
    anchors = set(re.findall(r'href="#([^"]+)"', html)) - {"main"}
    assert anchors and anchors <= ids, anchors - ids
    examples = set(re.findall(r'href="(examples/[^"]+)"', html))
    assert examples == {f"examples/{path.name}" for path in (BASE_DIR / "docs" / "examples").glob("*.py")}
    for link in examples:
        served = client.get(f"/docs/integrating/{link}")
        assert served.status_code == 200 and served["content-type"].startswith("text/plain")
        assert served.content.decode() == (BASE_DIR / "docs" / link).read_text()


def test_an_unknown_example_is_404(client):
    assert client.get("/docs/integrating/examples/settings.py").status_code == 404
    assert client.get("/docs/integrating/examples/..%2Fintegrating.md").status_code == 404


def test_the_guide_is_linked_from_the_readme_and_the_api_docs(client):
    assert "](docs/integrating.md)" in (BASE_DIR / "README.md").read_text()
    assert "/docs/integrating/" in settings.SPECTACULAR_SETTINGS["DESCRIPTION"]
    assert Path(GUIDE).exists()
