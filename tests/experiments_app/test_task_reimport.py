"""Importing tasks that already exist: refused, skipped, or updated unless a locked experiment uses them."""

import pytest

from experiments_app import actions
from experiments_app.actions.catalog import ImportResult
from experiments_app.errors import ValidationFailed
from experiments_app.models import Task
from tests.factories import make_application, make_ready_experiment, make_task

pytestmark = pytest.mark.django_db


def rows(*external_ids, **fields):
    return [{"external_id": external_id, "input": {"q": "new"}, **fields} for external_id in external_ids]


def test_existing_tasks_are_refused_by_default():
    application = make_application()
    make_task(application, external_id="a")
    with pytest.raises(ValidationFailed) as error:
        actions.import_task_rows(application, rows("a", "b"))
    assert list(error.value.errors) == ["tasks[0].external_id"]
    assert not Task.objects.filter(application=application, external_id="b").exists()


def test_skip_creates_only_the_new_ones():
    application = make_application()
    make_task(application, external_id="a", input={"q": "old"})
    assert actions.import_task_rows(application, rows("a", "b"), on_existing="skip") == ImportResult(created=1, skipped=1)
    assert Task.objects.get(application=application, external_id="a").input == {"q": "old"}


def test_update_changes_the_given_fields_of_unlocked_tasks_only():
    experiment = make_ready_experiment(n_tasks=1)
    locked = experiment.tasks.get()
    experiment.locked_at = experiment.created_at
    experiment.save()
    free = make_task(experiment.application, external_id="free", input={"q": "old"}, tags=["keep"])
    result = actions.import_task_rows(experiment.application, rows(free.external_id, locked.external_id, "new"), on_existing="update")
    assert result == ImportResult(created=1, updated=1, locked=1)
    free.refresh_from_db()
    assert free.input == {"q": "new"} and free.tags == ["keep"]  # fields the row does not give stay
    assert Task.objects.get(pk=locked.pk).input != {"q": "new"}


def test_an_unknown_way_to_treat_existing_tasks_is_refused():
    with pytest.raises(ValidationFailed) as error:
        actions.import_task_rows(make_application(), rows("a"), on_existing="merge")
    assert "on_existing" in error.value.errors
