"""Applications, inference steps and tasks through the API."""

import pytest
from django.urls import reverse

from experiments_app import runs
from experiments_app.models import Application, InferenceStep, Task
from tests.factories import make_application, make_step, make_task


@pytest.fixture(autouse=True)
def loopback_hooks(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


def url(name, **kwargs):
    return reverse(f"api:{name}", kwargs=kwargs)


# ------------------------------------------------------------------ applications


def test_creating_an_application_answers_201_with_its_secret(admin, team):
    response = admin.post(url("application-list"), {"name": "Support bot", "webhook_url": "http://127.0.0.1:9/hook"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["webhook_secret"].startswith("whsec_")
    assert body["timeout_seconds"] == 30 and body["result_timeout_seconds"] == 300 and body["max_concurrency"] == 20
    assert Application.objects.get(pk=body["id"]).team == team


def test_creating_an_application_names_each_bad_field(admin):
    response = admin.post(url("application-list"), {"name": "", "webhook_url": "ftp://x", "timeout_seconds": 0}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert {"name", "timeout_seconds"} <= set(body["errors"])


def test_an_application_on_a_private_address_is_refused(admin, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    response = admin.post(url("application-list"), {"name": "x", "webhook_url": "http://127.0.0.1:9/hook"}, format="json")
    assert response.status_code == 400
    assert "webhook_url" in response.json()["errors"]


def test_reading_an_application_hides_its_secret(viewer, world):
    response = viewer.get(url("application-detail", id=world.application.pk))
    assert response.status_code == 200
    assert response.json()["name"] == world.application.name
    assert "webhook_secret" not in response.json()


def test_applications_are_listed_paginated(viewer, team):
    for _ in range(3):
        make_application(team)
    response = viewer.get(url("application-list"), {"page_size": 2})
    body = response.json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"] and body["previous"] is None


def test_patching_an_application_changes_only_given_fields(admin, world):
    response = admin.patch(url("application-detail", id=world.application.pk), {"max_concurrency": 5}, format="json")
    assert response.status_code == 200
    assert response.json()["max_concurrency"] == 5
    assert response.json()["name"] == world.application.name


def test_patching_an_application_with_a_bad_value_is_400(admin, world):
    response = admin.patch(url("application-detail", id=world.application.pk), {"max_concurrency": "many"}, format="json")
    assert response.status_code == 400
    assert "max_concurrency" in response.json()["errors"]


def test_deleting_an_application_answers_204(admin, team):
    application = make_application(team)
    assert admin.delete(url("application-detail", id=application.pk)).status_code == 204
    assert not Application.objects.filter(pk=application.pk).exists()


def test_deleting_an_application_removes_its_experiments_variants_and_runs(admin, world):
    from experiments_app import actions
    from experiments_app.models import Experiment, Run

    child = actions.create_variant(world.experiment, parent=world.variant, inference_step="main", parameter="model", value="gpt-4o")
    actions.complete_experiment(world.experiment, winner=world.baseline)
    assert admin.delete(url("application-detail", id=world.application.pk)).status_code == 204
    assert not Experiment.objects.filter(pk=world.experiment.pk).exists()
    assert not Run.objects.filter(pk=world.run.pk).exists()
    assert not type(child).objects.filter(pk=child.pk).exists()


def test_deleting_an_application_with_a_running_experiment_is_409(admin, world):

    runs.start_variant_run(world.variant)
    response = admin.delete(url("application-detail", id=world.application.pk))
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


def test_rotating_the_secret_answers_the_new_one(admin, world):
    old = world.application.webhook_secret
    response = admin.post(url("application-rotate-secret", id=world.application.pk))
    assert response.status_code == 200
    assert response.json()["webhook_secret"].startswith("whsec_") and response.json()["webhook_secret"] != old
    world.application.refresh_from_db()
    assert world.application.webhook_secret == response.json()["webhook_secret"]


def test_ping_answers_its_status_and_duration(editor, world):
    # Port 9 (discard) on loopback refuses the connection: the answer carries the error, not a 500.
    response = editor.post(url("application-ping", id=world.application.pk))
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False and body["status_code"] is None and body["error"]
    assert isinstance(body["duration_ms"], float)
    world.application.refresh_from_db()
    assert world.application.last_ping_ok_at is None


def test_a_successful_ping_marks_the_application_connected(editor, world, receiver):
    Application.objects.filter(pk=world.application.pk).update(webhook_url=receiver.url)
    response = editor.post(url("application-ping", id=world.application.pk))
    assert response.json()["ok"] is True and response.json()["status_code"] == 200
    world.application.refresh_from_db()
    assert world.application.last_ping_ok_at is not None


# ------------------------------------------------------------------ inference steps


def test_creating_a_step_answers_201(editor, world):
    body = {"external_id": "classifier", "config": {"model": "gpt-4o-mini", "temperature": 0.0}}
    response = editor.post(url("step-list", id=world.application.pk), body, format="json")
    assert response.status_code == 201
    assert response.json()["external_id"] == "classifier"
    assert response.json()["config"] == {"model": "gpt-4o-mini", "temperature": 0.0}


def test_a_duplicate_step_external_id_is_400(editor, world):
    response = editor.post(url("step-list", id=world.application.pk), {"external_id": "main"}, format="json")
    assert response.status_code == 400
    assert "external_id" in response.json()["errors"]


def test_a_step_config_out_of_range_names_the_parameter(editor, world):
    response = editor.post(url("step-list", id=world.application.pk), {"external_id": "s", "config": {"temperature": 9}}, format="json")
    assert response.status_code == 400
    assert "config.temperature" in response.json()["errors"]


def test_steps_are_listed_and_read(viewer, world):
    listed = viewer.get(url("step-list", id=world.application.pk)).json()
    assert [row["external_id"] for row in listed["results"]] == ["main"]
    read = viewer.get(url("step-detail", id=world.application.pk, step_id=world.step.pk))
    assert read.status_code == 200 and read.json()["id"] == str(world.step.pk)


def test_patching_a_step_description(editor, world):
    response = editor.patch(url("step-detail", id=world.application.pk, step_id=world.step.pk), {"description": "Answers"}, format="json")
    assert response.status_code == 200 and response.json()["description"] == "Answers"


def test_renaming_a_step_of_a_locked_experiment_is_409(editor, world):
    response = editor.patch(url("step-detail", id=world.application.pk, step_id=world.step.pk), {"external_id": "renamed"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "locked"


def test_deleting_an_unused_step_answers_204_and_a_used_one_409(editor, world):
    unused = make_step(world.application)
    assert editor.delete(url("step-detail", id=world.application.pk, step_id=unused.pk)).status_code == 204
    assert not InferenceStep.objects.filter(pk=unused.pk).exists()
    assert editor.delete(url("step-detail", id=world.application.pk, step_id=world.step.pk)).status_code == 409


def test_a_step_of_another_application_is_404(editor, world, team):
    other = make_step(make_application(team))
    assert editor.get(url("step-detail", id=world.application.pk, step_id=other.pk)).status_code == 404


# ------------------------------------------------------------------ tasks


def test_creating_a_task_answers_201(editor, world):
    body = {"external_id": "capital-france", "input": {"question": "Capital of France?"}, "expected": "Paris", "tags": ["geo"]}
    response = editor.post(url("task-list", id=world.application.pk), body, format="json")
    assert response.status_code == 201
    assert response.json()["tags"] == ["geo"] and response.json()["expected"] == "Paris"


def test_a_task_without_an_object_input_is_400_naming_input(editor, world):
    response = editor.post(url("task-list", id=world.application.pk), {"external_id": "t", "input": "text"}, format="json")
    assert response.status_code == 400
    assert "input" in response.json()["errors"]


def test_tasks_filter_by_tag(viewer, world):
    make_task(world.application, external_id="tagged", tags=["geo", "easy"])
    make_task(world.application, external_id="other", tags=["math"])
    response = viewer.get(url("task-list", id=world.application.pk), {"tag": "geo"})
    assert [row["external_id"] for row in response.json()["results"]] == ["tagged"]


def test_a_too_long_tag_filter_is_400(viewer, world):
    response = viewer.get(url("task-list", id=world.application.pk), {"tag": "x" * 101})
    assert response.status_code == 400
    assert "tag" in response.json()["errors"]


def test_patching_a_task_name_is_allowed_when_locked(editor, world):
    response = editor.patch(url("task-detail", id=world.application.pk, task_id=world.task.pk), {"name": "renamed"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "renamed"


def test_changing_the_input_of_a_task_of_a_locked_experiment_is_409(editor, world):
    response = editor.patch(url("task-detail", id=world.application.pk, task_id=world.task.pk), {"input": {"q": "new"}}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "locked"


def test_deleting_a_free_task_answers_204(editor, world):
    task = make_task(world.application)
    assert editor.delete(url("task-detail", id=world.application.pk, task_id=task.pk)).status_code == 204
    assert editor.delete(url("task-detail", id=world.application.pk, task_id=world.task.pk)).status_code == 409


def test_reading_a_task(viewer, world):
    response = viewer.get(url("task-detail", id=world.application.pk, task_id=world.task.pk))
    assert response.status_code == 200 and response.json()["input"] == world.task.input


# ------------------------------------------------------------------ bulk import


def rows(n, start=0):
    return [
        {"external_id": f"bulk-{i}", "input": {"question": f"q{i}"}, "expected": f"a{i}", "tags": ["bulk"]} for i in range(start, start + n)
    ]


def test_bulk_import_answers_201_with_the_count(editor, world):
    response = editor.post(url("task-bulk", id=world.application.pk), rows(25), format="json")
    assert response.status_code == 201
    assert response.json() == {"created": 25}
    assert Task.objects.filter(application=world.application, tags__icontains="bulk").count() == 25


def test_bulk_import_is_all_or_nothing_naming_the_bad_row(editor, world):
    batch = rows(5)
    batch[3]["input"] = "not an object"
    response = editor.post(url("task-bulk", id=world.application.pk), batch, format="json")
    assert response.status_code == 400
    assert "tasks[3].input" in response.json()["errors"]
    assert not Task.objects.filter(external_id__startswith="bulk-").exists()


def test_bulk_import_refuses_an_existing_external_id(editor, world):
    batch = rows(2)
    batch[1]["external_id"] = world.task.external_id
    response = editor.post(url("task-bulk", id=world.application.pk), batch, format="json")
    assert response.status_code == 400
    assert "tasks[1].external_id" in response.json()["errors"]


def test_bulk_import_accepts_ten_thousand_tasks(editor, world):
    response = editor.post(url("task-bulk", id=world.application.pk), rows(10_000), format="json")
    assert response.status_code == 201
    assert response.json() == {"created": 10_000}


def test_bulk_import_refuses_more_than_ten_thousand(editor, world):
    response = editor.post(url("task-bulk", id=world.application.pk), rows(10_001), format="json")
    assert response.status_code == 400
    assert "tasks" in response.json()["errors"]
    assert not Task.objects.filter(external_id__startswith="bulk-").exists()


def test_bulk_import_of_a_non_list_is_400(editor, world):
    response = editor.post(url("task-bulk", id=world.application.pk), {"external_id": "x"}, format="json")
    assert response.status_code == 400
    assert "tasks" in response.json()["errors"]
