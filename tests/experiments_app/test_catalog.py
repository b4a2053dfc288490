"""Steps and tasks: validation, duplicates, all-or-nothing bulk import, guarded edits."""

import pytest

from experiments_app import actions, runs
from experiments_app.errors import Conflict, Locked, ValidationFailed
from experiments_app.models import Task
from tests.engine_fixtures import Reply
from tests.factories import make_application, make_experiment, make_ready_experiment, make_step, make_task

pytestmark = pytest.mark.django_db


def rows(n, start=0):
    return [{"external_id": f"t-{i}", "input": {"q": i}, "expected": i, "tags": ["bulk"]} for i in range(start, start + n)]


def test_import_creates_every_task():
    app = make_application()
    assert actions.import_tasks(app, rows(250)) == 250
    assert Task.objects.filter(application=app).count() == 250


def test_import_is_all_or_nothing_and_names_the_bad_row():
    app = make_application()
    batch = rows(5)
    batch[3]["input"] = "not an object"
    with pytest.raises(ValidationFailed) as caught:
        actions.import_tasks(app, batch)
    assert list(caught.value.errors) == ["tasks[3].input"]
    assert not Task.objects.filter(application=app).exists()


def test_import_rejects_external_ids_repeated_in_the_batch():
    app = make_application()
    batch = rows(3) + [{"external_id": "t-1", "input": {}}]
    with pytest.raises(ValidationFailed) as caught:
        actions.import_tasks(app, batch)
    assert "tasks[3].external_id" in caught.value.errors


def test_import_rejects_external_ids_that_already_exist():
    app = make_application()
    make_task(app, external_id="t-2")
    with pytest.raises(ValidationFailed) as caught:
        actions.import_tasks(app, rows(3))
    assert list(caught.value.errors) == ["tasks[2].external_id"]
    assert Task.objects.filter(application=app).count() == 1


def test_import_refuses_more_than_ten_thousand_tasks():
    with pytest.raises(ValidationFailed) as caught:
        actions.import_tasks(make_application(), [{}] * 10_001)
    assert "tasks" in caught.value.errors


def test_import_refuses_a_non_list():
    with pytest.raises(ValidationFailed):
        actions.import_tasks(make_application(), {"external_id": "x"})


def test_import_names_unknown_and_wrongly_typed_fields():
    with pytest.raises(ValidationFailed) as caught:
        actions.import_tasks(make_application(), [{"external_id": 5, "input": {}, "tags": "x", "colour": "red"}])
    assert set(caught.value.errors) == {"tasks[0].external_id", "tasks[0].tags", "tasks[0].colour"}


def test_import_batches_inserts_instead_of_one_per_task(django_assert_max_num_queries):
    app = make_application()
    # SQLite binds at most 999 parameters per statement, so batches are smaller there.
    with django_assert_max_num_queries(3000 // 50):
        actions.import_tasks(app, rows(3000))


def test_create_task_rejects_duplicate_external_id_naming_it():
    app = make_application()
    make_task(app, external_id="dup")
    with pytest.raises(ValidationFailed) as caught:
        actions.create_task(app, {"external_id": "dup", "input": {}})
    assert "external_id" in caught.value.errors


def test_create_task_requires_an_input_object():
    with pytest.raises(ValidationFailed) as caught:
        actions.create_task(make_application(), {"external_id": "x"})
    assert "input" in caught.value.errors


def test_delete_task_of_a_locked_experiment_is_refused():
    experiment = make_ready_experiment(n_tasks=1)
    runs.start_baseline_run(experiment)
    with pytest.raises(Locked):
        actions.delete_task(experiment.tasks.get())


def test_create_step_validates_its_config():
    with pytest.raises(ValidationFailed) as caught:
        actions.create_step(make_application(), {"external_id": "gen", "config": {"temperature": -1}})
    assert "config.temperature" in caught.value.errors


def test_create_step_rejects_duplicate_external_id():
    app = make_application()
    make_step(app, external_id="gen")
    with pytest.raises(ValidationFailed) as caught:
        actions.create_step(app, {"external_id": "gen", "config": {}})
    assert "external_id" in caught.value.errors


def test_renaming_a_step_of_a_locked_experiment_is_refused():
    experiment = make_ready_experiment()
    runs.start_baseline_run(experiment)
    with pytest.raises(Locked):
        actions.update_step(experiment.inference_steps.get(), {"external_id": "renamed"})


def test_deleting_a_step_in_an_experiments_scope_is_refused():
    app = make_application()
    step = make_step(app)
    make_experiment(app, steps=[step])
    with pytest.raises(Conflict):
        actions.delete_step(step)


# --- the "connected" mark: a successful ping ------------------------------------


def test_a_successful_ping_records_when_the_application_was_connected(receiver):
    application = make_application(webhook_url=receiver.url)
    answer = actions.ping_application(application)
    assert answer["ok"] and answer["status_code"] == 200
    application.refresh_from_db()
    assert application.last_ping_ok_at is not None
    receiver.requests[0].verify(application.webhook_secret)


def test_a_failed_ping_records_nothing(receiver):
    receiver.handler = lambda received, count: Reply(401, {"detail": "bad signature"})
    application = make_application(webhook_url=receiver.url)
    assert actions.ping_application(application)["error"] == "HTTP 401"
    application.refresh_from_db()
    assert application.last_ping_ok_at is None


def test_rotating_the_secret_clears_the_connected_mark(receiver):
    application = make_application(webhook_url=receiver.url)
    actions.ping_application(application)
    application.rotate_secret()
    application.refresh_from_db()
    assert application.last_ping_ok_at is None


def test_a_new_webhook_url_clears_the_connected_mark_and_other_edits_keep_it(receiver):
    application = make_application(webhook_url=receiver.url)
    actions.ping_application(application)
    actions.update_application(application, {"name": "Renamed", "timeout_seconds": 5, "webhook_url": receiver.url})
    application.refresh_from_db()
    assert application.last_ping_ok_at is not None
    actions.update_application(application, {"webhook_url": receiver.url + "/v2"})
    application.refresh_from_db()
    assert application.last_ping_ok_at is None


def test_a_ping_answered_after_a_rotation_does_not_mark_the_new_secret_connected(receiver):
    application = make_application(webhook_url=receiver.url)
    stale = type(application).objects.get(pk=application.pk)
    application.rotate_secret()  # meanwhile, in another request
    assert actions.ping_application(stale)["ok"]
    application.refresh_from_db()
    assert application.last_ping_ok_at is None
