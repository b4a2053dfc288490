"""Bad requests answer 4xx in the one error shape, never 500."""

import pytest
from django.urls import reverse


def url(name, **kwargs):
    return reverse(f"api:{name}", kwargs=kwargs)


def post_raw(client, path, body, content_type="application/json", method="POST"):
    return client.generic(method, path, body, content_type=content_type)


def test_malformed_json_is_400_parse_error(editor, world):
    response = post_raw(editor, url("task-list", id=world.application.pk), b'{"external_id": ')
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize("body", [b'{"input": {"x": NaN}}', b'{"input": {"x": Infinity}}', b'{"input": {"x": 1e999}}'])
def test_non_finite_numbers_are_400(editor, world, body):
    response = post_raw(editor, url("task-list", id=world.application.pk), body)
    assert response.status_code == 400


def test_nul_characters_are_400(editor, world):
    response = post_raw(editor, url("task-list", id=world.application.pk), b'{"external_id": "a\\u0000b", "input": {}}')
    assert response.status_code == 400


def test_lone_surrogates_are_400(editor, world):
    response = post_raw(editor, url("task-list", id=world.application.pk), b'{"external_id": "a\\ud800", "input": {}}')
    assert response.status_code == 400


def test_deeply_nested_json_is_400(editor, world):
    body = b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = post_raw(editor, url("task-list", id=world.application.pk), body)
    assert response.status_code == 400


def test_an_integer_too_long_to_parse_is_400(editor, world):
    response = post_raw(editor, url("experiment-detail", id=world.experiment.pk), b'{"repetitions": ' + b"9" * 5000 + b"}", method="PATCH")
    assert response.status_code == 400


def test_a_huge_integer_is_400_naming_the_field(editor, world):
    response = editor.patch(url("experiment-detail", id=world.experiment.pk), {"repetitions": 10**40}, format="json")
    assert response.status_code == 400
    assert "repetitions" in response.json()["errors"]


def test_a_body_over_the_upload_limit_is_413(editor, world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post_raw(editor, url("task-bulk", id=world.application.pk), b"[" + b" " * 2000 + b"]")
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_a_result_body_over_the_upload_limit_is_413(editor, world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post_raw(editor, url("test-result", id=world.test.pk), b'{"output": "' + b"x" * 2000 + b'"}')
    assert response.status_code == 413


def test_form_encoded_bodies_are_415(editor, world):
    response = post_raw(editor, url("task-list", id=world.application.pk), b"external_id=x", "application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_a_list_where_an_object_is_expected_is_400(editor, world):
    response = editor.post(url("task-list", id=world.application.pk), [1, 2], format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize(
    "body",
    [
        {"inference_steps": "main"},
        {"tasks": ["not-a-uuid"]},
        {"evaluators": "exact_match"},
        {"evaluators": [1]},
        {"max_error_rate": "half"},
        {"name": ["x"]},
        {"repetitions": True},
    ],
)
def test_wrong_types_in_an_experiment_patch_are_400(editor, world, body):
    response = editor.patch(url("experiment-detail", id=world.experiment.pk), body, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) & (set(body) | {f"{key}[0]" for key in body})


def test_nested_errors_are_named_by_path(editor, world):
    response = editor.patch(url("experiment-detail", id=world.experiment.pk), {"tasks": ["bad"]}, format="json")
    assert "tasks[0]" in response.json()["errors"]


def test_a_method_not_allowed_is_405_in_the_error_shape(editor, world):
    response = editor.put(url("run-detail", id=world.run.pk), {}, format="json")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_an_invalid_page_is_404(editor, world):
    response = editor.get(url("experiment-list"), {"page": 99})
    assert response.status_code == 404


def test_a_page_size_over_the_maximum_is_capped(editor, world):
    response = editor.get(url("experiment-list"), {"page_size": 5000})
    assert response.status_code == 200


def test_a_bad_team_selector_is_400(editor, world):
    response = editor.get(url("experiment-list"), {"team": "no spaces\x00"})
    assert response.status_code == 400
    assert "team" in response.json()["errors"]


def test_a_non_uuid_id_answers_a_json_404(editor, world):
    response = editor.post("/api/v1/experiments/0.5/archive/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
