"""Issue 14, defects 2 and 3: one depth limit for stored JSON, refused by name at every
entry point; numbers a float cannot hold are a 400 naming the field, never a 500."""

import json

import pytest
from django.urls import reverse

from experiments_app import jsonlimits, runs
from tests.api_fixtures import ready_experiment
from tests.factories import make_task

DEPTHS = [jsonlimits.MAX_DEPTH + 1, 200, 940]  # 932–944 gave a 500 on 7 routes (RecursionError while encoding)


def nested(depth):
    """A JSON value nested `depth` containers deep."""
    return json.loads("[" * depth + "]" * depth)


def names_field(response, field):
    errors = response.json().get("errors", {})
    return any(key == field or key.startswith((f"{field}.", f"{field}[")) for key in errors)


def send(client, method, path, payload):
    return client.generic(method, path, json.dumps(payload), content_type="application/json")


def entry_points(world, depth):
    """(method, path, body, field) for each route that stores JSON, the JSON `depth` levels deep."""
    app = world.application.pk
    open_experiment = ready_experiment(world.application)
    running = runs.start_baseline_run(ready_experiment(world.application))
    test = running.tests.first()
    free_task = make_task(world.application)  # selected by no locked experiment: its expected may change
    return {
        "tasks": ("POST", reverse("api:task-list", kwargs={"id": app}), {"external_id": "deep", "input": {"a": nested(depth - 1)}}, "input"),
        "bulk tasks": ("POST", reverse("api:task-bulk", kwargs={"id": app}), [{"external_id": "deep", "input": {"a": nested(depth - 1)}}], "tasks[0].input"),
        "task patch": ("PATCH", reverse("api:task-detail", kwargs={"id": app, "task_id": free_task.pk}), {"expected": nested(depth)}, "expected"),
        "step config": ("POST", reverse("api:step-list", kwargs={"id": app}), {"external_id": "deep", "config": {"a": nested(depth - 1)}}, "config"),
        "evaluators": ("PATCH", reverse("api:experiment-detail", kwargs={"id": open_experiment.pk}), {"evaluators": [{"type": "reported", "a": nested(depth - 2)}]}, "evaluators"),
        "baseline": ("PUT", reverse("api:experiment-baseline", kwargs={"id": open_experiment.pk}), {"config": {"main": {"a": nested(depth - 2)}}}, "config"),
        "result output": ("POST", reverse("api:test-result", kwargs={"id": test.pk}), {"output": nested(depth)}, "output"),
    }  # fmt: skip


ROUTES = ["tasks", "bulk tasks", "task patch", "step config", "evaluators", "baseline", "result output"]


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("route", ROUTES)
def test_json_deeper_than_the_limit_is_a_400_naming_the_field(editor, world, route, depth):
    method, path, payload, field = entry_points(world, depth)[route]
    response = send(editor, method, path, payload)
    assert response.status_code == 400, response.content[:300]
    assert names_field(response, field), response.json()
    assert f"deeper than {jsonlimits.MAX_DEPTH} levels" in json.dumps(response.json())


@pytest.mark.parametrize("route", ROUTES)
def test_json_at_the_limit_is_stored(editor, world, route):
    method, path, payload, _ = entry_points(world, jsonlimits.MAX_DEPTH)[route]
    response = send(editor, method, path, payload)
    assert response.status_code in (200, 201), response.content[:300]


def test_a_body_too_deep_for_the_decoder_is_still_a_400_naming_the_field(editor, world):
    body = b'{"external_id": "deep", "input": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    response = editor.generic("POST", reverse("api:task-list", kwargs={"id": world.application.pk}), body, content_type="application/json")
    assert response.status_code == 400
    assert names_field(response, "input"), response.json()


@pytest.mark.parametrize("digits", [310, 401, 4000])
def test_a_metric_a_float_cannot_hold_is_a_400_naming_it(editor, world, digits):
    running = runs.start_baseline_run(ready_experiment(world.application))
    test = running.tests.first()
    body = b'{"output": "x", "metrics": {"latency_ms": 1' + b"0" * (digits - 1) + b"}}"
    response = editor.generic("POST", reverse("api:test-result", kwargs={"id": test.pk}), body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert "metrics.latency_ms" in response.json()["errors"]


def test_loads_refuses_what_python_would_accept():
    for text, reason in [("NaN", "NaN"), ("[-Infinity]", "-Infinity"), ("1e999", "out of range"), ('"a\\u0000"', "NUL")]:
        with pytest.raises(jsonlimits.InvalidJSON, match=reason):
            jsonlimits.loads(text)
    with pytest.raises(jsonlimits.InvalidJSON, match="deeper than 64"):
        jsonlimits.loads("[" * 100_000 + "]" * 100_000, max_depth=jsonlimits.MAX_DEPTH)
    cut = jsonlimits.loads('{"a": ' + "[" * 100_000 + '"]"' + "]" * 100_000 + ', "b": "[{"}')
    assert cut["b"] == "[{" and "deeper than 64" in jsonlimits.problem(cut["a"])  # brackets in strings do not count
    assert jsonlimits.loads("[" * 200 + "]" * 200) == nested(200)  # documents: fields are checked by name
    assert jsonlimits.problem(nested(64)) is None and "deeper" in jsonlimits.problem(nested(65))


def test_finite_number_refuses_ints_a_float_cannot_hold():
    assert jsonlimits.finite_number(10**300) == 1e300
    assert jsonlimits.finite_number(10**400) is None
    assert jsonlimits.finite_number(True) is None and jsonlimits.finite_number(float("nan")) is None


@pytest.mark.parametrize(
    "value",
    [
        {"type": "test.created", "data": {"input": {"q": "Qu'est-ce que c'est ? \u00e9\u2028 \"quoted\" \\ /"}, "n": [1, 2.5, True, None]}},
        {"big": 2**70, "small": -(2**63)},  # beyond 64 bits: the json module's path
        {"nested": [[[]]], "empty": {}, "text": "tab\there\nnul\u0000"},
    ],
)
def test_compact_json_reads_back_as_the_same_value_with_no_spaces(value):
    encoded = jsonlimits.compact(value)
    assert isinstance(encoded, bytes)
    assert json.loads(encoded) == value
    assert encoded == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_compact_json_writes_non_string_keys_as_the_json_module_does():
    assert jsonlimits.compact({1: "a", "b": 2}) == json.dumps({1: "a", "b": 2}, separators=(",", ":")).encode() == b'{"1":"a","b":2}'
